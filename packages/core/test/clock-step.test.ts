import { describe, expect, it } from 'vitest';
import { HOUR, stepWallClock } from '../../../test/support/wall-clock.js';
import { createBus, type HoldfastEvent, hedge } from '../src/index.js';

// Date.now() steps (stepWallClock) while Node's timers and performance.now() run on:
// a hedge on the real clock must not follow the step.

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('hedge(): wall-clock steps, real clock', () => {
  it('a call in flight across a step forward of an hour is not an hour-long latency in the percentile delay', async () => {
    const h = hedge({
      delay: { percentile: 0.9, samples: 10, minSamples: 10, initial: 50 },
      safe: true,
      budget: false,
      policies: false,
    });
    for (let i = 0; i < 9; i++) await h.execute(() => 'ok');
    await h.execute(() => {
      stepWallClock(HOUR);
      return 'ok';
    });
    // Ten calls of well under a second: the 90th percentile is one of them, not 3,600 s.
    expect(h.snapshot().delay).toBeLessThan(1_000);
  });

  it('a hedge budget refills one window after the wall clock steps back an hour', async () => {
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('hedge.attempt', (e) => events.push(e));
    bus.on('hedge.budgetExhausted', (e) => events.push(e));
    const h = hedge({
      delay: 10_000,
      safe: true,
      budget: { ratio: 0, minPerSecond: 10, window: 200 },
      bus,
      policies: false,
    });
    // The first attempt fails: a hedge goes at once, if the budget (2 per 200 ms) allows.
    const call = () =>
      h.execute(({ attempt }) => (attempt === 1 ? Promise.reject(new Error('first')) : 'ok')).catch(() => 'failed');
    for (let i = 0; i < 3; i++) await call();
    expect(events.map((e) => e.type)).toEqual(['hedge.attempt', 'hedge.attempt', 'hedge.budgetExhausted']);
    stepWallClock(-HOUR);
    await sleep(450); // two windows
    events.length = 0;
    expect(await call()).toBe('ok');
    expect(events.map((e) => e.type)).toEqual(['hedge.attempt']);
  });
});

describe('timeout(): wall-clock steps, real clock (held before: its deadlines were already monotonic)', () => {
  it('times out on time though the wall clock steps back an hour mid-call, and not early when it steps forward', async () => {
    const { timeout } = await import('../src/index.js');
    const policy = timeout(100);
    await expect(
      policy.execute(({ signal }) => {
        stepWallClock(-HOUR);
        return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
      }),
    ).rejects.toMatchObject({ code: 'E_TIMEOUT' });
    await expect(
      policy.execute(async () => {
        stepWallClock(2 * HOUR);
        await sleep(10);
        return 'in time';
      }),
    ).resolves.toBe('in time');
  });
});
