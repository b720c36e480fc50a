/**
 * Method decorators: retry, breaker, timeout and idempotency on class methods. One import works
 * in both TypeScript modes: TC39 decorators (TypeScript 5, the default) and
 * `experimentalDecorators: true` (NestJS, Angular, most existing services). The mode is told
 * from how the decorator is called.
 * @module @holdfast/fetch/decorators
 */
import { type CircuitBreakerOptions, circuitBreaker } from '@holdfast/breaker';
import { type Policy, type TimeoutOptions, timeout as timeoutPolicy } from '@holdfast/core';
import { idempotent as once } from '@holdfast/idempotency';
import { type RetryOptions, retry as retryPolicy } from '@holdfast/retry';
import {
  aggressiveByDefault,
  idempotentOptionsOf,
  isPolicy,
  keepIdentity,
  type WithIdempotencyOptions,
} from './wrappers.js';

type Method<This, A extends unknown[], R> = (this: This, ...args: A) => Promise<R>;
type AnyMethod = (...args: never) => PromiseLike<unknown>;
/** A method as the runtime sees it: any `this`, any arguments. */
type Fn = (this: unknown, ...args: unknown[]) => unknown;

/**
 * A method decorator from this module. TypeScript picks the signature of the mode the project
 * compiles in: `(method, context)` for TC39 decorators, `(target, key, descriptor)` with
 * `experimentalDecorators: true`.
 */
export interface MethodDecorator<A extends unknown[] = never> {
  /** TC39 decorators (TypeScript 5 without `experimentalDecorators`). */
  <This, M extends A, R>(
    method: Method<This, M, R>,
    context: ClassMethodDecoratorContext<This, Method<This, M, R>>,
  ): Method<This, M, R>;
  /** Legacy decorators (`experimentalDecorators: true`). */
  <F extends AnyMethod>(target: object, key: string | symbol, descriptor: TypedPropertyDescriptor<F>): void;
}

/** Builds a decorator that replaces a method with `wrap(method)`, in either mode. */
function methodDecorator<A extends unknown[]>(name: string, wrap: (method: Fn) => Fn): MethodDecorator<A> {
  return ((...args: unknown[]) => {
    const [first, second, third] = args;
    if (args.length === 2 && isTc39Context(second)) {
      if (second.kind !== 'method' || typeof first !== 'function') {
        throw new TypeError(
          `@${name} decorates methods only (TC39 decorators): ${describe(second.name)} is a ${second.kind}`,
        );
      }
      return keepIdentity(wrap(first as Fn), first as Fn);
    }
    if (args.length === 3 && (typeof second === 'string' || typeof second === 'symbol')) {
      const descriptor = third as PropertyDescriptor | undefined;
      if (typeof descriptor?.value !== 'function') {
        const what = descriptor === undefined ? 'a property' : 'an accessor';
        throw new TypeError(`@${name} decorates methods only (experimentalDecorators): ${describe(second)} is ${what}`);
      }
      descriptor.value = keepIdentity(wrap(descriptor.value), descriptor.value);
      return undefined;
    }
    throw new TypeError(
      `@${name}(...) is a method decorator: put it above a method, as in TC39 decorators or with ` +
        `experimentalDecorators: true (it was called with ${args.length} argument(s) of neither shape)`,
    );
  }) as MethodDecorator<A>;
}

function isTc39Context(value: unknown): value is { kind: string; name: string | symbol } {
  return typeof value === 'object' && value !== null && typeof (value as { kind?: unknown }).kind === 'string';
}

function describe(name: unknown): string {
  return typeof name === 'symbol' ? name.toString() : `'${String(name)}'`;
}

/** A method decorator that runs every call of the method through `policy`, with its `this`. */
export function through(policy: Policy): MethodDecorator {
  return methodDecorator(
    policy.name,
    (method) =>
      function (this: unknown, ...args: unknown[]) {
        return policy.execute(() => method.apply(this, args));
      },
  );
}

/**
 * Retries the method. One policy (and one budget) serves every instance of the class.
 * @example class Inventory { @retry({ maxAttempts: 4 }) async stock(sku: string) { ... } }
 */
export function retry(options: RetryOptions | Policy = {}): MethodDecorator {
  return through(isPolicy(options) ? options : retryPolicy(options));
}

/** Puts the method behind a circuit breaker shared by every instance of the class. */
export function breaker(options: CircuitBreakerOptions | Policy = {}): MethodDecorator {
  return through(isPolicy(options) ? options : circuitBreaker(options));
}

/** A time limit on the method; `aggressive` unless told otherwise, as with `withTimeout`. */
export function timeout(ms: number, options: TimeoutOptions = {}): MethodDecorator {
  return through(timeoutPolicy(ms, aggressiveByDefault(options)));
}

/**
 * Runs the method once per key; a repeat with the same key returns the stored result. The
 * options are checked here, where they are given.
 * @example class Payments { @idempotent({ store, key: (charge) => charge.id }) async charge(charge: Charge) { ... } }
 */
export function idempotent<A extends unknown[]>(options: WithIdempotencyOptions<A>): MethodDecorator<A> {
  const settings = idempotentOptionsOf<unknown, A>('@idempotent', options);
  return methodDecorator<A>('idempotent', (method) => {
    const run = once<[unknown, A], unknown>(([self, args]) => method.apply(self, args), settings);
    return function (this: unknown, ...args: unknown[]) {
      return run([this, args as A]);
    };
  });
}
