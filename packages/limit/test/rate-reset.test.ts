import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type LocalRateLimiter, slidingWindow, tokenBucket } from '../src/index.js';
import { handClock } from './time.js';

type Make = (clock: ReturnType<typeof handClock>) => { limiter: LocalRateLimiter; quota: number };

const makers: [string, Make][] = [
  [
    'tokenBucket',
    (clock) => ({ limiter: tokenBucket({ limit: 3, interval: 700, burst: 5, clock, policies: false }), quota: 5 }),
  ],
  [
    'slidingWindow',
    (clock) => ({ limiter: slidingWindow({ limit: 4, interval: 500, clock, policies: false }), quota: 4 }),
  ],
];

describe('a decision says when the key has its whole limit again (reset), to the ms', () => {
  it.each(makers)('%s: at reset the whole limit goes through, 1 ms before it does not', (_, make) => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ wait: fc.integer({ min: 0, max: 400 }), cost: fc.integer({ min: 1, max: 4 }) }), {
          minLength: 1,
          maxLength: 30,
        }),
        (steps) => {
          // Two limiters fed the same calls: one is probed 1 ms before reset, the other at reset.
          const a = handClock(10_000);
          const b = handClock(10_000);
          const early = make(a);
          const late = make(b);
          let decision = early.limiter.take('k', 1);
          late.limiter.take('k', 1);
          for (const { wait, cost } of steps) {
            a.t += wait;
            b.t += wait;
            const c = Math.min(cost, early.quota);
            decision = early.limiter.take('k', c);
            expect(late.limiter.take('k', c)).toEqual(decision);
            expect(decision.reset).toBeGreaterThanOrEqual(decision.retryAfter);
          }
          b.t += decision.reset;
          expect(late.limiter.take('k', late.quota).allowed).toBe(true);
          if (decision.reset >= 1) {
            a.t += decision.reset - 1;
            expect(early.limiter.take('k', early.quota).allowed).toBe(false);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
