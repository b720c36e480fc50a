/**
 * Review of the local refusals: a refusal made by an older installed copy of @holdfast/core
 * (which knew no LocalRefusalError).
 */

import { defaultIsFailure } from '@holdfast/breaker';
import { isLocalRefusal } from '@holdfast/core';
import { describe, expect, it } from 'vitest';

/** An error as an older copy of @holdfast/core and its packages made it: its brands, no LocalRefusalError's. */
function fromOlderCopy(code: string, className: string): Error {
  const error = Object.assign(new Error(`${className} from an older copy`), { code });
  Object.defineProperty(error, Symbol.for('holdfast.error.brands'), {
    value: [Symbol.for(`holdfast.error.${className}`), Symbol.for('holdfast.error.HoldfastError')],
  });
  return error;
}

describe('a refusal made by an older installed copy of @holdfast/core', () => {
  it('is a local refusal and ignored by the breaker, as its open-breaker and rate-limit refusals were before', () => {
    const refusals = [
      fromOlderCopy('E_CIRCUIT_OPEN', 'BrokenCircuitError'),
      fromOlderCopy('E_RATE_LIMITED', 'RateLimitedError'),
      fromOlderCopy('E_BULKHEAD_FULL', 'BulkheadRejectedError'),
      fromOlderCopy('E_CONCURRENCY_LIMIT', 'ConcurrencyLimitError'),
      fromOlderCopy('E_THROTTLED', 'ThrottledError'),
      fromOlderCopy('E_STORE_UNAVAILABLE', 'LimitStoreUnavailableError'),
      fromOlderCopy('E_IDEMPOTENCY_CONFLICT', 'IdempotencyConflictError'),
      fromOlderCopy('E_IDEMPOTENCY_MISMATCH', 'IdempotencyMismatchError'),
    ];
    const judged = refusals.map((error) => [
      error.message,
      isLocalRefusal(error),
      defaultIsFailure({ ok: false, error }),
    ]);
    expect(judged).toEqual(refusals.map((error) => [error.message, true, 'ignored']));
    // The same code from a class that is no refusal (idempotency's store) stays a failure.
    const store = fromOlderCopy('E_STORE_UNAVAILABLE', 'StoreUnavailableError');
    expect([isLocalRefusal(store), defaultIsFailure({ ok: false, error: store })]).toEqual([false, 'failure']);
  });
});
