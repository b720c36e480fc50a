import { circuitBreaker } from '@holdfast/breaker';
import { timeout } from '@holdfast/core';
import { tokenBucket } from '@holdfast/limit';
import { afterEach, describe, expect, it, vi } from 'vitest';

// A user's own tests drive holdfast on the real clock with their test runner's fake timers.
// Elapsed times are read on the monotonic clock (performance.now()), which some fake-timer
// setups leave real: vitest 3's default toFake (below), or any toFake without 'performance'.
// Moving the fake time must move every policy as it moves the timers.
const vitest3Defaults = {
  toFake: ['setTimeout', 'clearTimeout', 'setImmediate', 'clearImmediate', 'setInterval', 'clearInterval', 'Date'],
} as Parameters<typeof vi.useFakeTimers>[0];

afterEach(() => {
  vi.useRealTimers();
});

describe.each([
  ['vitest 3 defaults (performance left real)', vitest3Defaults],
  ['every timer API faked (vitest 4 and jest defaults)', undefined],
])('fake timers: %s', (_name, config) => {
  it('a drained token bucket refills when fake time moves', () => {
    vi.useFakeTimers(config);
    const limiter = tokenBucket({ limit: 1, interval: 1_000, burst: 1, policies: false });
    expect(limiter.take().allowed).toBe(true);
    expect(limiter.take().allowed).toBe(false);
    vi.advanceTimersByTime(1_000);
    expect(limiter.take().allowed).toBe(true);
  });

  it('an open breaker probes once openFor has passed in fake time', async () => {
    vi.useFakeTimers(config);
    const breaker = circuitBreaker({ name: 'fake-timers', minimumCalls: 1, failureRateThreshold: 0.5, openFor: 5_000 });
    await expect(breaker.execute(() => Promise.reject(new Error('down')))).rejects.toThrow('down');
    expect(breaker.state).toBe('open');
    vi.advanceTimersByTime(5_000);
    await expect(breaker.execute(() => Promise.resolve('up'))).resolves.toBe('up');
  });

  it('an aggressive timeout fires when fake time passes it', async () => {
    vi.useFakeTimers(config);
    const policy = timeout(1_000, { strategy: 'aggressive' });
    const call = policy.execute(() => new Promise(() => {}));
    const settled = expect(call).rejects.toMatchObject({ name: 'TimeoutError' });
    await vi.advanceTimersByTimeAsync(1_000);
    await settled;
  });
});
