import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { type LocalRateLimiter, slidingWindow, tokenBucket } from '../src/index.js';
import { redisRateLimiter } from '../src/redis.js';
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

describe('a refused decision says what is left (a cost larger than it)', () => {
  it.each(makers)('%s: 3 left, a call of cost 4 is refused with remaining 3, and 3 calls of 1 go', (_, make) => {
    const clock = handClock(10_000);
    const { limiter, quota } = make(clock);
    limiter.take('k', quota - 3);
    // Before: remaining 0, and the next three calls went through.
    expect(limiter.take('k', 4)).toMatchObject({ allowed: false, remaining: 3 });
    for (let i = 0; i < 3; i++) expect(limiter.take('k', 1).allowed).toBe(true);
    expect(limiter.take('k', 1)).toMatchObject({ allowed: false, remaining: 0 });
  });
});

describe('redisRateLimiter: remaining and reset from the one integer the script replies', () => {
  it('refused with 3 left, it says 3, and when the whole limit is back', async () => {
    const client = new Redis({ host: '127.0.0.1', port: 6379, lazyConnect: true });
    await client.connect();
    try {
      const rl = redisRateLimiter({
        client,
        limit: 5,
        interval: 60_000,
        prefix: `test:reset:${randomUUID()}:`,
        policies: false,
      });
      const first = await rl.take('k', 2);
      // 12 s a unit: two taken come back in 24 s (within the ms the decision took).
      expect(first).toMatchObject({ allowed: true, remaining: 3 });
      expect(first.reset).toBeGreaterThan(23_000);
      expect(first.reset).toBeLessThanOrEqual(24_000);
      const refused = await rl.take('k', 4);
      expect(refused).toMatchObject({ allowed: false, remaining: 3 });
      expect(refused.retryAfter).toBeGreaterThan(11_000);
      expect(refused.reset).toBeGreaterThan(23_000);
      expect(refused.reset).toBeLessThanOrEqual(24_000);
      expect(await rl.take('k', 3)).toMatchObject({ allowed: true, remaining: 0 });
    } finally {
      await client.quit();
    }
  });
});
