import { describe, expect, it } from 'vitest';
import { type Clock, createBus, hedge, ManualClock } from '../src/index.js';

/**
 * A hedge's share budget on a clock without monotonic() that is set back and comes back (NTP
 * undoing a bad step, a clock flapping between two times): the return is no time passing, and
 * must not empty the window of the hedges just spent.
 */
describe('hedge budget, a clock set back that comes back', () => {
  it('a clock flapping between true time and an hour behind hedges no more than the share allows', async () => {
    const timers = new ManualClock(10_000_000);
    let behind = 0;
    const clock: Clock = {
      now: () => timers.now() - behind,
      setTimeout: (callback, ms) => timers.setTimeout(callback, ms),
      clearTimeout: (handle) => timers.clearTimeout(handle),
    };
    // 10% of calls, and 1 a second whatever the traffic: over 1 s, 100 calls earn 11 hedges.
    const h = hedge({
      delay: 50,
      safe: true,
      budget: { ratio: 0.1, minPerSecond: 1, window: 1_000 },
      clock,
      bus: createBus(),
    });
    for (let call = 0; call < 100; call++) {
      // Each call fails at once: a failed attempt sends the hedge at once, if the budget has one.
      await h.execute(() => Promise.reject(new Error('503'))).catch(() => {});
      behind = call % 2 === 0 ? 3_600_000 : 0;
      await timers.advance(1);
    }
    expect(h.snapshot().hedges, 'hedges sent in 100 ms of 100 calls').toBeLessThanOrEqual(11);
  });
});
