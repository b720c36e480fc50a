/**
 * Retries on p-retry with jitter, Retry-After, result predicates and a retry budget that stops
 * retry storms.
 * @module @holdfast/retry
 */
export { type RetryBudget, type RetryBudgetSnapshot, retryBudget } from './budget.js';
export {
  isNetworkError,
  isResponseLike,
  isTransientError,
  isTransientResult,
  type ResponseLike,
  statusOf,
} from './classify.js';
export {
  type ExhaustedReason,
  isNonRetryable,
  nonRetryable,
  RetryBudgetExhaustedError,
  RetryExhaustedError,
} from './errors.js';
export {
  type RetryBudgetOptions,
  type RetryInfo,
  type RetryOptions,
  retryBudgetOptionsSchema,
  retryOptionsSchema,
} from './options.js';
export { type RetryPolicy, retry } from './retry.js';
export { parseRetryAfter } from './retry-after.js';
