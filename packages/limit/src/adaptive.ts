import {
  CallScope,
  DisposedError,
  type ExecuteOptions,
  invokeIn,
  isLocalRefusal,
  type Operation,
  type Policy,
  parseOptions,
  type Snapshottable,
} from '@holdfast/core';
import { Aimd, Gradient2, type LimitAlgorithm, Vegas } from './algorithms.js';
import { ConcurrencyLimitError } from './errors.js';
import { type AdaptiveConcurrencyOptions, adaptiveConcurrencyOptionsSchema } from './options.js';
import { type Common, commonOf, list } from './shared.js';

/** What an adaptive concurrency limiter's `snapshot()` returns. */
export type AdaptiveConcurrencySnapshot = {
  /** The limiter's name. */
  readonly name: string;
  /** The algorithm that moves the limit. */
  readonly algorithm: 'gradient2' | 'aimd' | 'vegas';
  /** The learned limit, rounded down. */
  readonly limit: number;
  /** Calls in flight now. */
  readonly inFlight: number;
  /** Calls refused since it was made. */
  readonly rejected: number;
  /** Calls measured since it was made. */
  readonly samples: number;
};

/** An adaptive concurrency limiter: a `Policy` whose limit follows the dependency's latency. */
export interface AdaptiveConcurrency extends Policy, Snapshottable<AdaptiveConcurrencySnapshot> {
  /** The learned limit, rounded down. */
  readonly limit: number;
  /** Calls in flight now. */
  readonly inFlight: number;
}

/**
 * Learns how many concurrent calls a dependency takes from their latency, as Netflix's
 * concurrency-limits and Envoy's adaptive concurrency filter do, and refuses calls past it at
 * once with `ConcurrencyLimitError` (`E_CONCURRENCY_LIMIT`): a fast 503 rather than a queue
 * that makes every call slow. `algorithm`: `gradient2`, `aimd` or `vegas`. Emits
 * `concurrency.limit` whenever the whole-number limit moves.
 *
 * @example
 * const db = adaptiveConcurrency({ algorithm: 'gradient2', initialLimit: 10, maxLimit: 200 });
 * const rows = await db.execute(() => pool.query(sql));
 */
export function adaptiveConcurrency(options: AdaptiveConcurrencyOptions): AdaptiveConcurrency {
  const o = parseOptions('adaptiveConcurrency', adaptiveConcurrencyOptionsSchema, options);
  const algorithm: LimitAlgorithm =
    o.algorithm === 'gradient2'
      ? new Gradient2(o)
      : o.algorithm === 'aimd'
        ? new Aimd(o)
        : new Vegas(o, o.random ?? Math.random);
  const limiter = new AdaptiveLimiter(commonOf(o), algorithm, o.isDrop ?? (() => true), o.window);
  limiter.unregister = list('concurrency', o.name, limiter, o.policies);
  return limiter;
}

class AdaptiveLimiter implements AdaptiveConcurrency {
  readonly name: string;
  readonly #now: () => number;
  #inFlight = 0;
  #limit: number;
  #rejected = 0;
  #samples = 0;
  #disposed = false;
  #window = { start: Number.NaN, count: 0, rttSum: 0, maxInFlight: 0, drop: false };
  /** Takes the limiter off the registry it listed itself in. */
  unregister: () => void = () => {};

  constructor(
    readonly common: Common,
    readonly algorithm: LimitAlgorithm,
    readonly isDrop: (error: unknown) => boolean,
    readonly windowing: { minTime: number; maxTime: number; minSamples: number },
  ) {
    this.name = common.name;
    this.#limit = Math.floor(algorithm.limit);
    // Latency needs sub-millisecond resolution and no wall-clock steps: the clock's monotonic time.
    this.#now = common.elapsed;
  }

