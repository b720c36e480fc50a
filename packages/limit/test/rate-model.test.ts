import { ManualClock } from '@holdfast/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { wallOnlyClock } from '../../../test/support/wall-only-clock.js';
import { adaptiveThrottle, slidingWindow, tokenBucket } from '../src/index.js';

/**
 * Model-based tests of the in-process rate limiters: random takes, waits and steps of a clock
 * without monotonic() (its durations are measured on now(), which NTP may step back), checked
 * against a reference model on the true time line (the clock's timers).
 */

const ops = (maxCost: number, back: boolean) =>
  fc.array(
    fc.oneof(
      {
        arbitrary: fc.record({ kind: fc.constant('take' as const), cost: fc.integer({ min: 1, max: maxCost }) }),
        weight: 5,
      },
      { arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 400 }) }), weight: 3 },
      {
        arbitrary: fc.record({
          kind: fc.constant('back' as const),
          ms: fc.oneof(fc.constant(3_600_000), fc.integer({ min: 1, max: 1_000 })),
        }),
        weight: back ? 1 : 0,
      },
    ),
    { maxLength: 80 },
  );

/** Allowed units in every span of true time: at most `most(span)`. */
function checkSpans(allowed: { at: number; cost: number }[], most: (span: number) => number): void {
  for (let i = 0; i < allowed.length; i++) {
    let sum = 0;
    for (let j = i; j < allowed.length; j++) {
      sum += (allowed[j] as { cost: number }).cost;
      const span = (allowed[j] as { at: number }).at - (allowed[i] as { at: number }).at;
      expect(sum, `${sum} units allowed within ${span} ms`).toBeLessThanOrEqual(most(span) + 1e-6);
    }
  }
}

describe('tokenBucket (model)', () => {
  it('decides as an exact bucket does, and its retryAfter is honest', async () => {
    const config = fc.record({
      limit: fc.integer({ min: 1, max: 10 }),
      interval: fc.integer({ min: 1, max: 1_000 }),
      burst: fc.integer({ min: 1, max: 10 }),
    });
    await fc.assert(
      fc.asyncProperty(config, ops(10, false), async ({ limit, interval, burst }, run) => {
        const clock = new ManualClock(5_000);
        const limiter = tokenBucket({ limit, interval, burst, clock, policies: false });
        // Tokens × interval: whole numbers, refilled by `limit` per ms.
        let units = burst * interval;
        let last = clock.now();
        for (const o of run) {
          if (o.kind === 'wait') {
            await clock.advance(o.ms);
            continue;
          }
          if (o.kind !== 'take' || o.cost > burst) continue;
          units = Math.min(burst * interval, units + (clock.now() - last) * limit);
          last = clock.now();
          const d = limiter.take('k', o.cost);
          const allowed = units >= o.cost * interval;
          expect(d.allowed, `take(${o.cost}) with ${units / interval} tokens`).toBe(allowed);
          if (allowed) {
            units -= o.cost * interval;
            expect(d.remaining).toBe(Math.floor(units / interval));
          } else {
            expect(d.retryAfter).toBe(Math.max(1, Math.ceil((o.cost * interval - units) / limit)));
          }
        }
      }),
      { numRuns: 200 },
    );
  });

  it('a clock stepped back never grants more than burst + rate × time on the true time line', async () => {
    const config = fc.record({
      limit: fc.integer({ min: 1, max: 10 }),
      interval: fc.integer({ min: 1, max: 1_000 }),
      burst: fc.integer({ min: 1, max: 10 }),
    });
    await fc.assert(
      fc.asyncProperty(config, ops(3, true), async ({ limit, interval, burst }, run) => {
        const { clock, timers, step } = wallOnlyClock();
        const limiter = tokenBucket({ limit, interval, burst, clock, policies: false });
        const allowed: { at: number; cost: number }[] = [];
        for (const o of run) {
          if (o.kind === 'wait') await timers.advance(o.ms);
          else if (o.kind === 'back') step(-o.ms);
          else if (o.cost <= burst && limiter.take('k', o.cost).allowed)
            allowed.push({ at: timers.now(), cost: o.cost });
        }
        checkSpans(allowed, (span) => burst + (span * limit) / interval);
        // And it does not stall: a full burst's refill after it was last looked at (it cannot
        // know how long ago a step back came before that), a call goes through.
        limiter.take('k', burst);
        await timers.advance(Math.ceil((burst * interval) / limit));
        expect(limiter.take('k', burst).allowed).toBe(true);
      }),
      { numRuns: 200 },
    );
  });
});

