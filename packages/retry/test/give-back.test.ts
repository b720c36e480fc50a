// Fixing review s38b: a retry decided before an async onRetry and not made after it (maxElapsed
// passed, or the caller aborted while the hook ran) gives its budget token back and is not
// announced by retry.attempt.
import { describe, expect, it } from 'vitest';
import { retry, retryBudget } from '../src/index.js';
import { setup } from './support.js';

const fail = async () => {
  throw new Error('ECONNRESET');
};

describe('a retry not made after onRetry', () => {
  it('the caller aborts while onRetry runs: the call rejects with its reason, the token is given back, nothing is announced', async () => {
    const { clock, bus, of } = setup();
    const budget = retryBudget({ clock, ratio: 0, minPerSecond: 0.1, ttl: 10_000, policies: false });
    const caller = new AbortController();
    const hooks: number[] = [];
    const policy = retry({
      clock,
      bus,
      budget,
      jitter: 'none',
      backoff: { initialDelay: 100 },
      onRetry: ({ attempt }) =>
        new Promise<void>((resolve) => {
          hooks.push(attempt);
          clock.setTimeout(resolve, 50);
        }),
    });
    const reason = new Error('caller gone');
    const outcome = policy.execute(fail, { signal: caller.signal }).catch((e: unknown) => e);
    await clock.advance(0);
    expect(hooks).toEqual([2]);
    expect(budget.snapshot().retries).toBe(1); // taken before the hook
    caller.abort(reason);
    await clock.advance(50);
    expect(await outcome).toBe(reason);
    expect(budget.snapshot()).toMatchObject({ retries: 0, balance: 1 });
    expect(of('retry.attempt')).toEqual([]);
    expect(of('retry.giveUp').map((e) => [e.attempts, e.reason])).toEqual([[1, 'aborted']]);
  });

  it('maxElapsed passed during onRetry, on a budget the calls pay for: the budget is as it was before the retry', async () => {
    const { clock, bus } = setup();
    const budget = retryBudget({ clock, ratio: 0.5, minPerSecond: 0, ttl: 10_000, policies: false });
    for (let i = 0; i < 3; i++) {
      budget.deposit();
      await clock.advance(1_000); // earnings in several slices: the retry spends the oldest
    }
    const before = budget.snapshot();
    const policy = retry({
      clock,
      bus,
      budget,
      jitter: 'none',
      backoff: { initialDelay: 100 },
      maxElapsed: 1_000,
      onRetry: () => new Promise<void>((resolve) => clock.setTimeout(resolve, 2_000)),
    });
    const outcome = policy.execute(fail).catch((e: unknown) => e);
    await clock.advance(0);
    expect(budget.snapshot().retries).toBe(1);
    await clock.advance(2_000);
    expect(await outcome).toMatchObject({ reason: 'maxElapsed', attempts: 1 });
    // One more call (the policy's own), and the same allowance as before it: 0.5 × 4 = 2 retries.
    expect(budget.snapshot()).toMatchObject({ calls: before.calls + 1, retries: 0, balance: 2 });
    expect(budget.tryWithdraw()).toBe(true);
    expect(budget.tryWithdraw()).toBe(true);
    expect(budget.tryWithdraw()).toBe(false);
  });

  it('a retry the budget refuses does not call onRetry', async () => {
    const { clock, bus, of } = setup();
    const budget = retryBudget({ clock, ratio: 0, minPerSecond: 0, ttl: 10_000, policies: false });
    const hooks: number[] = [];
    const policy = retry({ clock, bus, budget, onRetry: ({ attempt }) => void hooks.push(attempt) });
    const outcome = policy.execute(fail).catch((e: unknown) => e);
    await clock.advance(0);
    expect(await outcome).toMatchObject({ code: 'E_BUDGET_EXHAUSTED', attempts: 1 });
    expect(hooks).toEqual([]);
    expect(of('retry.attempt')).toEqual([]);
  });
});
