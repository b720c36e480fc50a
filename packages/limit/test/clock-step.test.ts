import { describe, expect, it } from 'vitest';
import { HOUR, stepWallClock } from '../../../test/support/wall-clock.js';
import { adaptiveThrottle, slidingWindow, tokenBucket } from '../src/index.js';

// Date.now() steps (stepWallClock) while Node's timers and performance.now() run on:
// a limit on the real clock must not follow the step.

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('wall-clock steps, real clock', () => {
  it('tokenBucket refills after the wall clock steps back an hour', async () => {
    const limiter = tokenBucket({ limit: 100, interval: 1_000, burst: 2, policies: false });
    expect(limiter.take().allowed).toBe(true);
    expect(limiter.take().allowed).toBe(true);
    expect(limiter.take().allowed).toBe(false);
    stepWallClock(-HOUR);
    await sleep(60); // 100 tokens/s: 2 back in 20 ms
    expect(limiter.take().allowed).toBe(true);
  });

  it('tokenBucket does not hand out a full burst when the wall clock steps forward an hour', () => {
    const limiter = tokenBucket({ limit: 1, interval: 60_000, burst: 2, policies: false });
    expect(limiter.take().allowed).toBe(true);
    expect(limiter.take().allowed).toBe(true);
    stepWallClock(HOUR);
    expect(limiter.take().allowed).toBe(false);
  });

  it('slidingWindow lets calls through again one interval after the wall clock steps back an hour', async () => {
    const limiter = slidingWindow({ limit: 2, interval: 100, policies: false });
    expect(limiter.take().allowed).toBe(true);
    expect(limiter.take().allowed).toBe(true);
    expect(limiter.take().allowed).toBe(false);
    stepWallClock(-HOUR);
    await sleep(250); // two intervals: the window is empty
    expect(limiter.take().allowed).toBe(true);
  });

  it('slidingWindow does not reset its count when the wall clock steps forward an hour', () => {
    const limiter = slidingWindow({ limit: 2, interval: 60_000, policies: false });
    expect(limiter.take().allowed).toBe(true);
    expect(limiter.take().allowed).toBe(true);
    stepWallClock(HOUR);
    expect(limiter.take().allowed).toBe(false);
  });

  it('adaptiveThrottle forgets an outage one window after the wall clock steps back an hour', async () => {
    const throttle = adaptiveThrottle({ window: 200, random: () => 0, policies: false });
    for (let i = 0; i < 20; i++) await throttle.execute(() => Promise.reject(new Error('503'))).catch(() => {});
    expect(throttle.probability).toBeGreaterThan(0.5);
    stepWallClock(-HOUR);
    await sleep(450); // two windows
    expect(throttle.probability).toBe(0);
    await expect(throttle.execute(() => 'ok')).resolves.toBe('ok');
  });
});

describe('wall-clock steps, real clock (held before: its queue timer was already monotonic)', () => {
  it('a bulkhead queue times out on time across a step back, and not early across a step forward', async () => {
    const { bulkhead } = await import('../src/index.js');
    const b = bulkhead({ maxConcurrent: 1, maxQueue: 1, queueTimeout: 100, policies: false });
    let release: () => void = () => {};
    const holder = b.execute(() => new Promise<void>((r) => (release = r)));
    stepWallClock(-HOUR);
    await expect(b.execute(() => 'queued')).rejects.toMatchObject({ code: 'E_BULKHEAD_FULL', reason: 'queueTimeout' });
    const queued = b.execute(() => 'queued');
    stepWallClock(2 * HOUR);
    release();
    await holder;
    await expect(queued).resolves.toBe('queued');
  });
});
