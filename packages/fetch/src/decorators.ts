/**
 * TC39 (TypeScript 5) method decorators: retry, breaker, timeout and idempotency on class methods.
 * @module @holdfast/fetch/decorators
 */
import { type CircuitBreakerOptions, circuitBreaker } from '@holdfast/breaker';
import { type Policy, type TimeoutOptions, timeout as timeoutPolicy } from '@holdfast/core';
import { fingerprintOf, type IdempotentOptions, idempotent as once } from '@holdfast/idempotency';
import { type RetryOptions, retry as retryPolicy } from '@holdfast/retry';
import { isPolicy, type WithIdempotencyOptions } from './wrappers.js';

type Method<This, A extends unknown[], R> = (this: This, ...args: A) => Promise<R>;

/** A TC39 method decorator that runs every call of the method through `policy`. */
export function through(policy: Policy) {
  return <This, A extends unknown[], R>(
    method: Method<This, A, R>,
    context: ClassMethodDecoratorContext<This, Method<This, A, R>>,
  ) => {
    if (context.kind !== 'method') throw new TypeError(`@${policy.name}: decorates methods only`);
    return function (this: This, ...args: A): Promise<R> {
      return policy.execute(() => method.apply(this, args));
    };
  };
}

/**
 * Retries the method. One policy (and one budget) serves every instance of the class.
 * @example class Inventory { @retry({ maxAttempts: 4 }) async stock(sku: string) { ... } }
 */
export function retry(options: RetryOptions | Policy = {}) {
  return through(isPolicy(options) ? options : retryPolicy(options));
}

/** Puts the method behind a circuit breaker shared by every instance of the class. */
export function breaker(options: CircuitBreakerOptions | Policy = {}) {
  return through(isPolicy(options) ? options : circuitBreaker(options));
}

/** A time limit on the method; `aggressive` unless told otherwise, as with `withTimeout`. */
export function timeout(ms: number, options: TimeoutOptions = {}) {
  return through(timeoutPolicy(ms, { strategy: 'aggressive', ...options }));
}

/**
 * Runs the method once per key; a repeat with the same key returns the stored result.
 * @example class Payments { @idempotent({ store, key: (charge) => charge.id }) async charge(charge: Charge) { ... } }
 */
export function idempotent<A extends unknown[]>(options: WithIdempotencyOptions<A>) {
  const { key, fingerprint, ...rest } = options;
  return <This, R>(method: Method<This, A, R>, context: ClassMethodDecoratorContext<This, Method<This, A, R>>) => {
    if (context.kind !== 'method') throw new TypeError('@idempotent: decorates methods only');
    // The instance travels with the input but is neither key nor fingerprint: results are per key.
    const run = once<[This, A], R>(([self, args]) => method.apply(self, args), {
      ...rest,
      key: ([, args]) => key(...args),
      fingerprint: ([, args]) => (fingerprint ? fingerprint(...args) : fingerprintOf(args)),
    } as IdempotentOptions<[This, A]>);
    return function (this: This, ...args: A): Promise<R> {
      return run([this, args]) as Promise<R>;
    };
  };
}
