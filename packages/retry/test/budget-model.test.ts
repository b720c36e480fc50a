import { ManualClock } from '@holdfast/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { wallOnlyClock } from '../../../test/support/wall-only-clock.js';
import { retry, retryBudget } from '../src/index.js';

/**
 * A model-based test of retryBudget(): two callers deposit and withdraw, interleaved, while the
 * time goes on and a clock without monotonic() steps back (NTP). Checked on the true time line
 * (the clock's timers): the balance is never negative, and in any span shorter than the window
 * (ttl less one slice, so nothing counted in it has left) the retries let through are at most
 * ratio × the calls of that span and the ttl before it (and before that by the steps back, up to
 * a ttl: a call counted after a step stays that much longer), or the floor.
 */

type Op =
  | { kind: 'deposit'; who: 0 | 1; n: number }
  | { kind: 'withdraw'; who: 0 | 1; n: number }
  | { kind: 'wait'; ms: number }
  | { kind: 'back'; ms: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    arbitrary: fc.record({
      kind: fc.constant('deposit' as const),
      who: fc.constantFrom(0 as const, 1 as const),
      n: fc.integer({ min: 1, max: 20 }),
    }),
    weight: 4,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant('withdraw' as const),
      who: fc.constantFrom(0 as const, 1 as const),
      n: fc.integer({ min: 1, max: 10 }),
    }),
    weight: 4,
  },
  { arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 1_500 }) }), weight: 3 },
  {
    arbitrary: fc.record({
      kind: fc.constant('back' as const),
      ms: fc.oneof(fc.constant(3_600_000), fc.integer({ min: 1, max: 5_000 })),
    }),
    weight: 1,
  },
);

describe('retryBudget (model)', () => {
  it('two callers interleaved, a clock stepped back: never negative, never more than the cap on the true time line', async () => {
    const config = fc.record({
      ratio: fc.constantFrom(0, 0.1, 0.2, 0.5, 1, 3),
      minPerSecond: fc.constantFrom(0, 1, 2, 10),
      ttl: fc.constantFrom(1_000, 2_000, 5_000),
    });
    await fc.assert(
      fc.asyncProperty(config, fc.array(op, { maxLength: 60 }), async ({ ratio, minPerSecond, ttl }, run) => {
        const { clock, timers, step } = wallOnlyClock();
        const budget = retryBudget({ ratio, minPerSecond, ttl, clock, policies: false });
        const floor = (minPerSecond * ttl) / 1_000;
        const calls: number[] = []; // true times of deposits
        const retries: number[] = []; // true times of withdrawals let through
        const backs: { at: number; ms: number }[] = []; // true times and sizes of steps back
        for (const o of run) {
          if (o.kind === 'wait') await timers.advance(o.ms);
          else if (o.kind === 'back') {
            step(-o.ms);
            backs.push({ at: timers.now(), ms: o.ms });
          } else if (o.kind === 'deposit') for (let i = 0; i < o.n; i++) budget.deposit();
          else for (let i = 0; i < o.n; i++) if (budget.tryWithdraw()) retries.push(timers.now());
          if (o.kind === 'deposit') for (let i = 0; i < o.n; i++) calls.push(timers.now());
          const { balance, calls: c, retries: r } = budget.snapshot();
          expect(balance).toBeGreaterThanOrEqual(0);
          expect(c).toBeGreaterThanOrEqual(0);
          expect(r).toBeGreaterThanOrEqual(0);
        }
        const span = ttl - ttl / 10;
        for (let i = 0; i < retries.length; i++) {
          const from = retries[i] as number;
          const inSpan = retries.filter((t) => t >= from && t < from + span).length;
          // A call counted after a step back stays in the window longer by that step (it cannot
          // be put before the latest slice seen), up to one ttl: the calls that may pay for it.
          const late = Math.min(
            ttl,
            backs.filter((b) => b.at < from + span).reduce((sum, b) => sum + b.ms, 0),
          );
          const paid = calls.filter((t) => t >= from - ttl - late && t < from + span).length;
          expect(inSpan, `retries from t=${from} within ${span} ms (calls ${paid})`).toBeLessThanOrEqual(
            Math.max(ratio * paid, floor) + 1e-6,
          );
        }
      }),
      { numRuns: 300 },
    );
  });

  it('two retry() policies sharing one budget, failing at once, retry no more than it allows', async () => {
    const clock = new ManualClock(0);
    const budget = retryBudget({ ratio: 0.1, minPerSecond: 0, ttl: 1_000, clock, policies: false });
    const policies = [0, 1].map(() =>
      retry({ maxAttempts: 5, backoff: { initialDelay: 1, maxDelay: 1 }, jitter: 'none', budget, clock }),
    );
    let attempts = 0;
    const calls = Array.from({ length: 100 }, (_, i) =>
      (policies[i % 2] as (typeof policies)[0])
        .execute(() => {
          attempts++;
          return Promise.reject(new Error('down'));
        })
        .catch(() => 'failed'),
    );
    await clock.runAll();
    await Promise.all(calls);
    // 100 calls, 10% of them in retries: 10, however the two policies interleave.
    expect(attempts - 100).toBe(10);
    expect(budget.snapshot()).toMatchObject({ calls: 100, retries: 10, balance: 0 });
  });
});
