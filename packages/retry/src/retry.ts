import {
  type Bus,
  CallScope,
  type Clock,
  type ExecuteOptions,
  elapsedTime,
  errorLabel,
  bus as globalBus,
  isLocalRefusal,
  type Operation,
  type Policy,
  parseOptions,
  realClock,
  shieldBus,
  type TimerHandle,
  warnOnce,
} from '@holdfast/core';
import { type Backoff, nextDelay, resolveBackoff } from './backoff.js';
import { giveBack, type RetryBudget, retryBudget, type Taken, withdraw } from './budget.js';
import { discard, isTransientError, isTransientResult, resultLabel } from './classify.js';
import { isNonRetryable, RetryBudgetExhaustedError, RetryExhaustedError } from './errors.js';
import { type RetryInfo, type RetryOptions, retryOptionsSchema } from './options.js';
import { loadPRetry } from './p-retry.js';
import { retryAfterOf } from './retry-after.js';

/** A retry policy. */
export interface RetryPolicy extends Policy {
  /** The budget its retries draw from (its own unless one was given), or undefined with `budget: false`. */
  readonly budget: RetryBudget | undefined;
}

type GiveUpReason = 'maxAttempts' | 'maxElapsed' | 'retryAfter' | 'notRetryable' | 'aborted' | 'budget' | 'disposed';

/**
 * Retries a call that fails for a reason that may pass: with backoff and jitter, honouring
 * Retry-After, and within a retry budget so that an outage is not multiplied by the retries.
 * A Response with a retryable status (503, ...) is retried like an error; when the tries run
 * out, the last Response is returned.
 *
 * @example
 * const policy = retry({ maxAttempts: 4, backoff: { initialDelay: 200 } });
 * const res = await policy.execute(({ signal }) => fetch(url, { signal }));
 */
export function retry(options: RetryOptions = {}): RetryPolicy {
  const o = parseOptions('retry', retryOptionsSchema, options);
  const clock = o.clock ?? realClock;
  return new RetryingPolicy({
    name: o.name,
    bus: o.bus === undefined ? globalBus : shieldBus(o.bus, o.name),
    clock,
    elapsed: elapsedTime(clock),
    maxAttempts: o.maxAttempts,
    maxElapsed: o.maxElapsed ?? Number.POSITIVE_INFINITY,
    backoff: resolveBackoff(o),
    retryOnError: o.retryOn.error ?? isTransientError,
    retryOnResult: o.retryOn.result ?? isTransientResult,
    retryAfter: o.retryAfter,
    onRetry: o.onRetry,
    budget: o.budget === false ? undefined : (o.budget ?? retryBudget({ clock, name: o.name })),
    random: o.random ?? Math.random,
  });
}

interface Settings {
  readonly name: string;
  readonly bus: Bus;
  readonly clock: Clock;
  /** The clock's monotonic time, for maxElapsed: a wall-clock step must not end or extend a call. */
  readonly elapsed: () => number;
  readonly maxAttempts: number;
  readonly maxElapsed: number;
  readonly backoff: Backoff;
  readonly retryOnError: (error: unknown, attempt: number) => boolean | PromiseLike<boolean>;
  readonly retryOnResult: (result: unknown, attempt: number) => boolean | PromiseLike<boolean>;
  readonly retryAfter: boolean;
  readonly onRetry: ((info: RetryInfo) => unknown) | undefined;
  readonly budget: RetryBudget | undefined;
  readonly random: () => number;
}

/** One call that failed its first attempt: what the next decision needs. */
interface Run<T> {
  readonly fn: Operation<T>;
  /** The call's link to the caller's signal, for as long as it retries. */
  readonly scope: CallScope;
  /** When the call started (the clock's monotonic ms), for maxElapsed. */
  readonly start: number;
  /** The attempt that runs next, or that last ran. */
  attempt: number;
  /** The last delay waited: decorrelated jitter grows from it. */
  delay: number;
  /** The wait before the next attempt. It resolves early when the caller aborts. */
  waiting: Promise<void>;
  /** An attempt reached the downstream: it failed other than by one of our policies' refusals. */
  reached?: true;
}

