/**
 * resilientFetch(): fetch with timeouts, safe retries, per-host breakers, idempotency keys and
 * failover; plus withRetry/withBreaker/... wrappers and TC39 method decorators.
 * @module @holdfast/fetch
 */
export { HttpError } from './errors.js';
export { type ResilientFetchOptions, resilientFetchOptionsSchema } from './options.js';
export { type FetchFunction, type ResilientFetch, resilientFetch } from './resilient-fetch.js';
export { withBreaker, withIdempotency, withRetry, withTimeout } from './wrappers.js';