  get limit(): number {
    return this.#limit;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  execute<T>(fn: Operation<T>, options?: ExecuteOptions): Promise<T> {
    if (this.#disposed) return Promise.reject(new DisposedError(this.name));
    if (this.#inFlight >= this.#limit) return Promise.reject(this.#refuse());
    const scope = new CallScope(options);
    if (scope.aborted) {
      scope.release();
      return Promise.reject(scope.reason);
    }
    const inFlight = ++this.#inFlight;
    const start = this.#now();
    return invokeIn(fn, scope).then(
      (value) => {
        this.#done(start, inFlight, false);
        scope.release();
        return value;
      },
      (error: unknown) => {
        // A call the caller gave up on says nothing about the dependency, nor does one refused on
        // this side of it (isLocalRefusal: a rate limiter, bulkhead, throttle, open breaker or held
        // idempotency key inside this one): it never reached the dependency, so it is no sample,
        // and isDrop sees only the dependency's errors. Counted as drops, one client past its own
        // rate limit shrank everyone's limit to its minimum, as adaptiveThrottle() already skips.
        const skip = scope.aborted || isLocalRefusal(error);
        this.#done(start, inFlight, !skip && dropped(this.isDrop, error), skip);
        scope.release();
        throw error;
      },
    );
  }

  #done(start: number, inFlight: number, didDrop: boolean, skip = false): void {
    this.#inFlight--;
    if (skip) return;
    const now = this.#now();
    this.#samples++;
    const w = this.#window;
    // The line went back (a clock without monotonic() stepped back): the window starts again at
    // now, or it closed only once the line was back where it began (an hour after a one-hour
    // step, the limit frozen all along), as the throttle's window does.
    if (Number.isNaN(w.start) || now < w.start) w.start = now;
    w.count++;
    // A call that spanned the step back took no time we can tell: not a negative latency that
    // drags the window's mean down.
    w.rttSum += Math.max(0, now - start);
    w.maxInFlight = Math.max(w.maxInFlight, inFlight);
    w.drop ||= didDrop;
    const age = now - w.start;
    if (age < this.windowing.maxTime && (age < this.windowing.minTime || w.count < this.windowing.minSamples)) return;
    const rtt = w.rttSum / w.count;
    const next = Math.floor(this.algorithm.update({ rtt, inFlight: w.maxInFlight, didDrop: w.drop, count: w.count }));
    this.#window = { start: Number.NaN, count: 0, rttSum: 0, maxInFlight: 0, drop: false };
    if (next !== this.#limit) this.#moved(next, rtt);
  }

  #moved(next: number, rtt: number): void {
    const from = this.#limit;
    this.#limit = next;
    const { bus, clock } = this.common;
    if (bus.wants('concurrency.limit')) {
      bus.emit({
        type: 'concurrency.limit',
        source: this.name,
        time: clock.now(),
        algorithm: this.algorithm.name,
        from,
        to: next,
        latency: rtt,
      });
    }
  }

  #refuse(): ConcurrencyLimitError {
    this.#rejected++;
    const { bus, clock } = this.common;
    if (bus.wants('concurrency.reject')) {
      bus.emit({
        type: 'concurrency.reject',
        source: this.name,
        time: clock.now(),
        limit: this.#limit,
        inFlight: this.#inFlight,
        code: 'E_CONCURRENCY_LIMIT',
      });
    }
    return new ConcurrencyLimitError(this.name, this.#limit);
  }

  snapshot(): AdaptiveConcurrencySnapshot {
    return {
      name: this.name,
      algorithm: this.algorithm.name,
      limit: this.#limit,
      inFlight: this.#inFlight,
      rejected: this.#rejected,
      samples: this.#samples,
    };
  }

  dispose(): void {
    this.#disposed = true;
    this.unregister();
  }
}

/**
 * Whether `error` is a drop. An `isDrop` that throws (`err.response.status` on an error with no
 * response) counts it as one: it must neither keep the call's place nor replace its error.
 */
function dropped(isDrop: (error: unknown) => boolean, error: unknown): boolean {
  try {
    return isDrop(error);
  } catch {
    return true;
  }
}
