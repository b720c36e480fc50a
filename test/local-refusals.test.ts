/**
 * A refusal by one of our own policies (a bulkhead, a limiter, a throttle, a breaker) is not the
 * dependency's failure: the call never reached it. A breaker outside does not count it, a retry
 * after it draws nothing from the retry budget, and a retry does not come back before the
 * refusal's hint when that hint is longer than it may wait.
 */

import { circuitBreaker, defaultIsFailure } from '@holdfast/breaker';
import {
  BrokenCircuitError,
  createBus,
  type EventOf,
  type EventType,
  type HoldfastEvent,
  isLocalRefusal,
  ManualClock,
  pipeline,
  TimeoutError,
} from '@holdfast/core';
import { NoHealthyEndpointError, NoPrimaryError } from '@holdfast/failover';
import { IdempotencyConflictError, IdempotencyMismatchError } from '@holdfast/idempotency';
import {
  adaptiveConcurrency,
  adaptiveThrottle,
  BulkheadRejectedError,
  bulkhead,
  ConcurrencyLimitError,
  LimitStoreUnavailableError,
  RateLimitedError,
  ThrottledError,
  tokenBucket,
} from '@holdfast/limit';
import { RetryBudgetExhaustedError, RetryExhaustedError, retry, retryBudget } from '@holdfast/retry';
import { describe, expect, it } from 'vitest';

function setup() {
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  const bus = createBus();
  const events: HoldfastEvent[] = [];
  bus.on('*', (e) => events.push(e));
  const of = <K extends EventType>(type: K) => events.filter((e) => e.type === type) as EventOf<K>[];
  return { clock, bus, of };
}

/** A call that answers 'ok' once `release()` is called: a burst stays in flight until then. */
function gate() {
  let release = () => {};
  const opened = new Promise<void>((resolve) => {
    release = resolve;
  });
  let ran = 0;
  const call = async () => {
    ran++;
    await opened;
    return 'ok';
  };
  return { call, release, ran: () => ran };
}

