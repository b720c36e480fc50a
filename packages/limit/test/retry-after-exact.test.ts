import { ManualClock } from '@holdfast/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { slidingWindow, tokenBucket } from '../src/index.js';

/**
 * retryAfter is the least whole ms after which the same call goes, at any setting. Its estimate
 * rounds with an epsilon (1e-6 ms) against floating point; at extreme rates the true wait is
 * k + 5e-7 ms, and the epsilon rounded it to k, when the call was still refused (found by an
 * outside review, 2026-12-07).
 */

type Limiter = ReturnType<typeof tokenBucket> | ReturnType<typeof slidingWindow>;

/** A step: advance the clock, take `fill` until refused (or 50 times), then probe with `cost`. */
type Step = [advance: number, fill: number, cost: number];

/** Checks a refused call is refused at retryAfter - 1 ms and admitted at retryAfter. */
async function probe(clock: ManualClock, rl: Limiter, steps: Step[]): Promise<void> {
  for (const [advance, fill, cost] of steps) {
    await clock.advance(advance);
    for (let i = 0; i < 50 && rl.take('k', fill).allowed; i++);
    const d = rl.take('k', cost);
    if (d.allowed) continue;
    const wait = d.retryAfter;
    expect(Number.isInteger(wait)).toBe(true);
    expect(wait).toBeGreaterThanOrEqual(1);
    if (wait > 1e9) continue;
    if (wait > 1) {
      await clock.advance(wait - 1);
      expect(rl.take('k', cost).allowed, `admitted at ${wait - 1}, retryAfter ${wait}`).toBe(false);
      await clock.advance(1);
    } else await clock.advance(1);
    expect(rl.take('k', cost).allowed, `refused at retryAfter ${wait}`).toBe(true);
  }
}

describe('retryAfter at extreme settings', () => {
  it.for([
    {
      name: 'tokenBucket: a wait of 1.0000001 ms is 2 ms, not 1',
      make: (clock: ManualClock) =>
        tokenBucket({ limit: 9_999_999, interval: 10_000_000, burst: 1, clock, policies: false }),
      fill: 1,
      wait: 0,
    },
    {
      // In the next window's first ms, the last one's 2,000,000 weigh all but nothing.
      name: 'slidingWindow: a wait of 1.0000005 ms is 2 ms, not 1',
      make: (clock: ManualClock) => slidingWindow({ limit: 2_000_000, interval: 2_000_001, clock, policies: false }),
      fill: 2_000_000,
      wait: 2_000_001,
    },
  ])('$name', async ({ make, fill, wait }) => {
    const clock = new ManualClock(0);
    const rl = make(clock);
    expect(rl.take('k', fill).allowed).toBe(true);
    await clock.advance(wait);
    const d = rl.take('k');
    expect(d.allowed).toBe(false);
    expect(d.retryAfter).toBe(2);
    await clock.advance(1);
    expect(rl.take('k').allowed).toBe(false);
    await clock.advance(1);
    expect(rl.take('k').allowed).toBe(true);
    rl.dispose();
  });

  it('is exact over random extreme settings, costs and times (both limiters)', async () => {
    const share = fc.double({ min: 0, max: 1, noNaN: true });
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('tokenBucket', 'slidingWindow'),
        fc.integer({ min: 1, max: 10_000_000 }),
        // Near the limit (a rate of about 1 a ms, where the rounding bites) or anywhere.
        fc.oneof(fc.integer({ min: -3, max: 3 }), fc.integer({ min: -10_000_000, max: 10_000_000 })),
        fc.integer({ min: 1, max: 1_000 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 20_000_000 }), share, share), { minLength: 1, maxLength: 6 }),
        fc.integer({ min: 0, max: 2 ** 40 }),
        async (kind, limit, off, burstOf, steps, start) => {
          const interval = Math.max(1, limit + off);
          const clock = new ManualClock(start);
          const burst = kind === 'tokenBucket' ? Math.min(burstOf, limit) : limit;
          const whole = (x: number) => Math.max(1, Math.round(x * burst));
          const rl =
            kind === 'tokenBucket'
              ? tokenBucket({ limit, interval, burst, clock, policies: false })
              : slidingWindow({ limit, interval, clock, policies: false });
          await probe(
            clock,
            rl,
            steps.map(([advance, fill, cost]) => [advance, whole(fill), whole(cost)]),
          );
          rl.dispose();
        },
      ),
      { numRuns: 400 },
    );
  }, 60_000);
});
