import { ManualClock } from '@holdfast/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { wallOnlyClock } from '../../../test/support/wall-only-clock.js';
import { type RetryBudget, retryBudget } from '../src/index.js';
import { steadyOutage } from './support.js';

/**
 * The retry budget of 74b9cce4 (earnings spent in shares, the floor's advances owed in fractions),
 * attacked from outside: many calls, fractional shares, a clock stepped back, ratio 0 and 3,
 * dispose(). Each case counts what the budget lets through, never how long it takes.
 */

/** Takes retries until the budget refuses one; returns how many it let through. */
function drain(budget: RetryBudget): number {
  let n = 0;
  while (budget.tryWithdraw()) n++;
  return n;
}

describe('retryBudget, attacked (review of the shares)', () => {
  it.each([
    { ratio: 0.9, minPerSecond: 10_000, calls: 20_000, left: 8_000 },
    { ratio: 0.7, minPerSecond: 100_000, calls: 10_000_000, left: 6_900_000 },
  ])(
    'the floor advances, repaid in fractions of a retry, leave no rounding behind: ratio $ratio, $minPerSecond floor retries, then $calls calls leave $left',
    ({ ratio, minPerSecond, calls, left }) => {
      // The floor lets minPerSecond retries through before any call; the calls then pay for them
      // at `ratio` a call. Summed one 0.9 at a time, 10^4 came to 10^4 + 10^-8 spent, and with an
      // absolute epsilon of 1e-9 the calls had earned one retry less: balance 7,999 of 8,000
      // (6,899,999 after 10^7 calls).
      const clock = new ManualClock(0);
      const budget = retryBudget({ ratio, minPerSecond, ttl: 1_000, clock, policies: false });
      expect(drain(budget)).toBe(minPerSecond);
      for (let i = 0; i < calls; i++) budget.deposit();
      expect(budget.balance).toBe(left);
      expect(drain(budget)).toBe(left);
      expect(budget.snapshot()).toMatchObject({ calls, retries: minPerSecond + left, balance: 0, refused: 2 });
    },
  );

  it('a disposed budget shows a balance of 0: it lets nothing through (tryWithdraw() throws)', () => {
    // It showed the floor (2), as if a retry were still to be had.
    const budget = retryBudget({ ratio: 0.2, minPerSecond: 2, clock: new ManualClock(0), policies: false });
    expect(budget.balance).toBe(2);
    budget.dispose();
    expect(budget.snapshot()).toMatchObject({ calls: 0, retries: 0, balance: 0 });
    expect(() => budget.tryWithdraw()).toThrow();
  });

  it('a floor advance owed across a wall-clock step back is paid once: the calls after the step pay it, no retry is let through twice', async () => {
    const { clock, timers, step } = wallOnlyClock();
    const budget = retryBudget({ ratio: 0.1, minPerSecond: 2, ttl: 1_000, clock, policies: false });
    expect(drain(budget)).toBe(2); // the floor, owed in full: no call yet
    step(-3_600_000);
    for (let i = 0; i < 20; i++) budget.deposit(); // earn 2, all of it paying the floor's advance
    expect(budget.snapshot()).toMatchObject({ calls: 20, retries: 2, balance: 0 });
    expect(budget.tryWithdraw()).toBe(false);
    await timers.advance(1_000); // one ttl on: everything left, the floor is there again
    expect(budget.snapshot()).toMatchObject({ calls: 0, retries: 0, balance: 2 });
    for (let i = 0; i < 30; i++) budget.deposit();
    expect(drain(budget)).toBe(3); // 0.1 × 30, nothing of the old window spent again
  });

  it.each([1_050, 1_500, 3_600_000])(
    'a wall clock stepped back %i ms every 900 ms does not pile up the calls: after 60 s at 100 calls a second, one ttl of them pays',
    async (back) => {
      // Each step back moved all the window counted to the slice of now, one ttl from leaving:
      // stepped back again before that, nothing ever left, and 6,000 calls paid for 1,200 retries.
      const { clock, timers, step } = wallOnlyClock();
      const budget = retryBudget({ ratio: 0.2, minPerSecond: 0, ttl: 1_000, clock, policies: false });
      for (let ms = 0; ms < 60_000; ms += 10) {
        budget.deposit();
        await timers.advance(10);
        if (ms % 900 === 0) step(-back);
      }
      expect(budget.snapshot().calls).toBeLessThanOrEqual(100);
      expect(drain(budget)).toBeLessThanOrEqual(20);
    },
  );

  it('ratio 0: the floor alone, each ttl, however many calls come; the debt no call can pay does not pile up', async () => {
    const clock = new ManualClock(0);
    const budget = retryBudget({ ratio: 0, minPerSecond: 2, ttl: 1_000, clock, policies: false });
    let granted = 0;
    for (let ms = 0; ms < 5_000; ms++) {
      budget.deposit();
      if (budget.tryWithdraw()) granted++;
      expect(budget.balance).toBeLessThanOrEqual(2);
      await clock.advance(1);
    }
    expect(granted).toBe(10);
  });

  it('ratio 3: 10 calls earn 30 retries and no more, the floor not added; the next ttl starts afresh', async () => {
    const clock = new ManualClock(0);
    const budget = retryBudget({ ratio: 3, minPerSecond: 5, ttl: 1_000, clock, policies: false });
    for (let i = 0; i < 10; i++) budget.deposit();
    expect(budget.balance).toBe(30);
    expect(drain(budget)).toBe(30);
    await clock.advance(1_000);
    budget.deposit(); // 3 earned, under the floor of 5: the floor stands in
    expect(drain(budget)).toBe(5);
    for (let i = 0; i < 3; i++) budget.deposit(); // 12 earned, 5 spent or owed: 7 more
    expect(drain(budget)).toBe(7);
  });

  it.each([
    { minPerSecond: 0.5, ttl: 1_000, granted: 0 },
    { minPerSecond: 0.5, ttl: 2_000, granted: 30 },
    { minPerSecond: 2.5, ttl: 1_000, granted: 120 },
    { minPerSecond: 2.5, ttl: 2_000, granted: 150 },
  ])(
    'the floor counts whole retries per ttl, as the README says: minPerSecond $minPerSecond, ttl $ttl gives $granted retries in 60 s',
    async ({ minPerSecond, ttl, granted }) => {
      // A quiet service of 10 calls a second (ratio 0: the floor alone), each asking for a retry.
      const clock = new ManualClock(0);
      const budget = retryBudget({ ratio: 0, minPerSecond, ttl, clock, policies: false });
      expect(await steadyOutage(budget, clock, 10, 0, 59_900)).toBe(granted);
    },
  );

  it('any interleaving, any clock steps and settings: balance is what tryWithdraw() then lets through, and the snapshot counts whole and non-negative', async () => {
    type Op =
      | { kind: 'deposit'; n: number }
      | { kind: 'withdraw'; n: number }
      | { kind: 'drain' }
      | { kind: 'wait'; ms: number }
      | { kind: 'step'; ms: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      {
        arbitrary: fc.record({ kind: fc.constant('deposit' as const), n: fc.integer({ min: 1, max: 400 }) }),
        weight: 4,
      },
      {
        arbitrary: fc.record({ kind: fc.constant('withdraw' as const), n: fc.integer({ min: 1, max: 30 }) }),
        weight: 3,
      },
      { arbitrary: fc.record({ kind: fc.constant('drain' as const) }), weight: 1 },
      {
        arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 70_000 }) }),
        weight: 3,
      },
      {
        arbitrary: fc.record({
          kind: fc.constant('step' as const),
          ms: fc.oneof(fc.constant(-3_600_000), fc.integer({ min: -90_000, max: 90_000 })),
        }),
        weight: 1,
      },
    );
    const config = fc.record({
      ratio: fc.constantFrom(0, 0.07, 0.1, 0.57, 0.9, 3, 10),
      minPerSecond: fc.constantFrom(0, 0.5, 2, 10, 333),
      ttl: fc.constantFrom(1_000, 1_500, 7_777, 60_000),
    });
    await fc.assert(
      fc.asyncProperty(config, fc.array(op, { maxLength: 40 }), async ({ ratio, minPerSecond, ttl }, ops) => {
        const { clock, timers, step } = wallOnlyClock();
        const budget = retryBudget({ ratio, minPerSecond, ttl, clock, policies: false });
        for (const o of ops) {
          if (o.kind === 'deposit') for (let i = 0; i < o.n; i++) budget.deposit();
          else if (o.kind === 'withdraw') for (let i = 0; i < o.n; i++) budget.tryWithdraw();
          else if (o.kind === 'drain') {
            const balance = budget.balance;
            expect(drain(budget)).toBe(balance);
          } else if (o.kind === 'wait') await timers.advance(o.ms);
          else step(o.ms);
          const s = budget.snapshot();
          for (const n of [s.calls, s.retries, s.balance, s.refused]) {
            expect(Number.isInteger(n)).toBe(true);
            expect(n).toBeGreaterThanOrEqual(0);
          }
        }
        budget.dispose();
        expect(budget.snapshot()).toMatchObject({ calls: 0, retries: 0, balance: 0 });
      }),
      { numRuns: 300 },
    );
  });
});
