import { type Clock, ManualClock } from '@holdfast/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { adaptiveThrottle, slidingWindow } from '../src/index.js';

/**
 * A clock without monotonic() that steps back and then comes back (NTP correcting a bad step, two
 * time sources taking turns, a VM clock flapping): each return is a step forward over time already
 * counted. Counts moved to the slice of now at the step back must not be forgotten at the return,
 * or a clock flapping every few ms grants a full limit per flap.
 */

/** A clock with now() only: a ManualClock's time and timers, minus an offset that steps move. */
function flappingClock() {
  const timers = new ManualClock(10_000_000);
  let behind = 0;
  const clock: Clock = {
    now: () => timers.now() - behind,
    setTimeout: (callback, ms) => timers.setTimeout(callback, ms),
    clearTimeout: (handle) => timers.clearTimeout(handle),
  };
  return {
    clock,
    timers,
    back: (ms: number) => {
      behind += ms;
    },
    /** Comes back toward true time by `share` of how far behind it is (never ahead of it). */
    forth: (share: number) => {
      behind -= Math.round(behind * share);
    },
  };
}

const ops = fc.array(
  fc.oneof(
    { arbitrary: fc.record({ kind: fc.constant('take' as const), cost: fc.integer({ min: 1, max: 4 }) }), weight: 5 },
    { arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 400 }) }), weight: 3 },
    {
      arbitrary: fc.record({
        kind: fc.constant('back' as const),
        ms: fc.oneof(fc.constant(3_600_000), fc.integer({ min: 1, max: 5_000 })),
      }),
      weight: 1,
    },
    { arbitrary: fc.record({ kind: fc.constant('forth' as const), share: fc.constantFrom(1, 0.5) }), weight: 1 },
  ),
  { maxLength: 80 },
);

describe('slidingWindow, a clock that steps back and comes back', () => {
  it('a clock flapping between true time and an hour behind grants no more than the limit per window', async () => {
    const { clock, timers, back, forth } = flappingClock();
    const limiter = slidingWindow({ limit: 10, interval: 1_000, clock, policies: false });
    let allowed = 0;
    // 100 flaps within 100 ms of true time, ten takes each.
    for (let flap = 0; flap < 100; flap++) {
      for (let i = 0; i < 10; i++) if (limiter.take('k').allowed) allowed++;
      if (flap % 2 === 0) back(3_600_000);
      else forth(1);
      await timers.advance(1);
    }
    expect(allowed, 'calls allowed in 100 ms under a limit of 10 per second').toBeLessThanOrEqual(20);
  });

  it('never more than 2 × limit in any interval of true time, the clock never ahead of it', async () => {
    const config = fc.record({ limit: fc.integer({ min: 1, max: 10 }), interval: fc.integer({ min: 1, max: 500 }) });
    await fc.assert(
      fc.asyncProperty(config, ops, async ({ limit, interval }, run) => {
        const { clock, timers, back, forth } = flappingClock();
        const limiter = slidingWindow({ limit, interval, clock, policies: false });
        const allowed: { at: number; cost: number }[] = [];
        for (const o of run) {
          if (o.kind === 'wait') await timers.advance(o.ms);
          else if (o.kind === 'back') back(o.ms);
          else if (o.kind === 'forth') forth(o.share);
          else if (o.cost <= limit && limiter.take('k', o.cost).allowed)
            allowed.push({ at: timers.now(), cost: o.cost });
        }
        for (let i = 0; i < allowed.length; i++) {
          let sum = 0;
          for (let j = i; j < allowed.length; j++) {
            sum += (allowed[j] as { cost: number }).cost;
            const span = (allowed[j] as { at: number }).at - (allowed[i] as { at: number }).at;
            if (span < interval) expect(sum, `${sum} allowed within ${span} ms`).toBeLessThanOrEqual(2 * limit);
          }
        }
        // It does not stall either: two quiet intervals after it was last looked at, a full take;
        // after a step back, a quiet spell reads as the clock coming back once (see take()), so
        // at worst two intervals more.
        limiter.take('k', limit);
        await timers.advance(2 * interval);
        if (!limiter.take('k', limit).allowed) {
          await timers.advance(2 * interval);
          expect(limiter.take('k', limit).allowed, 'a full take four intervals later').toBe(true);
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('adaptiveThrottle, a clock that steps back and comes back', () => {
  it('a clock set back an hour and set right again does not forget the backend refusing', async () => {
    const { clock, timers, back, forth } = flappingClock();
    const t = adaptiveThrottle({ window: 10_000, k: 1.5, clock, random: () => 0.99, policies: false });
    // The backend refuses every call (every error is a rejection by default).
    const refused = () => t.execute(() => Promise.reject(new Error('503'))).catch(() => {});
    for (let i = 0; i < 50; i++) await refused();
    const before = t.probability;
    expect(before).toBeGreaterThan(0.5);
    back(3_600_000);
    await timers.advance(1);
    expect(t.probability, 'probability an hour back').toBeGreaterThan(0.5);
    forth(1);
    await timers.advance(1);
    // Two ms of true time: the backend's refusals are still in the window.
    expect(t.probability, 'probability after the clock came back').toBeGreaterThan(0.5);
  });
});
