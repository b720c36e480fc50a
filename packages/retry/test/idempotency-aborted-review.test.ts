/**
 * Review: retry() and an idempotency key whose run followed its caller's abort and threw
 * (`E_IDEMPOTENCY_ABORTED`). The refusal is local and lasts the key's ttlMs: every attempt
 * gets it again, so waiting and trying again only holds the caller.
 */
import { createBus, LocalRefusalError } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { isTransientError, retry } from '../src/index.js';
import { finish, setup } from './support.js';

/** As @holdfast/idempotency makes it (retry does not import that package). */
class IdempotencyAbortedError extends LocalRefusalError {
  static override readonly brand = Symbol.for('holdfast.error.IdempotencyAbortedError');
  override name = 'IdempotencyAbortedError';
  constructor() {
    super('E_IDEMPOTENCY_ABORTED', 'idempotent: key "order-1" was aborted by its caller while it ran');
  }
}

describe('retry() and E_IDEMPOTENCY_ABORTED', () => {
  it('isTransientError says it is not worth another try', () => {
    expect(isTransientError(new IdempotencyAbortedError())).toBe(false);
  });

  it('one attempt, the refusal thrown as is, no wait and no retry.attempt', async () => {
    const { clock, bus, of } = setup();
    let attempts = 0;
    const refusal = new IdempotencyAbortedError();
    const policy = retry({ maxAttempts: 5, budget: false, clock, bus });
    const call = policy
      .execute(() => {
        attempts++;
        throw refusal;
      })
      .catch((e: unknown) => e);
    await finish(clock);
    expect(await call).toBe(refusal);
    expect({ attempts, retries: of('retry.attempt').length }).toEqual({ attempts: 1, retries: 0 });
  });

  it('a custom retryOn.error still decides (the default only changes)', async () => {
    const { clock } = setup();
    let attempts = 0;
    const policy = retry({ maxAttempts: 3, budget: false, clock, bus: createBus(), retryOn: { error: () => true } });
    const call = policy
      .execute(() => {
        attempts++;
        throw new IdempotencyAbortedError();
      })
      .catch((e: unknown) => e);
    await finish(clock);
    await call;
    expect(attempts).toBe(3);
  });
});
