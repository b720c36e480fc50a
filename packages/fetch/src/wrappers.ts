import { type CircuitBreakerOptions, circuitBreaker } from '@holdfast/breaker';
import { type ExecuteOptions, fnOption, type Policy, parseOptions, type TimeoutOptions, timeout } from '@holdfast/core';
import { fingerprintOf, type IdempotentOptions, idempotent } from '@holdfast/idempotency';
import { type RetryOptions, retry } from '@holdfast/retry';
import { z } from 'zod';

/** A function to wrap: sync or async, with the `this` it is called with. */
type AsyncFn<This, A extends unknown[], R> = (this: This, ...args: A) => R | PromiseLike<R>;
/** The wrapper: the same `this` and parameters, always a promise. */
type Wrapped<This, A extends unknown[], R> = (this: This, ...args: A) => Promise<Awaited<R>>;

export function isPolicy(value: unknown): value is Policy {
  return typeof value === 'object' && value !== null && typeof (value as Policy).execute === 'function';
}

/**
 * Wraps `fn` so every call runs through `policy`. The wrapper keeps `fn`'s parameters and the
 * `this` it is called with, so a wrapped method still sees its instance.
 */
export function withPolicy<This, A extends unknown[], R>(fn: AsyncFn<This, A, R>, policy: Policy): Wrapped<This, A, R> {
  if (typeof fn !== 'function') throw new TypeError(`${policy.name}: the wrapped value must be a function`);
  return keepIdentity(function (this: This, ...args: A) {
    return policy.execute(() => fn.apply(this, args)) as Promise<Awaited<R>>;
  }, fn);
}

/**
 * Gives `wrapper` the `name` and `length` of `fn`, so stack traces, logs by function name and
 * frameworks that read them (NestJS reflection) see the function that was wrapped.
 */
export function keepIdentity<W extends (...args: never) => unknown>(wrapper: W, fn: (...args: never) => unknown): W {
  Object.defineProperty(wrapper, 'name', { value: fn.name, configurable: true });
  Object.defineProperty(wrapper, 'length', { value: fn.length, configurable: true });
  return wrapper;
}

/**
 * `fn`, retried. Give retry options, or a `retry()` policy to share one (and its budget).
 * @example const getUser = withRetry((id: string) => api.users.get(id), { maxAttempts: 4 });
 */
export function withRetry<This, A extends unknown[], R>(fn: AsyncFn<This, A, R>, options: RetryOptions | Policy = {}) {
  return withPolicy(fn, isPolicy(options) ? options : retry(options));
}

/** `fn` behind a circuit breaker. Give breaker options, or a `circuitBreaker()` to share one. */
export function withBreaker<This, A extends unknown[], R>(
  fn: AsyncFn<This, A, R>,
  options: CircuitBreakerOptions | Policy = {},
) {
  return withPolicy(fn, isPolicy(options) ? options : circuitBreaker(options));
}

/**
 * `fn` with a time limit. The wrapped function cannot see an AbortSignal, so the strategy is
 * `aggressive` unless you say otherwise: the call rejects at the deadline and `fn` finishes in
 * the background. To cancel the work itself, use `timeout().execute(({ signal }) => ...)`.
 */
export function withTimeout<This, A extends unknown[], R>(
  fn: AsyncFn<This, A, R>,
  ms: number,
  options: TimeoutOptions = {},
) {
  return withPolicy(fn, timeout(ms, aggressiveByDefault(options)));
}

/**
 * The options of a wrapped function's timeout: `aggressive` unless told otherwise. Options that
 * are no object go to timeout() as they are, to be refused as such (a string spread would be
 * refused one letter at a time).
 */
export function aggressiveByDefault(options: TimeoutOptions): TimeoutOptions {
  const given: unknown = options;
  if (typeof given !== 'object' || given === null || Array.isArray(given)) return options;
  // `strategy: undefined` (`{ strategy: config.strategy }`, none configured) is no strategy given.
  return { ...options, strategy: options.strategy ?? 'aggressive' };
}

/** Options of {@link withIdempotency}: those of `idempotent()`, with `key` (and `fingerprint`) taking `fn`'s arguments. */
export type WithIdempotencyOptions<A extends unknown[]> = Omit<IdempotentOptions<A>, 'key' | 'fingerprint'> & {
  readonly key: (...args: A) => string;
  readonly fingerprint?: (...args: A) => string;
};

/** `key` and `fingerprint` take the arguments spread; the other options are idempotent()'s own. */
const keyOptionsSchema = z.looseObject({
  key: fnOption('must be a function of the arguments that returns the key'),
  fingerprint: fnOption().optional(),
});

/**
 * Checks the options of {@link withIdempotency} or `@idempotent` where they are given, and
 * returns idempotent()'s options for input `[this, args]`: the instance travels with the
 * arguments but is neither key nor fingerprint.
 * @internal
 */
export function idempotentOptionsOf<This, A extends unknown[]>(
  owner: string,
  options: WithIdempotencyOptions<A>,
): IdempotentOptions<[This, A]> {
  parseOptions(owner, keyOptionsSchema, options);
  const { key, fingerprint, ...rest } = options;
  return {
    ...rest,
    key: ([, args]) => key(...args),
    fingerprint: ([, args]) => (fingerprint ? fingerprint(...args) : fingerprintOf(args)),
  } as IdempotentOptions<[This, A]>;
}

/**
 * `fn`, run once per key: a repeat with the same key returns the stored result.
 * @example const charge = withIdempotency(chargeCard, { store: memoryStore(), key: (order) => order.id });
 */
export function withIdempotency<This, A extends unknown[], R>(
  fn: AsyncFn<This, A, R>,
  options: WithIdempotencyOptions<A>,
): Wrapped<This, A, R> {
  if (typeof fn !== 'function') throw new TypeError('withIdempotency: the wrapped value must be a function');
  const once = idempotent<[This, A], R>(
    ([self, args]) => fn.apply(self, args),
    idempotentOptionsOf<This, A>('withIdempotency', options),
  );
  return keepIdentity(function (this: This, ...args: A) {
    return once([this, args], undefined as ExecuteOptions | undefined);
  }, fn);
}
