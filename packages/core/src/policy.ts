import { CallScope, carry } from './context.js';

/** What a policy hands the function it runs. */
export interface CallContext {
  /** Aborted when the call times out or the caller aborts. Made on first read. */
  readonly signal: AbortSignal;
  /** 1 for the first try, 2 for the first retry, and so on. */
  readonly attempt: number;
}

/** What a caller may pass to {@link Policy.execute}. */
export interface ExecuteOptions {
  /** The caller's signal: aborting it stops the call, its retries and its waits at once. */
  readonly signal?: AbortSignal | undefined;
}

/** The function a policy runs. It may return a value or a promise. */
export type Operation<T> = (ctx: CallContext) => T | PromiseLike<T>;

/** A resilience primitive that wraps any async call. */
export interface Policy {
  /** Shown as `source` on every event the policy emits. */
  readonly name: string;
  /** Runs `fn` under the policy and settles as the policy decides: its result, or an error. */
  execute<T>(fn: Operation<T>, options?: ExecuteOptions): Promise<T>;
}

/** The per-call options a policy's `execute()` takes (a rate limiter's `{ key, cost }`). */
type OptionsOf<P> = P extends { execute(fn: never, options?: infer O): unknown } ? NonNullable<O> : never;

/** `A | B` as `A & B`. */
type All<U> = (U extends unknown ? (u: U) => void : never) extends (all: infer A) => void ? A : never;

/**
 * A `pipeline()`: a Policy whose `execute()` takes what each of its policies takes (a rate
 * limiter's `{ key, cost }` when one is in it), since every policy of it reads the call's options.
 */
export interface Pipeline<O extends ExecuteOptions = ExecuteOptions> extends Policy {
  /** Runs `fn` through every policy, outermost first. */
  execute<T>(fn: Operation<T>, options?: O): Promise<T>;
}

/**
 * Composes policies: `pipeline(a, b, c).execute(fn)` runs `a(b(c(fn)))`, outermost first, the
 * reading order of Polly and cockatiel. `pipeline(timeout(5000), retry(), timeout(1000))` is a
 * 5 s total limit around retries of 1 s tries. Its `execute()` takes the options of all of them:
 * `pipeline(bulkhead(), perUser).execute(fn, { key: user.id })`.
 */
export function pipeline<const P extends readonly Policy[]>(
  ...policies: P
): Pipeline<ExecuteOptions & All<OptionsOf<P[number]>>> {
  for (const [i, p] of policies.entries()) {
    if (typeof p?.execute !== 'function') {
      throw new TypeError(`pipeline: argument ${i} is not a Policy (it has no execute method)`);
    }
  }
  const name = policies.map((p) => p.name).join(' > ') || 'pipeline';
  return {
    name,
    execute<T>(fn: Operation<T>, options?: ExecuteOptions): Promise<T> {
      // A policy of the user's that throws instead of rejecting still gives a rejected promise
      // (deeper ones throw inside the outer policy's function, which turns it into a rejection).
      try {
        return run(policies, 0, fn, options, CallScope.given(options));
      } catch (error) {
        return Promise.reject(error);
      }
    },
  };
}

function run<T>(
  policies: readonly Policy[],
  at: number,
  fn: Operation<T>,
  options: ExecuteOptions | undefined,
  given: ExecuteOptions | undefined,
): Promise<T> {
  const policy = policies[at];
  if (policy === undefined) {
    // An empty pipeline still hands the function a context, and follows the abort rules.
    const scope = new CallScope(options);
    if (scope.aborted) {
      scope.release();
      return Promise.reject(scope.reason);
    }
    return invoke(fn, scope)
      .then(
        (value) => (scope.aborted ? Promise.reject(scope.reason) : value),
        (error: unknown) => Promise.reject(scope.aborted ? scope.reason : error),
      )
      .finally(() => scope.release());
  }
  if (at === policies.length - 1) {
    // No call options (the common case): nothing was carried, nothing to take back.
    if (given === undefined || !(options instanceof CallScope)) return policy.execute(fn, options);
    // A last policy that hands the function the scope it was given (a breaker, a bulkhead inside
    // another policy) must not hand it the call's options: they stay within the pipeline.
    return policy.execute((ctx) => {
      if (ctx === options) carry(options, undefined);
      return fn(ctx);
    }, options);
  }
  // Each policy's context is the next one's options: its lazy signal links the chain. It carries
  // the call's options (a rate limiter further in reads its key and cost there), only within the
  // pipeline: the context the function gets was handed on by none, so another policy the function
  // passes it to does not count under this call's key.
  return policy.execute((ctx) => {
    if (given !== undefined && ctx instanceof CallScope) carry(ctx, given);
    return run(policies, at + 1, fn, ctx, given);
  }, options);
}

/** Calls `fn` and always returns a promise, turning a synchronous throw into a rejection. */
export function invoke<T>(fn: Operation<T>, ctx: CallContext): Promise<T> {
  try {
    return Promise.resolve(fn(ctx));
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * Calls `fn` in `scope` like {@link invoke}, and keeps the abort rule (docs/concepts.md "Aborts:
 * the rules"): if the scope was aborted before `fn` settled, the call rejects with the scope's
 * reason, whatever `fn` returns or throws after.
 */
export function invokeIn<T>(fn: Operation<T>, scope: CallScope): Promise<T> {
  return invoke(fn, scope).then(
    (value) => (scope.aborted ? Promise.reject(scope.reason) : value),
    (error: unknown) => Promise.reject(scope.aborted ? scope.reason : error),
  );
}
