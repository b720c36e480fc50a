/**
 * Review of the local refusals: a refusal made by an older installed copy of @holdfast/core
 * (which knew no LocalRefusalError), and a retry between a breaker and the policy that refused.
 */

import { circuitBreaker, defaultIsFailure } from '@holdfast/breaker';
import { createBus, isLocalRefusal, ManualClock, pipeline } from '@holdfast/core';
import { idempotent, memoryStore } from '@holdfast/idempotency';
import { bulkhead, tokenBucket } from '@holdfast/limit';
import { type RetryExhaustedError, retry, retryBudget } from '@holdfast/retry';
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
      // A failover set of an older copy refused these before any endpoint, as this copy's does.
      fromOlderCopy('E_NO_HEALTHY_ENDPOINT', 'NoHealthyEndpointError'),
      fromOlderCopy('E_NO_PRIMARY', 'NoPrimaryError'),
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

describe('pipeline(breaker, retry, refusing policy): a retry that only met refusals', () => {
  function rig() {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const bus = createBus();
    const breaker = circuitBreaker({ clock, bus, consecutiveFailures: 3, policies: false });
    return { clock, bus, breaker };
  }

  it('a full bulkhead: 5 calls, every attempt refused, each E_RETRY_EXHAUSTED; the breaker stays closed', async () => {
    const { clock, bus, breaker } = rig();
    const slots = bulkhead({ maxConcurrent: 1, clock, bus, policies: false });
    let release = () => {};
    const holder = slots.execute(() => new Promise<void>((resolve) => (release = resolve)));
    const policy = pipeline(breaker, retry({ maxAttempts: 2, budget: false, clock, bus }), slots);
    const codes: unknown[] = [];
    for (let i = 0; i < 5; i++) {
      const call = policy.execute(async () => 'never runs').catch((e: unknown) => e);
      await clock.runAll();
      const error = await call;
      codes.push((error as RetryExhaustedError).code);
      expect(isLocalRefusal(error)).toBe(true);
    }
    expect(codes).toEqual(Array(5).fill('E_RETRY_EXHAUSTED'));
    expect(breaker.snapshot()).toMatchObject({ state: 'closed', consecutiveFailures: 0, opens: 0 });
    release();
    await holder;
  });

  it('a limiter of 1 call a minute (a hint past maxDelay): 4 refused calls leave the breaker closed', async () => {
    const { clock, bus, breaker } = rig();
    const limiter = tokenBucket({ limit: 1, interval: 60_000, clock, bus, policies: false });
    const policy = pipeline(breaker, retry({ maxAttempts: 2, budget: false, clock, bus }), limiter);
    const settled: unknown[] = [];
    for (let i = 0; i < 5; i++) {
      const call = policy.execute(async () => 'ran').catch((e: unknown) => (e as RetryExhaustedError).reason);
      await clock.runAll();
      settled.push(await call);
    }
    expect(settled).toEqual(['ran', 'retryAfter', 'retryAfter', 'retryAfter', 'retryAfter']);
    expect(breaker.snapshot()).toMatchObject({ state: 'closed', opens: 0 });
  });

  it('an attempt that reached the downstream still counts: it failed, its retry was refused; 3 such calls open it', async () => {
    const { clock, bus, breaker } = rig();
    const limiter = tokenBucket({ limit: 1, interval: 60_000, clock, bus, policies: false });
    const policy = pipeline(breaker, retry({ maxAttempts: 2, budget: false, clock, bus }), limiter);
    for (let i = 0; i < 3; i++) {
      if (i > 0) await clock.advance(60_000); // a token again for the first attempt
      const call = policy
        .execute(async () => {
          throw new Error('ECONNRESET');
        })
        .catch((e: unknown) => e);
      await clock.runAll();
      const error = await call;
      // The last attempt was refused (its cause), the first reached the downstream and failed.
      expect((error as RetryExhaustedError).cause).toMatchObject({ code: 'E_RATE_LIMITED' });
      expect([(error as RetryExhaustedError).code, isLocalRefusal(error)]).toEqual(['E_RETRY_EXHAUSTED', false]);
    }
    expect(breaker.snapshot()).toMatchObject({ state: 'open', opens: 1 });
  });

  it('retry(retry(bulkhead)): the inner give-up after refusals draws nothing from the outer budget', async () => {
    const { clock, bus } = rig();
    const budget = retryBudget({ clock, policies: false });
    const slots = bulkhead({ maxConcurrent: 1, clock, bus, policies: false });
    let release = () => {};
    const holder = slots.execute(() => new Promise<void>((resolve) => (release = resolve)));
    const policy = pipeline(
      retry({ maxAttempts: 2, budget, clock, bus }),
      retry({ maxAttempts: 2, budget: false, clock, bus }),
      slots,
    );
    const calls = Array.from({ length: 20 }, () => policy.execute(async () => 'never').catch((e: unknown) => e));
    await clock.runAll();
    const errors = await Promise.all(calls);
    expect(errors.map((e) => (e as RetryExhaustedError).code)).toEqual(Array(20).fill('E_RETRY_EXHAUSTED'));
    expect(budget.snapshot()).toMatchObject({ retries: 0, refused: 0 });
    release();
    await holder;
  });
});

describe('retry() around idempotent(): a key reused with another payload', () => {
  it('is not retried: one attempt, the E_IDEMPOTENCY_MISMATCH thrown as is, no wait', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const bus = createBus();
    const attempts: number[] = [];
    bus.on('retry.attempt', (e) => attempts.push(e.attempt));
    let ran = 0;
    const charge = idempotent(async (_order: { id: string; amount: number }) => ++ran, {
      store: memoryStore({ clock }),
      key: (order) => order.id,
      clock,
      bus,
    });
    const policy = retry({ maxAttempts: 3, budget: false, clock, bus });
    expect(await policy.execute(() => charge({ id: 'order-1', amount: 10 }))).toBe(1);
    const call = policy.execute(() => charge({ id: 'order-1', amount: 99 })).catch((e: unknown) => e);
    await clock.runAll();
    const error = await call;
    expect((error as { code?: unknown }).code).toBe('E_IDEMPOTENCY_MISMATCH');
    expect({ ran, retries: attempts.length }).toEqual({ ran: 1, retries: 0 });
  });
});
