/**
 * Run once per key: idempotency records in memory or on Redis, with Express and Fastify
 * middleware.
 * @module @holdfast/idempotency
 */
export { decodeValue, encodeValue, fingerprintOf } from './codec.js';
export {
  IdempotencyAbortedError,
  IdempotencyConflictError,
  IdempotencyMismatchError,
  IdempotencyValueError,
  StoreUnavailableError,
} from './errors.js';
export { type IdempotentContext, type IdempotentOptions, idempotent } from './idempotent.js';
export { MemoryStore, memoryStore } from './memory-store.js';
export {
  idempotentOptionsSchema,
  type MemoryStoreOptions,
  memoryStoreOptionsSchema,
  type RedisClient,
  type RedisPipeline,
  type RedisStoreOptions,
  redisStoreOptionsSchema,
} from './options.js';
export { RedisStore, redisStore } from './redis-store.js';
export type {
  ClaimResult,
  CompletedRecord,
  IdempotencyStore,
  StoredOutcome,
  StoredResponse,
} from './store.js';