/** A failed attempt inside p-retry (which wants an Error): its error or rejected result. */
class Failure extends Error {
  constructor(
    readonly value: unknown,
    readonly isResult: boolean,
    /** `retryOn.result` threw on it: it is kept, not retried. */
    readonly broken = false,
  ) {
    super('attempt failed');
  }
}

/** What a `retryOn` predicate that threw (or rejected) answers: nothing is retried on its word. */
const BROKEN: unique symbol = Symbol('retryOn threw');
type Verdict = boolean | typeof BROKEN;

/** Thrown by a decision to stop: p-retry rethrows it as is, and `#retry` unwraps it. */
class Stop {
  constructor(
    readonly value: unknown,
    readonly isResult: boolean,
  ) {}
}

const resolved = Promise.resolve();

/** Policies whose `retryOn` threw: told once per policy, as a process warning. */
const toldPredicates = new WeakSet<RetryPolicy>();
/** Policies whose `onRetry` threw: told once per policy. */
const toldHooks = new WeakSet<RetryPolicy>();

class RetryingPolicy implements RetryPolicy {
  readonly name: string;
  readonly budget: RetryBudget | undefined;
  readonly #s: Settings;

  constructor(settings: Settings) {
    this.name = settings.name;
    this.budget = settings.budget;
    this.#s = settings;
  }

  async execute<T>(fn: Operation<T>, options?: ExecuteOptions): Promise<T> {
    if (typeof fn !== 'function') {
      throw new TypeError(`${this.name}: execute(fn): fn must be a function (got ${fn === null ? 'null' : typeof fn})`);
    }
    const scope = new CallScope(options, 1);
    if (scope.aborted) {
      scope.release();
      throw scope.reason;
    }
    const start = this.#s.maxElapsed === Number.POSITIVE_INFINITY ? 0 : this.#s.elapsed();
    try {
      this.budget?.deposit();
    } catch (error) {
      scope.release(); // disposed: the scope must not keep its link to the caller's signal
      throw error;
    }
    // The first attempt runs here, outside p-retry: a first-try success pays for nothing else.
    let value: T;
    try {
      value = await fn(scope);
    } catch (error) {
      return this.#retry(fn, options, start, error, false);
    } finally {
      scope.release();
    }
    // Once the caller has aborted, the call rejects with its reason, whatever the attempt did.
    if (scope.aborted) return this.#retry(fn, options, start, value, true);
    let retryable = this.#ask('result', value, 1);
    if (isThenable(retryable)) {
      retryable = await retryable;
      // The caller aborted while the hook decided: the abort wins.
      if (callerAborted(options)) return this.#retry(fn, options, start, value, true);
    }
    if (retryable === BROKEN) return this.#retry(fn, options, start, value, true, true);
    if (!retryable) return value;
    return this.#retry(fn, options, start, value, true);
  }

