export { HttpError } from './errors.js';
export { type ResilientFetchOptions, resilientFetchOptionsSchema } from './options.js';
export { type FetchFunction, type ResilientFetch, resilientFetch } from './resilient-fetch.js';
export { withBreaker, withIdempotency, withRetry, withTimeout } from './wrappers.js';
