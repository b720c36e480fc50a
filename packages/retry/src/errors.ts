import { HoldfastError, messageOf } from '@holdfast/core';

/**
 * Why a retry policy gave up on a retryable failure: `maxAttempts` or `maxElapsed` ran out, or
 * `retryAfter`: the failure asked for a wait (`Retry-After`, `retryAfterMs`) longer than `maxDelay`.
 */
export type ExhaustedReason = 'maxAttempts' | 'maxElapsed' | 'retryAfter';

/**
 * A retryable failure outlived the policy's limits: `maxAttempts` attempts, `maxElapsed`, or a
 * `Retry-After` longer than `maxDelay`. `cause` is the last attempt's error.
 */
export class RetryExhaustedError extends HoldfastError {
  static override readonly brand = Symbol.for('holdfast.error.RetryExhaustedError');
  override name = 'RetryExhaustedError';
  /** How many attempts were made. */
  readonly attempts: number;
  /** Which limit ended the retries. */
  readonly reason: ExhaustedReason;
  /** With reason `retryAfter`: the wait the failure asked for, ms. */
  readonly retryAfter: number | undefined;
  /**
   * True when every attempt was refused by one of our policies (`isLocalRefusal`) before it
   * reached the downstream: `isLocalRefusal()` is then true of this error too, so a breaker
   * outside does not count it, nor an outer retry charge its budget for it.
   */
  readonly refusedLocally: boolean;

  constructor(
    source: string,
    attempts: number,
    reason: ExhaustedReason,
    cause: unknown,
    /** With reason `retryAfter`: the wait asked for and the policy's `maxDelay`, ms. */
    wait?: { readonly retryAfter: number; readonly maxDelay: number },
    refusedLocally = false,
  ) {
    super('E_RETRY_EXHAUSTED', `${source}: gave up after ${why(attempts, reason, wait)}: ${messageOf(cause)}`, {
      cause,
    });
    this.attempts = attempts;
    this.reason = reason;
    this.retryAfter = wait?.retryAfter;
    this.refusedLocally = refusedLocally;
  }
}

/**
 * The retry budget refused a retry: the downstream already takes more retries than the budget
 * allows. `cause` is the last attempt's error.
 */
export class RetryBudgetExhaustedError extends HoldfastError {
  static override readonly brand = Symbol.for('holdfast.error.RetryBudgetExhaustedError');
  override name = 'RetryBudgetExhaustedError';
  /** How many attempts were made before the budget said no. */
  readonly attempts: number;

  constructor(source: string, attempts: number, cause: unknown) {
    super('E_BUDGET_EXHAUSTED', `${source}: retry budget exhausted after ${plural(attempts)}: ${messageOf(cause)}`, {
      cause,
    });
    this.attempts = attempts;
  }
}

const kNonRetryable = Symbol.for('holdfast.retry.nonRetryable');

/**
 * Marks an error so that no retry policy retries it, whatever its `retryOn` says.
 * Returns the same error, to be thrown.
 *
 * @example
 * if (res.status === 422) throw nonRetryable(new Error('invalid order'));
 */
export function nonRetryable<E extends object>(error: E): E {
  Object.defineProperty(error, kNonRetryable, { value: true, enumerable: false, configurable: true });
  return error;
}

/** True for an error marked with {@link nonRetryable} (by any installed copy). */
export function isNonRetryable(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as Record<symbol, unknown>)[kNonRetryable] === true;
}

function why(attempts: number, reason: ExhaustedReason, wait: { retryAfter: number; maxDelay: number } | undefined) {
  if (reason === 'maxAttempts') return `${attempts} attempts`;
  if (reason === 'maxElapsed') return `${attempts} attempts (maxElapsed reached)`;
  const asked = wait === undefined ? 'a wait' : `${wait.retryAfter} ms, longer than maxDelay (${wait.maxDelay} ms)`;
  return `${plural(attempts)}: asked to wait ${asked}`;
}

function plural(attempts: number): string {
  return attempts === 1 ? '1 attempt' : `${attempts} attempts`;
}
