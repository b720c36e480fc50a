import { type HoldfastError, LocalRefusalError } from '@holdfast/core';

/**
 * A call this package refused to protect a dependency or a service: what load-shedding
 * middleware answers with 429 or 503, and `Retry-After` when `retryAfter` is known.
 */
export interface Rejection {
  /** How long to wait before trying again, ms, when the policy knows. */
  readonly retryAfter: number | undefined;
  /** The HTTP status that fits: 429 for a rate limit, 503 for overload. */
  readonly status: 429 | 503;
}

/** A bulkhead had no free slot and its queue was full, or the call waited past `queueTimeout`. */
export class BulkheadRejectedError extends LocalRefusalError implements Rejection {
  static override readonly brand = Symbol.for('holdfast.error.BulkheadRejectedError');
  override name = 'BulkheadRejectedError';
  readonly status = 503 as const;
  readonly retryAfter = undefined;

  constructor(
    source: string,
    /** `full`: no slot and no room in the queue. `queueTimeout`: the wait for a slot ran out. */
    readonly reason: 'full' | 'queueTimeout',
    /** The bulkhead's `maxConcurrent`. */
    readonly maxConcurrent: number,
    /** The bulkhead's `maxQueue`. */
    readonly maxQueue: number,
  ) {
    const why =
      reason === 'full'
        ? `all ${maxConcurrent} slots are busy and the queue (${maxQueue}) is full`
        : `no slot of ${maxConcurrent} came free within the queue timeout`;
    super('E_BULKHEAD_FULL', `${source}: ${why}`);
  }
}

/** A rate limiter refused the call: come back after `retryAfter` ms. */
export class RateLimitedError extends LocalRefusalError implements Rejection {
  static override readonly brand = Symbol.for('holdfast.error.RateLimitedError');
  override name = 'RateLimitedError';
  readonly status = 429 as const;

  constructor(
    source: string,
    /** How long until the call would be allowed, ms. */
    readonly retryAfter: number,
    options?: { cause?: unknown },
  ) {
    super('E_RATE_LIMITED', `${source}: rate limit reached, retry after ${retryAfter} ms`, options);
  }

  /** `retryAfter` under the name `retry()` reads a wait from: a retry around the limiter waits it out. */
  get retryAfterMs(): number {
    return this.retryAfter;
  }
}

/** An adaptive concurrency limiter already runs as many calls as it has learned the dependency takes. */
export class ConcurrencyLimitError extends LocalRefusalError implements Rejection {
  static override readonly brand = Symbol.for('holdfast.error.ConcurrencyLimitError');
  override name = 'ConcurrencyLimitError';
  readonly status = 503 as const;
  readonly retryAfter = undefined;

  constructor(
    source: string,
    /** The limit when the call came, rounded down. */
    readonly limit: number,
  ) {
    super('E_CONCURRENCY_LIMIT', `${source}: ${limit} calls already in flight (adaptive limit)`);
  }
}

/** Client-side adaptive throttling refused the call locally: the backend has been refusing calls. */
export class ThrottledError extends LocalRefusalError implements Rejection {
  static override readonly brand = Symbol.for('holdfast.error.ThrottledError');
  override name = 'ThrottledError';
  readonly status = 503 as const;
  readonly retryAfter = undefined;

  constructor(
    source: string,
    /** The probability with which calls are refused now (0..1). */
    readonly probability: number,
  ) {
    super('E_THROTTLED', `${source}: throttled locally (refusing ${Math.round(probability * 100)}% of calls)`);
  }
}

/** A Redis rate limiter could not reach Redis and is configured to fail closed (`onRedisError: 'closed'`). */
export class LimitStoreUnavailableError extends LocalRefusalError implements Rejection {
  static override readonly brand = Symbol.for('holdfast.error.LimitStoreUnavailableError');
  override name = 'LimitStoreUnavailableError';
  readonly status = 503 as const;
  readonly retryAfter = undefined;

  constructor(source: string, reason: string, options?: { cause?: unknown }) {
    super('E_STORE_UNAVAILABLE', `${source}: rate limit store unavailable (${reason}); failing closed`, options);
  }
}

/** True when `error` is a refusal of this package (so middleware answers 429 or 503). */
export function isRejection(error: unknown): error is HoldfastError & Rejection {
  return (
    error instanceof BulkheadRejectedError ||
    error instanceof RateLimitedError ||
    error instanceof ConcurrencyLimitError ||
    error instanceof ThrottledError ||
    error instanceof LimitStoreUnavailableError
  );
}
