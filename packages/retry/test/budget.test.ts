import { DisposedError, HoldfastConfigError, ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { RetryBudgetExhaustedError, retry, retryBudget } from '../src/index.js';
import { finish, setup, steadyOutage } from './support.js';

const down = () => Promise.reject(new Error('down'));

describe('retryBudget() arithmetic', () => {
  it('allows ratio × calls retries in the window, or minPerSecond × ttl when that is more', () => {
    const clock = new ManualClock(0);
    const budget = retryBudget({ ratio: 0.2, minPerSecond: 10, ttl: 1_000, clock });
    expect(budget.balance).toBe(10); // the floor, before any call
    for (let i = 0; i < 30; i++) budget.deposit();
    expect(budget.balance).toBe(10); // 0.2 × 30 = 6 is under the floor: the floor stands
    for (let i = 0; i < 70; i++) budget.deposit();
    expect(budget.balance).toBe(20); // 0.2 × 100, and the floor is not added on top
    let granted = 0;
    while (budget.tryWithdraw()) granted++;
    expect(granted).toBe(20);
    expect(budget.snapshot()).toEqual({
      name: 'retryBudget',
      ratio: 0.2,
      minPerSecond: 10,
      ttl: 1_000,
      calls: 100,
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

  it('gives every retry() a budget of its own by default (ratio 0.2, floor 2 a second); budget: false has none', async () => {
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
    expect(own.budget?.snapshot()).toMatchObject({ ratio: 0.2, minPerSecond: 2, ttl: 1_000 });
    expect(await run(own)).toBe(100 + 20); // 0.2 × 100 calls; the floor of 2 is less
    const none = retry({ clock, bus, maxAttempts: 4, budget: false });
    expect(none.budget).toBeUndefined();
    expect(await run(none)).toBe(400);
  });
});

describe('retryBudget() under a total outage, by traffic', () => {
  /**
   * `rate` calls a second for `seconds` to a backend that always fails, 4 attempts each, on a
   * ManualClock shared by the policy and the budget. Returns backend attempts per call.
   */
  async function outage(rate: number, seconds: number, budget?: ReturnType<typeof retryBudget>): Promise<number> {
    const { clock, bus } = setup(0);
    const policy = retry({ clock, bus, maxAttempts: 4, budget: budget ?? retryBudget({ clock }) });
    const perStep = Math.max(1, Math.round(rate / 1_000));
    const stepMs = Math.max(1, Math.round(1_000 / rate));
    let attempts = 0;
    const calls: Promise<unknown>[] = [];
    for (let i = 0; i < rate * seconds; i++) {
      calls.push(
        policy
          .execute(() => {
            attempts++;
            return down();
          })
          .catch(() => {}),
      );
      if ((i + 1) % perStep === 0) await clock.advance(stepMs);
    }
    await finish(clock);
    await Promise.all(calls);
    return attempts / (rate * seconds);
  }

  it.each([100, 1_000, 5_000])(
    'caps a storm at %i calls a second to 1.2× the load with the default budget',
    async (rate) => {
      const amplification = await outage(rate, 2);
      expect(amplification).toBeGreaterThanOrEqual(1.19); // the budget's retries were made
      expect(amplification).toBeLessThanOrEqual(1.2 + 1e-9);
    },
  );

  it('still retries a quiet service: 1 call a second that fails gets every retry it asks for', async () => {
    // 0.2 × 1 call allows no retry; the floor of 2 a second does.
    const { clock, bus } = setup(0);
    const policy = retry({ clock, bus, maxAttempts: 2 });
    for (let i = 0; i < 5; i++) {
      let attempts = 0;
      const call = policy.execute(() => {
        attempts++;
        return attempts === 1 ? down() : 'ok';
      });
      await finish(clock);
      await expect(call).resolves.toBe('ok');
      expect(attempts).toBe(2);
      await clock.advance(1_000);
    }
  });

  it.each([
    { rate: 18, ratio: 0.1, ttl: 2_000 },
    { rate: 19, ratio: 0.1, ttl: 1_000 },
    { rate: 8, ratio: 0.2, ttl: 1_000 },
  ])(
    'gives a service just under minPerSecond / ratio its floor every second of an outage: $rate calls a second, ratio $ratio, ttl $ttl',
    async ({ rate, ratio, ttl }) => {
      // The calls earn less than the floor of 2 a second, so the floor stands in for them. The
      // calls' earnings still pay for the floor's retries (a busier window after must not spend
      // them again), but the retries leave the window on time: it was 1.53 a second at 18 calls
      // (ttl 2 s) when a paid retry counted from the slice of the call that paid for it.
      const clock = new ManualClock(0);
      const budget = retryBudget({ ratio, minPerSecond: 2, ttl, clock, policies: false });
      const granted = await steadyOutage(budget, clock, rate, 13, 60_013);
      expect(granted).toBeGreaterThanOrEqual(2 * 60);
      expect(granted).toBeLessThanOrEqual(2 * 60 + (2 * ttl) / 1_000);
    },
  );

  it('never lets the floor stack on the ratio: retries in any ttl stay within max(ratio × calls, floor)', async () => {
    const clock = new ManualClock(0);
    const budget = retryBudget({ ratio: 0.2, minPerSecond: 10, ttl: 1_000, clock });
    for (const calls of [0, 10, 49, 50, 51, 200, 1_000]) {
      const b = retryBudget({ ratio: 0.2, minPerSecond: 10, ttl: 1_000, clock });
      for (let i = 0; i < calls; i++) b.deposit();
      let granted = 0;
      while (b.tryWithdraw()) granted++;
      expect(granted).toBe(Math.max(Math.floor(0.2 * calls + 1e-9), 10));
    }
    expect(budget.balance).toBe(10);
  });

  it('counts deposits on the real clock, though it reads the clock once in 8 of them', () => {
    const budget = retryBudget({ ratio: 0.5, minPerSecond: 0 });
    for (let i = 0; i < 100; i++) budget.deposit();
    // All within one ttl: none has left the window, so none is lost by the skipped reads.
    expect(budget.snapshot()).toMatchObject({ calls: 100, balance: 50 });
    budget.dispose();
  });
});
