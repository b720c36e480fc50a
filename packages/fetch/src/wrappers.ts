import { type CircuitBreakerOptions, circuitBreaker } from '@holdfast/breaker';
import { type ExecuteOptions, type Policy, type TimeoutOptions, timeout } from '@holdfast/core';
import { type IdempotentOptions, idempotent } from '@holdfast/idempotency';
import { type RetryOptions, retry } from '@holdfast/retry';

type AsyncFn<A extends unknown[], R> = (...args: A) => R | PromiseLike<R>;

export function isPolicy(value: unknown): value is Policy {
  return typeof value === 'object' && value !== null && typeof (value as Policy).execute === 'function';
}

/** Wraps `fn` so every call runs through `policy`; the wrapper keeps `fn`'s parameters. */
export function withPolicy<A extends unknown[], R>(
  fn: AsyncFn<A, R>,
  policy: Policy,
): (...args: A) => Promise<Awaited<R>> {
  if (typeof fn !== 'function') throw new TypeError(`${policy.name}: the wrapped value must be a function`);
  return (...args) => policy.execute(() => fn(...args)) as Promise<Awaited<R>>;
}

/**
 * `fn`, retried. Give retry options, or a `retry()` policy to share one (and its budget).
 * @example const getUser = withRetry((id: string) => api.users.get(id), { maxAttempts: 4 });
 */
export function withRetry<A extends unknown[], R>(fn: AsyncFn<A, R>, options: RetryOptions | Policy = {}) {
  return withPolicy(fn, isPolicy(options) ? options : retry(options));
}

/** `fn` behind a circuit breaker. Give breaker options, or a `circuitBreaker()` to share one. */
export function withBreaker<A extends unknown[], R>(fn: AsyncFn<A, R>, options: CircuitBreakerOptions | Policy = {}) {
  return withPolicy(fn, isPolicy(options) ? options : circuitBreaker(options));
}

/**
 * `fn` with a time limit. The wrapped function cannot see an AbortSignal, so the strategy is
 * `aggressive` unless you say otherwise: the call rejects at the deadline and `fn` finishes in
 * the background. To cancel the work itself, use `timeout().execute(({ signal }) => ...)`.
 */
export function withTimeout<A extends unknown[], R>(fn: AsyncFn<A, R>, ms: number, options: TimeoutOptions = {}) {
  return withPolicy(fn, timeout(ms, { strategy: 'aggressive', ...options }));
}

/** Options of {@link withIdempotency}: those of `idempotent()`, with `key` (and `fingerprint`) taking `fn`'s arguments. */
export type WithIdempotencyOptions<A extends unknown[]> = Omit<IdempotentOptions<A>, 'key' | 'fingerprint'> & {
  readonly key: (...args: A) => string;
  readonly fingerprint?: (...args: A) => string;
};

/**
 * `fn`, run once per key: a repeat with the same key returns the stored result.
 * @example const charge = withIdempotency(chargeCard, { store: memoryStore(), key: (order) => order.id });
 */
export function withIdempotency<A extends unknown[], R>(fn: AsyncFn<A, R>, options: WithIdempotencyOptions<A>) {
  if (typeof fn !== 'function') throw new TypeError('withIdempotency: the wrapped value must be a function');
  const { key, fingerprint, ...rest } = options;
  const once = idempotent<A, R>((args) => fn(...args), {
    ...rest,
    key: (args) => key(...args),
    ...(fingerprint ? { fingerprint: (args: A) => fingerprint(...args) } : {}),
  } as IdempotentOptions<A>);
  return (...args: A): Promise<Awaited<R>> => once(args, undefined as ExecuteOptions | undefined);
}