/** How a burst settled, by error code (`ok` for a success). */
async function tally(calls: Promise<unknown>[]): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const settled of await Promise.allSettled(calls)) {
    const key = settled.status === 'fulfilled' ? 'ok' : String((settled.reason as { code?: unknown }).code);
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

describe('a breaker does not count a refusal by a holdfast policy inside it', () => {
  it('pipeline(breaker, bulkhead): a burst that overfills the bulkhead, every call that runs succeeding, leaves the breaker closed', async () => {
    const { clock, bus, of } = setup();
    const breaker = circuitBreaker({ name: 'payments', clock, bus, policies: false });
    const slots = bulkhead({ maxConcurrent: 2, maxQueue: 2, clock, bus, policies: false });
    const policy = pipeline(breaker, slots);
    const downstream = gate();
    const calls = Array.from({ length: 20 }, () => policy.execute(downstream.call));
    downstream.release();
    expect(await tally(calls)).toEqual({ ok: 4, E_BULKHEAD_FULL: 16 });
    expect(downstream.ran()).toBe(4);
    expect(of('breaker.open')).toEqual([]);
    expect(breaker.snapshot().state).toBe('closed');
    // The next call goes through, instead of an E_CIRCUIT_OPEN for openFor (30 s).
    await expect(policy.execute(async () => 'after the burst')).resolves.toBe('after the burst');
  });

  it('pipeline(breaker, adaptiveConcurrency): refusals at the learned limit leave the breaker closed', async () => {
    const { clock, bus, of } = setup();
    const breaker = circuitBreaker({ name: 'payments', clock, bus, policies: false });
    const limiter = adaptiveConcurrency({
      algorithm: 'aimd',
      initialLimit: 3,
      minLimit: 1,
      maxLimit: 3,
      clock,
      bus,
      policies: false,
    });
    const downstream = gate();
    const calls = Array.from({ length: 20 }, () => pipeline(breaker, limiter).execute(downstream.call));
    downstream.release();
    expect(await tally(calls)).toEqual({ ok: 3, E_CONCURRENCY_LIMIT: 17 });
    expect(of('breaker.open')).toEqual([]);
    expect(breaker.snapshot().state).toBe('closed');
  });

  it("pipeline(breaker, adaptiveThrottle): the throttle's local refusals are not counted a second time", async () => {
    const { clock, bus, of } = setup();
    const breaker = circuitBreaker({ name: 'payments', consecutiveFailures: 3, clock, bus, policies: false });
    const throttle = adaptiveThrottle({ k: 2, random: () => 0, clock, bus, policies: false });
    const policy = pipeline(breaker, throttle);
    const refused = Object.assign(new Error('HTTP 503'), { status: 503 });
    // The backend refuses once: a failure, counted by the breaker as it came.
    await expect(policy.execute(() => Promise.reject(refused))).rejects.toBe(refused);
    // Now the throttle refuses locally (requests and no accept): the backend's refusal again, thrice.
    for (let i = 0; i < 3; i++) {
      const local = await policy.execute(async () => 'never runs').catch((e: unknown) => e);
      expect(local).toBeInstanceOf(ThrottledError);
    }
    expect(breaker.snapshot()).toMatchObject({ state: 'closed', consecutiveFailures: 1 });
    expect(of('breaker.open')).toEqual([]);
  });

  it('defaultIsFailure: every local refusal is ignored; timeouts and exhausted retries stay failures', () => {
    const ignored = [
      new BulkheadRejectedError('bulkhead', 'full', 2, 0),
      new RateLimitedError('limiter', 1_000),
      new ConcurrencyLimitError('adaptive', 3),
      new ThrottledError('throttle', 0.5),
      new LimitStoreUnavailableError('limiter', 'ECONNREFUSED'),
      new BrokenCircuitError('inner', 0),
      new IdempotencyConflictError('idempotent', 'order-1', 5_000),
      new IdempotencyMismatchError('idempotent', 'order-1'),
      // The set refused the call before any endpoint: the failures behind its verdict were counted.
      new NoHealthyEndpointError('failover', 0, 3),
      new NoPrimaryError('failover', { a: 'unreachable' }, 'a: unreachable'),
    ];
    const brands = Symbol.for('holdfast.error.brands');
    const refusal = Symbol.for('holdfast.error.LocalRefusalError');
    for (const error of ignored) {
      expect([error.code, defaultIsFailure({ ok: false, error })]).toEqual([error.code, 'ignored']);
      expect([error.code, isLocalRefusal(error)]).toEqual([error.code, true]);
      // The same refusal from an older copy of @holdfast/core, whose class did not extend
      // LocalRefusalError yet: core must know it by its code (or brand), or a breaker counts it.
      const own = (error as unknown as Record<symbol, symbol[]>)[brands] ?? [];
      const older = Object.assign(new Error(error.message), { code: error.code });
      Object.defineProperty(older, brands, { value: own.filter((b) => b !== refusal) });
      expect([error.code, isLocalRefusal(older)]).toEqual([error.code, true]);
    }
    const down = new Error('ECONNRESET');
    const failures = [
      new TimeoutError('timeout', 1_000),
      new RetryExhaustedError('retry', 3, 'maxAttempts', down),
      new RetryBudgetExhaustedError('retry', 2, down),
    ];
    for (const error of failures) {
      expect([error.code, defaultIsFailure({ ok: false, error })]).toEqual([error.code, 'failure']);
      expect([error.code, isLocalRefusal(error)]).toEqual([error.code, false]);
    }
  });
});

describe('retry() and a refusal that asks for a longer wait than it may take', () => {
  it('a limiter of 1 call a minute: the refused call gives up at once, the refusal its cause, no attempt wasted', async () => {
    const { clock, bus, of } = setup();
    const limiter = tokenBucket({ limit: 1, interval: 60_000, clock, bus, policies: false });
    const policy = pipeline(retry({ maxAttempts: 3, budget: false, clock, bus }), limiter);
    let ran = 0;
    const call = async () => ++ran;
    expect(await policy.execute(call)).toBe(1);
    const start = clock.now();
    const second = policy.execute(call).catch((e: unknown) => e);
    await clock.runAll();
    const error = await second;
    expect(clock.now() - start).toBe(0); // no wait of maxDelay (10 s) that ends refused again
    expect(of('rateLimit.reject')).toHaveLength(1);
    expect(ran).toBe(1);
    expect(error).toBeInstanceOf(RetryExhaustedError);
    expect(error).toMatchObject({ reason: 'retryAfter', attempts: 1, retryAfter: 60_000 });
    expect((error as RetryExhaustedError).cause).toBeInstanceOf(RateLimitedError);
    expect((error as Error).message).toMatch(/asked to wait 60000 ms, longer than maxDelay \(10000 ms\)/);
    expect(of('retry.giveUp')).toMatchObject([{ reason: 'retryAfter', attempts: 1, code: 'E_RATE_LIMITED' }]);
    expect(of('retry.attempt')).toEqual([]);
  });

  it('a hint within maxDelay is still waited out, and the retry then runs', async () => {
    const { clock, bus } = setup();
    const limiter = tokenBucket({ limit: 1, interval: 5_000, clock, bus, policies: false });
    const policy = pipeline(retry({ maxAttempts: 3, budget: false, clock, bus }), limiter);
    let ran = 0;
    const call = async () => ++ran;
    await policy.execute(call);
    const start = clock.now();
    const second = policy.execute(call);
    await clock.runAll();
    expect(await second).toBe(2);
    expect(clock.now() - start).toBe(5_000);
  });
});

describe('a retry after a local refusal draws nothing from the retry budget', () => {
  it('30 calls refused by a full bulkhead: each retried up to maxAttempts, none a budget error, the budget untouched', async () => {
    const { clock, bus, of } = setup();
    const budget = retryBudget({ clock, policies: false });
    const slots = bulkhead({ maxConcurrent: 1, clock, bus, policies: false });
    const held = gate();
    const holder = slots.execute(held.call); // the one slot, busy for the whole test
    const policy = pipeline(retry({ maxAttempts: 2, jitter: 'none', budget, clock, bus }), slots);
    const calls = Array.from({ length: 30 }, () => policy.execute(async () => 'never runs').catch((e: unknown) => e));
    await clock.runAll();
    const errors = await Promise.all(calls);
    expect(errors.filter((e) => e instanceof RetryBudgetExhaustedError)).toHaveLength(0);
    expect(errors.filter((e) => e instanceof RetryExhaustedError)).toHaveLength(30);
    expect((errors[0] as RetryExhaustedError).cause).toBeInstanceOf(BulkheadRejectedError);
    expect(of('retry.attempt')).toHaveLength(30);
    expect(of('retry.budgetExhausted')).toEqual([]);
    expect(budget.snapshot()).toMatchObject({ retries: 0, refused: 0 });
    held.release();
    await holder;

    // A real failure of the downstream right after still gets its retry from the budget.
    let tries = 0;
    const flaky = async () => {
      if (++tries === 1) throw Object.assign(new Error('ECONNRESET'), { code: 'ECONNRESET' });
      return 'recovered';
    };
    const recovered = policy.execute(flaky);
    await clock.runAll();
    expect(await recovered).toBe('recovered');
    expect(budget.snapshot()).toMatchObject({ retries: 1, refused: 0 });
  });
});
