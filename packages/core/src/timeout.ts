import { z } from 'zod';
import { type Bus, bus as globalBus, shieldBus } from './bus.js';
import { type Clock, realClock } from './clock.js';
import { CallScope, reasonOf } from './context.js';
import { type Deadline, DeadlineQueue } from './deadlines.js';
import { TimeoutError } from './errors.js';
import { busOption, clockOption, nameOption, parseOptions } from './options.js';
import { type ExecuteOptions, invoke, type Operation, type Policy } from './policy.js';

/** Whoever may abort a call from outside: a caller's signal, or an outer policy's scope. */
type Caller = { readonly aborted: boolean; readonly reason: unknown } | undefined;

/** Node's timers overflow past this many milliseconds. */
const MAX_TIMER_MS = 2_147_483_647;

/** Validates the options of {@link timeout}; {@link TimeoutOptions} is inferred from it. */
export const timeoutOptionsSchema = z.strictObject({
  /** The time limit in milliseconds. */
  ms: z.number().finite().positive().max(MAX_TIMER_MS),
  /**
   * `cooperative`: at the deadline the call's signal aborts and the policy waits for the
   * function to settle; a rejection after the deadline becomes a `TimeoutError`.
   * `aggressive`: at the deadline the call rejects with a `TimeoutError` at once, and the
   * function, told by its signal, is left to finish in the background.
   * @default 'cooperative'
   */
  strategy: z.enum(['cooperative', 'aggressive']).default('cooperative'),
  /** Shown as `source` on its events. @default 'timeout' */
  name: nameOption.default('timeout'),
  /** The bus its `timeout` events go to. @default the global bus */
  bus: busOption.optional(),
  /** @default the real clock */
  clock: clockOption.optional(),
});

/** Options of {@link timeout}, besides the limit itself. */
export type TimeoutOptions = Omit<z.input<typeof timeoutOptionsSchema>, 'ms'>;

/**
 * A time limit on each call. The call's `ctx.signal` aborts at the deadline with a
 * `TimeoutError` as its reason; no timer outlives its call.
 *
 * @example
 * const res = await timeout(2_000).execute(({ signal }) => fetch(url, { signal }));
 */
export function timeout(ms: number, options: TimeoutOptions = {}): Policy {
  // Only an object takes `ms` in: a string spread would be "0 is not a known option", and a number none.
  const given: unknown = options;
  const input = typeof given === 'object' && given !== null && !Array.isArray(given) ? { ...given, ms } : given;
  const parsed = parseOptions('timeout', timeoutOptionsSchema, input);
  return new TimeoutPolicy(
    parsed.ms,
    parsed.strategy === 'aggressive',
    parsed.name,
    // A bus of the user's own may throw: this emits in a timer callback, where a throw would be
    // uncaught, leave the call running past its deadline and stop every later deadline.
    parsed.bus === undefined ? globalBus : shieldBus(parsed.bus, parsed.name),
    parsed.clock ?? realClock,
  );
}

class TimeoutPolicy implements Policy {
  /** Every pending deadline of this policy, behind one timer. */
  readonly #deadlines: DeadlineQueue<CallScope>;
  /** The reasons this policy aborted calls with, to tell them from a caller's abort. */
  readonly #expired = new WeakSet<object>();

  constructor(
    readonly ms: number,
    readonly aggressive: boolean,
    readonly name: string,
    readonly bus: Bus,
    readonly clock: Clock,
  ) {
    this.#deadlines = new DeadlineQueue(ms, clock, (scope) => this.#expire(scope));
  }

  execute<T>(fn: Operation<T>, options?: ExecuteOptions): Promise<T> {
    const scope = new CallScope(options);
    if (scope.aborted) {
      scope.release();
      return Promise.reject(scope.reason);
    }
    return this.aggressive ? this.#race(fn, scope) : this.#cooperate(fn, scope, callerOf(options));
  }

  async #cooperate<T>(fn: Operation<T>, scope: CallScope, caller: Caller): Promise<T> {
    const deadline = this.#deadlines.add(scope);
    try {
      const value = await fn(scope);
      // The caller aborted before it settled: the caller's reason decides, as it does everywhere.
      if (scope.aborted && !this.#expired.has(scope.reason as object)) throw scope.reason;
      // After the deadline (the scope, aborted then, no longer hears the caller): the same.
      if (caller?.aborted) throw reasonOf(caller);
      return value;
    } catch (error) {
      // The caller aborted (before or after the deadline passed): its reason stands. Not expired:
      // the function's error stands. Expired, and the function passed on the abort reason: that too.
      if (scope.aborted && !this.#expired.has(scope.reason as object)) throw scope.reason;
      if (caller?.aborted) throw reasonOf(caller);
      if (deadline.pending || error === scope.reason) throw error;
      throw new TimeoutError(this.name, this.ms, { cause: error });
    } finally {
      this.#deadlines.cancel(deadline);
      scope.release();
    }
  }

  #race<T>(fn: Operation<T>, scope: CallScope): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const deadline: Deadline<CallScope> = this.#deadlines.add(scope);
      const done = () => {
        this.#deadlines.cancel(deadline);
        stopListening();
        scope.release();
      };
      // The deadline or the caller's abort settles the call at once; a late result is dropped.
      const stopListening = scope.onAbort((reason) => {
        done();
        reject(reason);
      });
      invoke(fn, scope).then(
        (value) => {
          done();
          resolve(value);
        },
        (error) => {
          done();
          reject(error);
        },
      );
    });
  }

  #expire(scope: CallScope): TimeoutError {
    const error = new TimeoutError(this.name, this.ms);
    this.#expired.add(error);
    if (this.bus.wants('timeout')) {
      this.bus.emit({
        type: 'timeout',
        source: this.name,
        time: this.clock.now(),
        timeout: this.ms,
        strategy: this.aggressive ? 'aggressive' : 'cooperative',
      });
    }
    scope.abort(error);
    return error;
  }
}

/**
 * What tells the caller's abort once the deadline cut the scope off from it. The signal is read
 * again: a getter that throws now (it did not for the scope) is taken for none, never thrown.
 */
function callerOf(options: ExecuteOptions | undefined): Caller {
  if (options instanceof CallScope) return options;
  try {
    return options?.signal ?? undefined;
  } catch {
    return undefined;
  }
}