  /** After a failed first attempt: p-retry drives the loop, our decisions and waits run in it. */
  async #retry<T>(
    fn: Operation<T>,
    options: ExecuteOptions | undefined,
    start: number,
    value: unknown,
    isResult: boolean,
    broken = false,
  ): Promise<T> {
    const run: Run<T> = {
      fn,
      scope: new CallScope(options),
      start,
      attempt: 1,
      delay: this.#s.backoff.initialDelay,
      waiting: resolved,
    };
    try {
      // Loaded before the first decision: a retry that cannot run (the CommonJS build, p-retry
      // not installed) is neither charged to the budget, nor announced, nor waited for. The ESM
      // build has it loaded already: one resolved promise, awaited as before.
      let pRetry: Awaited<ReturnType<typeof loadPRetry>>;
      try {
        pRetry = await loadPRetry();
      } catch (error) {
        if (isResult) discard(value);
        throw error;
      }
      await this.#decide(run, value, isResult, broken);
      return await pRetry(() => this.#attempt(run), {
        retries: Number.POSITIVE_INFINITY, // we decide when to stop
        minTimeout: 0, // no timer of p-retry's: the wait, on our clock, opens each attempt
        onFailedAttempt: ({ error }) => {
          const failure = error as Failure;
          return this.#decide(run, failure.value, failure.isResult, failure.broken);
        },
      });
    } catch (error) {
      if (!(error instanceof Stop)) throw error;
      if (error.isResult) return error.value as T;
      throw error.value;
    } finally {
      run.scope.release();
    }
  }

  async #attempt<T>(run: Run<T>): Promise<T> {
    await run.waiting;
    if (run.scope.aborted) {
      run.attempt--; // aborted during the wait: this attempt never ran
      throw new Failure(undefined, false);
    }
    const scope = new CallScope(run.scope, run.attempt);
    let value: T;
    try {
      value = await run.fn(scope);
    } catch (error) {
      throw new Failure(error, false);
    } finally {
      scope.release();
    }
    if (run.scope.aborted) throw new Failure(value, true);
    const retryable = await this.#ask('result', value, run.attempt);
    // Checked again after the hook: an abort while it ran wins too.
    if (retryable === BROKEN || retryable || run.scope.aborted) throw new Failure(value, true, retryable === BROKEN);
    return value;
  }

  /**
   * After a failed attempt: sets up the wait before the next one, or throws a {@link Stop}.
   * The caller's abort is checked first and again after every hook the user gave, which may
   * be async and is awaited.
   */
  async #decide(run: Run<unknown>, value: unknown, isResult: boolean, broken = false): Promise<void> {
    const s = this.#s;
    const attempts = run.attempt;
    this.#stopIfAborted(run, value, isResult);
    if (!refusedLocally(value, isResult)) run.reached = true;
    if (broken) this.#giveUp(run, 'notRetryable', value, isResult);
    if (!isResult) {
      if (isMarkedNotRetryable(value)) this.#giveUp(run, 'notRetryable', unwrapAbortError(value), isResult);
      const retryable = await this.#ask('error', value, attempts);
      this.#stopIfAborted(run, value, isResult);
      if (retryable === BROKEN || !retryable) this.#giveUp(run, 'notRetryable', value, isResult);
    }
    if (attempts >= s.maxAttempts) this.#giveUp(run, 'maxAttempts', value, isResult);
    const now = s.clock.now();
    const hinted = s.retryAfter ? retryAfterOf(value, isResult, now) : undefined;
    // Asked to wait longer than we may: a retry sooner is refused again, and spends an attempt.
    if (hinted !== undefined && hinted > s.backoff.maxDelay) this.#giveUp(run, 'retryAfter', value, isResult, hinted);
    const delay = hinted ?? nextDelay(s.backoff, attempts, run.delay, s.random);
    if (this.#pastMaxElapsed(run, delay)) this.#giveUp(run, 'maxElapsed', value, isResult);
    // A retry after our own policy refused the call is not amplification: nothing was sent.
    let taken: Taken | boolean = false;
    if (s.budget !== undefined && !refusedLocally(value, isResult)) {
      taken = this.#withdraw(s.budget, run, value, isResult);
      if (!taken) {
        if (s.bus.wants('retry.budgetExhausted')) {
          s.bus.emit({
            type: 'retry.budgetExhausted',
            source: this.name,
            time: now,
            attempt: attempts + 1,
            code: label(value, isResult),
          });
        }
        this.#giveUp(run, 'budget', value, isResult);
      }
    }
    run.attempt = attempts + 1;
    run.delay = delay;
    let time = now;
    if (s.onRetry !== undefined) {
      try {
        await s.onRetry({
          attempt: run.attempt,
          delay,
          error: isResult ? undefined : value,
          result: isResult ? value : undefined,
        });
      } catch (error) {
        // A hook that throws (a log sink gone) must not change the call: the retry decided goes on.
        const text = `${this.name}: onRetry threw (reported once per policy); the retry went on`;
        warnOnce(toldHooks, this, 'HOLDFAST_PREDICATE_ERROR', text, error);
      }
      // The wait starts now: an async onRetry (a token refresh) may have taken the time it had,
      // or the caller aborted while it ran. The retry is not made then: its budget token is
      // given back, and the call ends as it would have before the hook (the caller's abort
      // wins), with the result kept whole.
      if (run.scope.aborted || this.#pastMaxElapsed(run, delay)) {
        run.attempt = attempts;
        if (taken) giveBack(s.budget as RetryBudget, taken);
        this.#stopIfAborted(run, value, isResult);
        this.#giveUp(run, 'maxElapsed', value, isResult);
      }
      time = s.clock.now();
    }
    // Announced once it is sure to be made: dashboards count each as a retry.
    if (s.bus.wants('retry.attempt')) {
      s.bus.emit({
        type: 'retry.attempt',
        source: this.name,
        time,
        attempt: run.attempt,
        delay,
        code: label(value, isResult),
      });
    }
    if (isResult) discard(value);
    // An abort from now on cuts the wait at once; the next attempt then gives up.
    run.waiting = this.#wait(delay, run.scope);
  }

  /** Whether a wait of `delay` from now would end past maxElapsed. */
  #pastMaxElapsed(run: Run<unknown>, delay: number): boolean {
    const s = this.#s;
    return s.maxElapsed !== Number.POSITIVE_INFINITY && s.elapsed() + delay - run.start > s.maxElapsed;
  }

  /**
   * Takes a retry from the budget. One disposed while the call ran (its `tryWithdraw()` throws)
   * grants none: the call ends with its last failure as is, as a breaker disposed mid-call lets
   * its calls settle, never with the budget's DisposedError for the downstream's.
   */
  #withdraw(budget: RetryBudget, run: Run<unknown>, value: unknown, isResult: boolean): Taken | boolean {
    try {
      return withdraw(budget);
    } catch {
      this.#giveUp(run, 'disposed', value, isResult);
    }
  }

  /**
   * Asks `retryOn.error` or `retryOn.result`. One that throws or rejects (a predicate written
   * for HTTP errors meets a network error with no `response`) retries nothing: the call ends
   * with the attempt's own error or result, as failover's `retryOn` does, never with the
   * predicate's, and the bug is told once as a process warning.
   */
  #ask(which: 'error' | 'result', value: unknown, attempt: number): Verdict | Promise<Verdict> {
    const predicate = which === 'error' ? this.#s.retryOnError : this.#s.retryOnResult;
    try {
      const answer = predicate(value, attempt);
      if (!isThenable(answer)) return answer;
      return Promise.resolve(answer).then(
        (verdict) => verdict,
        (error: unknown) => this.#broken(which, error),
      );
    } catch (error) {
      return this.#broken(which, error);
    }
  }

  #broken(which: 'error' | 'result', error: unknown): typeof BROKEN {
    const text = `${this.name}: retryOn.${which} threw (reported once per policy); the failure was not retried`;
    warnOnce(toldPredicates, this, 'HOLDFAST_PREDICATE_ERROR', text, error);
    return BROKEN;
  }

  /** The caller aborted: the call rejects with the caller's reason, whatever the attempt did. */
  #stopIfAborted(run: Run<unknown>, value: unknown, isResult: boolean): void {
    if (!run.scope.aborted) return;
    if (isResult) discard(value);
    this.#giveUp(run, 'aborted', run.scope.reason, false);
  }

  #giveUp(run: Run<unknown>, reason: GiveUpReason, value: unknown, isResult: boolean, hinted = 0): never {
    const { bus, clock, backoff } = this.#s;
    if (bus.wants('retry.giveUp')) {
      bus.emit({
        type: 'retry.giveUp',
        source: this.name,
        time: clock.now(),
        attempts: run.attempt,
        reason,
        code: label(value, isResult),
      });
    }
    // A retried result that runs out is returned: the caller sees the last Response.
    if (isResult) throw new Stop(value, true);
    if (reason === 'budget') throw new Stop(new RetryBudgetExhaustedError(this.name, run.attempt, value), false);
    if (reason === 'retryAfter' || reason === 'maxAttempts' || reason === 'maxElapsed') {
      const wait = reason === 'retryAfter' ? { retryAfter: hinted, maxDelay: backoff.maxDelay } : undefined;
      // Every attempt refused by our own policies: nothing reached the downstream, and the
      // error says so, so that a breaker outside does not count it (isLocalRefusal).
      const refused = run.reached === undefined;
      throw new Stop(new RetryExhaustedError(this.name, run.attempt, reason, value, wait, refused), false);
    }
    throw new Stop(value, false);
  }

  /** Resolves after `ms` on our clock's elapsed time, or at once when the caller aborts. */
  #wait(ms: number, scope: CallScope): Promise<void> {
    if (ms <= 0 || scope.aborted) return resolved;
    const { clock, elapsed } = this.#s;
    const until = elapsed() + ms;
    return new Promise((resolve) => {
      let timer: TimerHandle;
      const done = () => {
        clock.clearTimeout(timer);
        cancel();
        resolve();
      };
      // Node counts a timer in whole ms of the loop's time: it can fire before elapsed() has moved
      // `ms`, and a wait for a lease's retryAfterMs would find it still held and spend an attempt.
      // What is left is waited again, each time less than the time before: a clock without
      // monotonic() that keeps stepping back would otherwise re-arm forever.
      let bound = ms;
      const fired = () => {
        const left = until - elapsed();
        if (left <= 0 || left >= bound) return done();
        bound = left;
        timer = clock.setTimeout(fired, left, { ref: true });
      };
      timer = clock.setTimeout(fired, ms, { ref: true });
      const cancel = scope.onAbort(done);
    });
  }
}

