import { DisposedError, HoldfastConfigError, ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { RetryBudgetExhaustedError, retry, retryBudget } from '../src/index.js';
import { finish, setup } from './support.js';

const down = () => Promise.reject(new Error('down'));

describe('retryBudget() arithmetic', () => {
  it('allows ratio × calls + minPerSecond × ttl retries in the window', () => {
    const clock = new ManualClock(0);
    const budget = retryBudget({ ratio: 0.2, minPerSecond: 10, ttl: 1_000, clock });
    expect(budget.balance).toBe(10); // the floor, before any call
    for (let i = 0; i < 50; i++) budget.deposit();
    expect(budget.balance).toBe(20); // 0.2 × 50 + 10
    let granted = 0;
    while (budget.tryWithdraw()) granted++;
    expect(granted).toBe(20);
    expect(budget.snapshot()).toEqual({
      name: 'retryBudget',
      ratio: 0.2,
      minPerSecond: 10,
      ttl: 1_000,
      calls: 50,
      retries: 20,
      balance: 0,
      refused: 1,
    });
  });

  it('forgets calls and retries once they are ttl old', async () => {
    const clock = new ManualClock(0);
    const budget = retryBudget({ ratio: 0.5, minPerSecond: 0, ttl: 2_000, clock });
    for (let i = 0; i < 10; i++) budget.deposit(); // t = 0: 10 calls
    await clock.advance(1_000);
    for (let i = 0; i < 10; i++) budget.deposit(); // t = 1000: 10 more
    expect(budget.balance).toBe(10);
    for (let i = 0; i < 8; i++) expect(budget.tryWithdraw()).toBe(true); // t = 1000: 8 retries
    expect(budget.balance).toBe(2);
    await clock.advance(1_000); // t = 2000: the calls of t = 0 leave; 10 calls, 8 retries remain
    expect(budget.snapshot()).toMatchObject({ calls: 10, retries: 8, balance: 0 });
    expect(budget.tryWithdraw()).toBe(false);
    await clock.advance(1_000); // t = 3000: all gone
    expect(budget.snapshot()).toMatchObject({ calls: 0, retries: 0, balance: 0, refused: 1 });
  });

  it('gives a quiet service its floor of minPerSecond, again each ttl', async () => {
    const clock = new ManualClock(0);
    const budget = retryBudget({ ratio: 0.2, minPerSecond: 3, ttl: 1_000, clock });
    const take = () => {
      let n = 0;
      while (budget.tryWithdraw()) n++;
      return n;
    };
    expect(take()).toBe(3);
    await clock.advance(500);
    expect(take()).toBe(0);
    await clock.advance(500);
    expect(take()).toBe(3);
    const ten = retryBudget({ minPerSecond: 3, ttl: 10_000, clock });
    expect(ten.balance).toBe(30); // minPerSecond × ttl in seconds
  });

  it('throws E_DISPOSED after dispose(), and a policy on it fails its calls', async () => {
    const budget = retryBudget();
    budget.dispose();
    expect(() => budget.deposit()).toThrow(DisposedError);
    expect(() => budget.tryWithdraw()).toThrow(DisposedError);
    expect(budget.snapshot()).toMatchObject({ calls: 0, retries: 0 });
    await expect(retry({ budget }).execute(() => 1)).rejects.toMatchObject({ code: 'E_DISPOSED' });
  });

  it('names the bad option', () => {
    expect(() => retryBudget({ ratio: -1 })).toThrow(HoldfastConfigError);
    expect(() => retryBudget({ ttl: 100 })).toThrow(/^retryBudget: ttl .* \(got 100\)$/);
    expect(() => retryBudget({ ratio: 0.1, rate: 2 } as never)).toThrow(
      'retryBudget: rate is not a known option (got 2)',
    );
  });
});

describe('retry() with a budget', () => {
  it('counts one deposit per call, one withdrawal per retry', async () => {
    const { clock, bus } = setup();
    const budget = retryBudget({ clock });
    const policy = retry({ budget, clock, bus, jitter: 'none' });
    await policy.execute(() => 'ok');
    await policy.execute(() => 'ok');
    let n = 0;
    const call = policy.execute(() => {
      if (++n < 3) throw new Error('flaky');
      return 'ok';
    });
    await finish(clock);
    await call;
    expect(budget.snapshot()).toMatchObject({ calls: 3, retries: 2 });
  });

  it('fails fast with E_BUDGET_EXHAUSTED (cause: the last error) once the budget is spent', async () => {
    const { clock, bus, of } = setup();
    const budget = retryBudget({ ratio: 0, minPerSecond: 1, clock });
    const policy = retry({ budget, clock, bus, jitter: 'none', maxAttempts: 5, name: 'pricing' });
    const first = policy.execute(down);
    const outcome = expect(first).rejects.toMatchObject({ code: 'E_BUDGET_EXHAUSTED', attempts: 2 });
    await finish(clock);
    await outcome;
    const error = await first.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RetryBudgetExhaustedError);
    expect((error as Error).cause).toEqual(new Error('down'));
    expect((error as Error).message).toBe('pricing: retry budget exhausted after 2 attempts: down');
    expect(of('retry.budgetExhausted')).toEqual([
      expect.objectContaining({ type: 'retry.budgetExhausted', source: 'pricing', attempt: 3, code: 'Error' }),
    ]);
    expect(of('retry.giveUp')).toEqual([expect.objectContaining({ attempts: 2, reason: 'budget' })]);
    // The next call gets no retry at all.
    await expect(policy.execute(down)).rejects.toMatchObject({ code: 'E_BUDGET_EXHAUSTED', attempts: 1 });
  });

  it('returns the last result when the budget refuses a retry on a result', async () => {
    const { clock, bus } = setup();
    const budget = retryBudget({ ratio: 0, minPerSecond: 0, clock });
    const policy = retry({ budget, clock, bus });
    const res = await policy.execute(() => new Response('busy', { status: 503 }));
    expect(res.status).toBe(503);
  });

  it('is shared by two policies: their retries draw on one allowance', async () => {
    const { clock, bus } = setup();
    const budget = retryBudget({ ratio: 0, minPerSecond: 3, clock });
    const inventory = retry({ budget, clock, bus, jitter: 'none', maxAttempts: 10, name: 'inventory' });
    const pricing = retry({ budget, clock, bus, jitter: 'none', maxAttempts: 10, name: 'pricing' });
    let attempts = 0;
    const fail = () => {
      attempts++;
      return down();
    };
    const calls = [inventory.execute(fail), pricing.execute(fail)].map((c) => c.catch((e: Error) => e));
    await finish(clock);
    const errors = await Promise.all(calls);
    expect(errors.map((e) => (e as { code?: string }).code)).toEqual(['E_BUDGET_EXHAUSTED', 'E_BUDGET_EXHAUSTED']);
    expect(attempts).toBe(2 + 3); // two calls, three retries between them
    expect(budget.snapshot()).toMatchObject({ calls: 2, retries: 3, refused: 2 });
  });

  it('gives every retry() a budget of its own by default (ratio 0.2, 10 a second); budget: false has none', async () => {
    const { clock, bus } = setup();
    const run = async (policy: ReturnType<typeof retry>) => {
      let attempts = 0;
      const calls = Array.from({ length: 100 }, () =>
        policy
          .execute(() => {
            attempts++;
            return down();
          })
          .catch(() => {}),
      );
      await finish(clock);
      await Promise.all(calls);
      return attempts;
    };
    const own = retry({ clock, bus, maxAttempts: 4 });
    expect(own.budget?.snapshot()).toMatchObject({ ratio: 0.2, minPerSecond: 10, ttl: 1_000 });
    expect(await run(own)).toBe(100 + 20 + 10);
    const none = retry({ clock, bus, maxAttempts: 4, budget: false });
    expect(none.budget).toBeUndefined();
    expect(await run(none)).toBe(400);
  });
});
