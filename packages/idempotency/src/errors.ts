import { HoldfastError, LocalRefusalError } from '@holdfast/core';

/** The key is claimed by a call that is still running (HTTP: 409). */
export class IdempotencyConflictError extends LocalRefusalError {
  static override readonly brand = Symbol.for('holdfast.error.IdempotencyConflictError');
  override name = 'IdempotencyConflictError';
  /** The idempotency key. */
  readonly key: string;
  /** How long the running call's lease still has, in ms: a hint for `Retry-After`. */
  readonly retryAfterMs: number;

  constructor(source: string, key: string, retryAfterMs: number) {
    super('E_IDEMPOTENCY_CONFLICT', `${source}: key ${quote(key)} is in progress in another call`);
    this.key = key;
    this.retryAfterMs = retryAfterMs;
  }
}

/** The key was first used with a different payload (HTTP: 422). */
export class IdempotencyMismatchError extends LocalRefusalError {
  static override readonly brand = Symbol.for('holdfast.error.IdempotencyMismatchError');
  override name = 'IdempotencyMismatchError';
  /** The idempotency key. */
  readonly key: string;

  constructor(source: string, key: string) {
    super(
      'E_IDEMPOTENCY_MISMATCH',
      `${source}: key ${quote(key)} was first used with a different payload (its fingerprint differs)`,
    );
    this.key = key;
  }
}

/**
 * The key's run threw after its caller aborted (it followed `ctx.signal`), so its effect may have
 * happened: what a repeat of the key gets, for `ttlMs`, instead of a second run. Check whether the
 * effect happened before sending the operation again under a new key.
 */
export class IdempotencyAbortedError extends LocalRefusalError {
  static override readonly brand = Symbol.for('holdfast.error.IdempotencyAbortedError');
  override name = 'IdempotencyAbortedError';
  /** The idempotency key. */
  readonly key: string;

  constructor(source: string, key: string) {
    super(
      'E_IDEMPOTENCY_ABORTED',
      `${source}: key ${quote(key)} was aborted by its caller while it ran, and may or may not have taken effect`,
    );
    this.key = key;
  }
}

/** The store could not be reached, or did not answer in time. */
export class StoreUnavailableError extends HoldfastError {
  static override readonly brand = Symbol.for('holdfast.error.StoreUnavailableError');
  override name = 'StoreUnavailableError';
  /** The idempotency key. */
  readonly key: string;
  /** The store operation that failed. */
  readonly operation: 'claim' | 'complete' | 'release' | 'extend';
  /**
   * The store refuses to claim at all: set up as it is, it cannot keep the guarantee (a Redis
   * that evicts keys). No outage: `fail-open` does not run the function unprotected for it.
   */
  readonly refused: boolean;

  constructor(
    source: string,
    operation: 'claim' | 'complete' | 'release' | 'extend',
    key: string,
    reason: string,
    options?: { cause?: unknown; refused?: boolean },
  ) {
    super('E_STORE_UNAVAILABLE', `${source}: ${operation} of key ${quote(key)} failed: ${reason}`, options);
    this.key = key;
    this.operation = operation;
    this.refused = options?.refused === true;
  }
}

/** A value that cannot be stored (or fingerprinted) faithfully, e.g. a Date, a Map or a function. */
export class IdempotencyValueError extends HoldfastError {
  static override readonly brand = Symbol.for('holdfast.error.IdempotencyValueError');
  override name = 'IdempotencyValueError';
  /** Where in the value the problem is, e.g. `result.items[2].at`. */
  readonly path: string;

  constructor(path: string, problem: string) {
    super('E_IDEMPOTENCY_VALUE', `idempotency: cannot serialize ${path}: ${problem}`);
    this.path = path;
  }
}

function quote(key: string): string {
  return JSON.stringify(key.length > 80 ? `${key.slice(0, 77)}...` : key);
}