/** Marked with `nonRetryable()`, or an abort (p-retry's signal, fetch's, anyone's: named `AbortError`). */
function isMarkedNotRetryable(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  try {
    return isNonRetryable(error) || (error as { name?: unknown }).name === 'AbortError';
  } catch {
    return false; // getters that throw: no mark can be read, so retryOn.error decides
  }
}

/**
 * What a call that gives up on an error marked not retryable rejects with: for p-retry's
 * `AbortError(error)` (by name, from any copy), the `error` it wraps (its `originalError`), as
 * p-retry rejects. An AbortError with none (fetch's DOMException, the caller's) is itself.
 */
function unwrapAbortError(error: unknown): unknown {
  try {
    const { name, originalError } = error as { name?: unknown; originalError?: unknown };
    return name === 'AbortError' && typeof originalError === 'object' && originalError !== null ? originalError : error;
  } catch {
    return error; // getters that throw: it is thrown as is
  }
}

/** The failed attempt was refused by one of our policies before it reached the downstream. */
function refusedLocally(value: unknown, isResult: boolean): boolean {
  if (isResult) return false;
  try {
    return isLocalRefusal(value);
  } catch {
    return false; // a Proxy whose getters throw is no refusal of ours
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null)?.then === 'function';
}

function label(value: unknown, isResult: boolean): string | undefined {
  try {
    return isResult ? resultLabel(value) : errorLabel(value);
  } catch {
    return undefined; // a getter that throws: the event goes out without a code
  }
}

/** Whether the caller's signal (or the outer context) has aborted. */
function callerAborted(options: ExecuteOptions | undefined): boolean {
  const caller = options instanceof CallScope ? options : options?.signal;
  return caller?.aborted === true;
}
