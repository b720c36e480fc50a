/**
 * Bulkhead, rate limiters in process, adaptive concurrency (Gradient2, AIMD, Vegas) and
 * client-side adaptive throttling. Redis limits are in `@holdfast/limit/redis`, middleware in
 * `@holdfast/limit/express` and `@holdfast/limit/fastify`.
 * @module @holdfast/limit
 */
export { type AdaptiveConcurrency, type AdaptiveConcurrencySnapshot, adaptiveConcurrency } from './adaptive.js';
export { Aimd, Gradient2, type LimitAlgorithm, type Sample, Vegas } from './algorithms.js';
export { type Bulkhead, type BulkheadSnapshot, bulkhead } from './bulkhead.js';
export {
  BulkheadRejectedError,
  ConcurrencyLimitError,
  isRejection,
  LimitStoreUnavailableError,
  RateLimitedError,
  type Rejection,
  ThrottledError,
} from './errors.js';
export type { LoadSheddingOptions, Shed } from './http.js';
export { ipKey } from './ip-key.js';
export {
  type AdaptiveConcurrencyOptions,
  type AdaptiveThrottleOptions,
  adaptiveConcurrencyOptionsSchema,
  adaptiveThrottleOptionsSchema,
  type BulkheadOptions,
  bulkheadOptionsSchema,
  type SlidingWindowOptions,
  slidingWindowOptionsSchema,
  type TokenBucketOptions,
  tokenBucketOptionsSchema,
} from './options.js';
export type {
  LocalRateLimiter,
  RateDecision,
  RateLimitExecuteOptions,
  RateLimiter,
  RateLimiterSnapshot,
} from './rate.js';
export { slidingWindow } from './sliding-window.js';
export { type AdaptiveThrottle, type AdaptiveThrottleSnapshot, adaptiveThrottle } from './throttle.js';
export { tokenBucket } from './token-bucket.js';
