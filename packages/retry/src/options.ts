import {
  busOption,
  clockOption,
  durationOption,
  fnOption,
  nameOption,
  policiesOption,
  positiveDurationOption,
} from '@holdfast/core';
import { z } from 'zod';
import type { RetryBudget } from './budget.js';

/** A backoff delay when `maxDelay` is not given (or `initialDelay`, if that is longer). */
export const DEFAULT_MAX_DELAY = 10_000;

export const backoffSchema = z
  .strictObject({
    /**
     * How the delay grows with each retry, before jitter:
     * `exponential`: initialDelay × factor^(n-1); `linear`: initialDelay × (1 + factor × (n-1));
     * `constant`: initialDelay.
     * @default 'exponential'
     */
    type: z.enum(['exponential', 'linear', 'constant']).default('exponential'),
    /** The delay before the first retry, in ms. @default 100 */
    initialDelay: durationOption.default(100),
    /** No delay is longer, Retry-After included. @default 10_000 */
    maxDelay: durationOption.optional(),
    /** @default 2 for exponential, 1 for linear */
    factor: z.number().finite().positive().optional(),
  })
  .refine((b) => b.maxDelay === undefined || b.maxDelay >= b.initialDelay, {
    path: ['maxDelay'],
    error: 'must be >= backoff.initialDelay',
  })
  .refine((b) => b.type !== 'exponential' || b.factor === undefined || b.factor >= 1, {
    path: ['factor'],
    error: 'must be >= 1 for exponential backoff',
  });

/** What `onRetry` is told before each wait. */
export interface RetryInfo {
  /** The attempt about to run after the wait: 2 for the first retry. */
  readonly attempt: number;
  /** The wait, in ms. */
  readonly delay: number;
  /** The failed attempt's error, when it threw. */
  readonly error: unknown;
  /** The failed attempt's result, when `retryOn.result` rejected it. */
  readonly result: unknown;
}

const budgetOption = z.custom<RetryBudget | false>(
  (v) =>
    v === false ||
    (typeof v === 'object' &&
      v !== null &&
      typeof (v as RetryBudget).deposit === 'function' &&
      typeof (v as RetryBudget).tryWithdraw === 'function'),
  { error: 'must be a RetryBudget (from retryBudget()) or false' },
);

/** Validates the options of {@link retry}; {@link RetryOptions} is inferred from it. */
export const retryOptionsSchema = z.strictObject({
  /** Attempts in all, the first included: 3 is one try and two retries. @default 3 */
  maxAttempts: z.number().int().min(1).max(1_000).default(3),
  /** @default { type: 'exponential', initialDelay: 100, maxDelay: 10_000, factor: 2 } */
  backoff: backoffSchema.prefault({}),
  /**
   * Spreads the retries of many callers (AWS's "Exponential Backoff and Jitter"):
   * `full`: random in [0, d); `equal`: random in [d/2, d); `decorrelated`: random in
   * [initialDelay, 3 × the previous delay], capped by maxDelay; `none`: d.
   * @default 'full'
   */
  jitter: z.enum(['full', 'equal', 'decorrelated', 'none']).default('full'),
  /**
   * The longest a call may take in all, attempts and waits included, in ms. A retry whose
   * wait would end past it is not made. An attempt in flight is not cut: put a timeout()
   * outside for that. @default no limit
   */
  maxElapsed: positiveDurationOption.optional(),
  /** Which failures are worth another try. */
  retryOn: z
    .strictObject({
      /**
       * @default isTransientError: all but AbortError, BrokenCircuitError,
       * E_IDEMPOTENCY_MISMATCH, E_IDEMPOTENCY_ABORTED, 4xx other than 408/429, TypeErrors that are not network failures. An error marked `nonRetryable()`
       * an `AbortError` (by name) and the caller's abort are never retried, whatever this
       * says. May return a promise: it is awaited. One that throws or rejects retries nothing:
       * the call fails with the attempt's error as is, and a process warning tells it once.
       */
      error: fnOption<(error: unknown, attempt: number) => boolean | PromiseLike<boolean>>().optional(),
      /**
       * @default isTransientResult: a Response with status 408, 429, 500, 502, 503 or 504.
       * One that throws or rejects retries nothing: that result is returned.
       */
      result: fnOption<(result: unknown, attempt: number) => boolean | PromiseLike<boolean>>().optional(),
    })
    .prefault({}),
  /** Waits as long as `Retry-After` (or an error's `retryAfterMs`) asks; longer than maxDelay: gives up at once. @default true */
  retryAfter: z.boolean().default(true),
  /**
   * Called before each wait, for a retry the budget granted, and awaited when it returns a
   * promise; a retry whose wait would then end past maxElapsed, or that the caller aborted
   * meanwhile, is not made. If it throws or rejects, the retry goes on as if it had not, and a
   * process warning (HOLDFAST_PREDICATE_ERROR) tells it once.
   */
  onRetry: fnOption<(info: RetryInfo) => unknown>().optional(),
  /**
   * The retry budget to draw retries from; share one between the policies of a downstream.
   * `false` for none (every retryable failure is retried up to maxAttempts).
   * @default a budget of its own: ratio 0.2, floor 2 per second
   */
  budget: budgetOption.optional(),
  /** The random source of the jitter, in [0, 1). Tests pass a seeded one. @default Math.random */
  random: fnOption<() => number>().optional(),
  /** Shown as `source` on its events. @default 'retry' */
  name: nameOption.default('retry'),
  /** The bus its events go to. @default the global bus */
  bus: busOption.optional(),
  /** @default the real clock */
  clock: clockOption.optional(),
});

/** Options of {@link retry}. */
export type RetryOptions = z.input<typeof retryOptionsSchema>;
export type ParsedRetryOptions = z.output<typeof retryOptionsSchema>;

/** Validates the options of {@link retryBudget}; {@link RetryBudgetOptions} is inferred from it. */
export const retryBudgetOptionsSchema = z.strictObject({
  /** Retries may be at most this share of the calls made in the last `ttl`. @default 0.2 */
  ratio: z.number().finite().min(0).max(10).default(0.2),
  /**
   * A floor for quiet services: this many retries a second are allowed even when ratio × calls
   * is fewer. It stands in for the ratio, it is not added to it. @default 2
   */
  minPerSecond: z.number().finite().nonnegative().default(2),
  /**
   * How long a call or a retry counts, in ms (1 to 60 s). It is also the longest burst the
   * budget lets through when an outage starts: ratio × the calls of one ttl. @default 1_000
   */
  ttl: z.number().finite().min(1_000).max(60_000).default(1_000),
  /** Shown in its snapshot. @default 'retryBudget' */
  name: nameOption.default('retryBudget'),
  /** @default the real clock */
  clock: clockOption.optional(),
  /** Where the budget lists itself for `healthReport()` and the dashboard, or `false`. @default core's `policies` */
  policies: policiesOption.optional(),
});

/** Options of {@link retryBudget}. */
export type RetryBudgetOptions = z.input<typeof retryBudgetOptionsSchema>;
