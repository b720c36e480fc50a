import { timeout } from '@holdfast/core';
import { tokenBucket } from '@holdfast/limit';
import { afterEach, describe, expect, it, vi } from 'vitest';

// A user's fake timers that fake the timers but leave Date real (a common setup to keep
// timestamps real): advancing the fake time must still move every policy's elapsed time, as
// it moves the timers. realClock.monotonic() read Date.now() whenever setTimeout was faked,
// so with Date left real nothing moved: a bucket never refilled, a timeout never fired.
type FakeConfig = Parameters<typeof vi.useFakeTimers>[0];
const timersOnly = { toFake: ['setTimeout', 'clearTimeout'] } as FakeConfig;
const timersAndPerformance = { toFake: ['setTimeout', 'clearTimeout', 'performance'] } as FakeConfig;

afterEach(() => {
  vi.useRealTimers();
});

describe.each([
  ['setTimeout only (Date and performance real)', timersOnly],
  ['setTimeout and performance (Date real)', timersAndPerformance],
])('fake timers: %s', (_name, config) => {
  it('a drained token bucket refills when fake time moves', () => {
    vi.useFakeTimers(config);
    const limiter = tokenBucket({ limit: 1, interval: 60_000, burst: 1, policies: false });
    expect(limiter.take().allowed).toBe(true);
    expect(limiter.take().allowed).toBe(false);
    vi.advanceTimersByTime(60_000);
    expect(limiter.take().allowed).toBe(true);
  });

  it('an aggressive timeout fires when fake time passes it', async () => {
    vi.useFakeTimers(config);
    const policy = timeout(60_000, { strategy: 'aggressive' });
    let outcome = 'pending';
    policy
      .execute(() => new Promise(() => {}))
      .catch((error: Error) => {
        outcome = error.name;
      });
    await vi.advanceTimersByTimeAsync(60_000);
    expect(outcome).toBe('TimeoutError');
  });
});