describe('slidingWindow (model)', () => {
  it('never more than limit per fixed window nor 2 × limit in any interval; retryAfter is honest', async () => {
    const config = fc.record({ limit: fc.integer({ min: 1, max: 10 }), interval: fc.integer({ min: 1, max: 500 }) });
    await fc.assert(
      fc.asyncProperty(config, ops(4, false), async ({ limit, interval }, run) => {
        const clock = new ManualClock(7_000);
        const limiter = slidingWindow({ limit, interval, clock, policies: false });
        const allowed: { at: number; cost: number }[] = [];
        for (const o of run) {
          if (o.kind === 'wait') await clock.advance(o.ms);
          if (o.kind !== 'take' || o.cost > limit) continue;
          const d = limiter.take('k', o.cost);
          if (d.allowed) {
            allowed.push({ at: clock.now(), cost: o.cost });
            continue;
          }
          // Refused: after retryAfter (and nothing else taken), the same cost goes through.
          await clock.advance(d.retryAfter);
          const again = limiter.take('k', o.cost);
          expect(again.allowed, `take(${o.cost}) again after retryAfter ${d.retryAfter}`).toBe(true);
          allowed.push({ at: clock.now(), cost: o.cost });
        }
        const windows = new Map<number, number>();
        for (const a of allowed) {
          const index = Math.floor(a.at / interval);
          windows.set(index, (windows.get(index) ?? 0) + a.cost);
        }
        for (const [index, sum] of windows) expect(sum, `fixed window ${index}`).toBeLessThanOrEqual(limit);
        checkSpans(allowed, (span) => (span < interval ? 2 * limit : Number.POSITIVE_INFINITY));
      }),
      { numRuns: 200 },
    );
  });

  it('a clock stepped back neither grants extra nor holds a full window for the step', async () => {
    const config = fc.record({ limit: fc.integer({ min: 1, max: 10 }), interval: fc.integer({ min: 1, max: 500 }) });
    await fc.assert(
      fc.asyncProperty(config, ops(4, true), async ({ limit, interval }, run) => {
        const { clock, timers, step } = wallOnlyClock();
        const limiter = slidingWindow({ limit, interval, clock, policies: false });
        const allowed: { at: number; cost: number }[] = [];
        for (const o of run) {
          if (o.kind === 'wait') await timers.advance(o.ms);
          else if (o.kind === 'back') step(-o.ms);
          else if (o.cost <= limit && limiter.take('k', o.cost).allowed)
            allowed.push({ at: timers.now(), cost: o.cost });
        }
        checkSpans(allowed, (span) => (span < interval ? 2 * limit : Number.POSITIVE_INFINITY));
        // Two quiet intervals after it was last looked at (it cannot know how long ago a step
        // back came before that), the window is empty, whatever the clock did; except that once
        // per step back a quiet spell reads as the clock coming back (no time passed: see
        // rate-clock-return.test.ts), which holds it two intervals more at worst.
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

describe('adaptiveThrottle (model)', () => {
  const tops = fc.array(
    fc.oneof(
      { arbitrary: fc.record({ kind: fc.constant('call' as const), ok: fc.boolean() }), weight: 5 },
      { arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 300 }) }), weight: 2 },
      {
        arbitrary: fc.record({
          kind: fc.constant('back' as const),
          ms: fc.oneof(fc.constant(3_600_000), fc.integer({ min: 1, max: 1_000 })),
        }),
        weight: 1,
      },
    ),
    { maxLength: 80 },
  );

  it('its probability stays in [0, 1) and a window after the last call it is 0 again, whatever the clock did', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 100, max: 2_000 }),
        fc.double({ min: 1, max: 3, noNaN: true }),
        tops,
        async (window, k, run) => {
          const { clock, timers, step } = wallOnlyClock();
          const t = adaptiveThrottle({ window, k, clock, random: () => 0.5, policies: false });
          for (const o of run) {
            if (o.kind === 'wait') await timers.advance(o.ms);
            else if (o.kind === 'back') step(-o.ms);
            else await t.execute(() => (o.ok ? 'ok' : Promise.reject(new Error('503')))).catch(() => {});
            expect(t.probability).toBeGreaterThanOrEqual(0);
            expect(t.probability).toBeLessThan(1);
          }
          await timers.advance(window + window / 10);
          // Once per step back, a quiet spell reads as the clock coming back (no time passed:
          // see rate-clock-return.test.ts), which holds the window one more at worst.
          if (t.probability !== 0) await timers.advance(window + window / 10);
          expect(t.probability, 'probability a window after the last call').toBe(0);
        },
      ),
      { numRuns: 200 },
    );
  });
});
