import type { Clock, PolicyRegistry } from '@holdfast/core';
import { type RetryBudget, retryBudget } from '@holdfast/retry';

/**
 * What failover needs of a retry budget: one deposit per call, one withdrawal per retry.
 * A `retryBudget()` from @holdfast/retry is one, and can be shared with `retry()` policies.
 */
export interface BudgetLike {
  /** Records one call, which earns the budget a share of a retry. */
  deposit(): void;
  /** Takes one retry; false, and nothing taken, when the budget is spent. */
  tryWithdraw(): boolean;
}

/**
 * The budget of a set given none: retries at most 20% of the calls of the last second, at least
 * 5 a second, so a total outage costs at most about 1.2 attempts per call. (10% was too little
 * once the floor stopped adding to the ratio: one hung endpoint of three needs a third of the
 * calls retried elsewhere until it is ejected.)
 */
export function defaultBudget(name: string, clock: Clock, policies: PolicyRegistry | false | undefined): RetryBudget {
  // Listed where the set lists itself: `policies: false` lists neither (it listed the budget globally).
  return retryBudget({ ratio: 0.2, minPerSecond: 5, ttl: 1_000, name: `${name}/budget`, clock, policies });
}
