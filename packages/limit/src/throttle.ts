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
import { ThrottledError } from './errors.js';
import { type AdaptiveThrottleOptions, adaptiveThrottleOptionsSchema } from './options.js';
import { type Common, commonOf, list } from './shared.js';

/** What an adaptive throttle's `snapshot()` returns. */
export type AdaptiveThrottleSnapshot = {
  /** The throttle's name. */
  readonly name: string;
  /** Requests tolerated per accept. */
  readonly k: number;
  /** Requests in the window, those refused locally included. */
  readonly requests: number;
  /** Requests the backend accepted in the window. */
  readonly accepts: number;
  /** The probability a call is refused now. */
  readonly probability: number;
  /** Calls refused locally since it was made. */
  readonly rejected: number;
  /** `warn` while calls are being refused, else `pass`. */
  readonly status: 'pass' | 'warn';
};

/** Client-side adaptive throttling: a `Policy` with a snapshot. */
export interface AdaptiveThrottle extends Policy, Snapshottable<AdaptiveThrottleSnapshot> {
  /** The probability a call is refused now (0..1). */
  readonly probability: number;
}

const SLICES = 10;

/** A slice's place in the ring; a line below zero (a clock set back past its origin) included. */
const ring = (slice: number) => ((slice % SLICES) + SLICES) % SLICES;

/**
 * Client-side adaptive throttling from Google's SRE book ("Handling Overload"): over the last
 * `window`, each call is refused locally with probability
 * `max(0, (requests − k × accepts) / (requests + 1))`, so a client stops sending what the
 * backend would refuse anyway, and sends again as soon as it accepts. Refusals are
 * `ThrottledError` (`E_THROTTLED`). `isRejection` says which failures are the backend refusing.
 *
 * @example
 * const throttle = adaptiveThrottle({ isRejection: (e) => hasCode(e, 'E_HTTP_STATUS') });
 * await throttle.execute(() => callBackend());
 */
export function adaptiveThrottle(options: AdaptiveThrottleOptions = {}): AdaptiveThrottle {
  const o = parseOptions('adaptiveThrottle', adaptiveThrottleOptionsSchema, options);
  const t = new Throttle(commonOf(o), o.k, o.window, o.isRejection ?? (() => true), o.random ?? Math.random);
  t.unregister = list('throttle', o.name, t, o.policies);
  return t;
}

class Throttle implements AdaptiveThrottle {
  readonly name: string;
  readonly #requests = new Float64Array(SLICES);
  readonly #accepts = new Float64Array(SLICES);
  readonly #sliceMs: number;
  #slice: number;
  /** Set by a step back of the line: the furthest slice counted (see #advance). */
  #high: number | undefined;
  #requestSum = 0;
  #acceptSum = 0;
  #rejected = 0;
  #disposed = false;
  /** Takes the throttle off the registry it listed itself in. */
  unregister: () => void = () => {};

  constructor(
    readonly common: Common,
    readonly k: number,
    window: number,
    readonly isRejection: (error: unknown) => boolean,
    readonly random: () => number,
  ) {
    this.name = common.name;
    this.#sliceMs = window / SLICES;
    this.#slice = Math.floor(common.elapsed() / this.#sliceMs);
  }

  get probability(): number {
    if (!this.#disposed) this.#advance();
    return Math.max(0, (this.#requestSum - this.k * this.#acceptSum) / (this.#requestSum + 1));
  }

  execute<T>(fn: Operation<T>, options?: ExecuteOptions): Promise<T> {
    if (this.#disposed) return Promise.reject(new DisposedError(this.name));
    const p = this.probability;
    if (p > 0 && this.random() < p) {
      // Refused here: a request the backend did not accept, as the SRE book counts it.
      this.#count(false);
      return Promise.reject(this.#refuse(p));
    }
    const scope = new CallScope(options);
    if (scope.aborted) {
      scope.release();
      return Promise.reject(scope.reason);
    }
    // A call is counted once it answers: calls in flight are no one's refusal (counted as they
    // were sent, a burst of 20 at start-up saw 1 request in 2 unaccepted and 17 were refused).
    return invokeIn(fn, scope).then(
      (value) => {
        scope.release();
        this.#count(true);
        return value;
      },
      (error: unknown) => {
        scope.release();
        // A call the caller gave up on is not counted. Nor is one refused on this side of the
        // backend (isLocalRefusal: a bulkhead, limiter, throttle, open breaker or held
        // idempotency key inside this one): it never reached the backend, and says nothing of
        // it. Any other error the backend answered with is an accept, unless `isRejection` says
        // it refused.
        if (!scope.aborted && !isLocalRefusal(error)) {
          this.#count(!rejected(this.isRejection, error));
        }
        throw error;
      },
    );
  }

  /** Counts a request in the current slice, and an accept too when `accepted`. */
  #count(accepted: boolean): void {
    const at = this.#advance();
    this.#requests[at] = (this.#requests[at] as number) + 1;
    this.#requestSum++;
    if (!accepted) return;
    this.#accepts[at] = (this.#accepts[at] as number) + 1;
    this.#acceptSum++;
  }

  #advance(): number {
    const slice = Math.floor(this.common.elapsed() / this.#sliceMs);
    if (slice < this.#slice) {
      this.#high = Math.max(this.#high ?? this.#slice, this.#slice);
      this.#lineBack(slice);
    } else if (slice > this.#slice + 1 && this.#high !== undefined && Math.abs(slice - this.#high) <= 1) {
      // The line came back to where it counted (a clock set back, then set right): no time
      // passed, the window stands. Forgotten, a flapping clock wiped the backend's refusals at
      // each return. Once per step back: a quiet spell ending just there holds it a window more.
      this.#high = undefined;
      this.#lineBack(slice);
    } else if (this.#high !== undefined && slice > this.#high) this.#high = undefined;
    const steps = Math.min(slice - this.#slice, SLICES);
    for (let i = 1; i <= steps; i++) {
      const at = ring(this.#slice + i);
      this.#requestSum -= this.#requests[at] as number;
      this.#acceptSum -= this.#accepts[at] as number;
      this.#requests[at] = 0;
      this.#accepts[at] = 0;
    }
    if (slice > this.#slice) this.#slice = slice;
    return ring(this.#slice);
  }

  /**
   * The line went back (a clock without monotonic() stepped back; realClock left fake timers for
   * real ones): the window's counts move to the slice of now and leave one window later, not when
   * the line is back where it was (an hour after a one-hour step, refusing calls all along).
   */
  #lineBack(slice: number): void {
    this.#requests.fill(0);
    this.#accepts.fill(0);
    this.#slice = slice;
    this.#requests[ring(slice)] = this.#requestSum;
    this.#accepts[ring(slice)] = this.#acceptSum;
  }

  #refuse(probability: number): ThrottledError {
    this.#rejected++;
    const { bus, clock } = this.common;
    if (bus.wants('throttle.reject')) {
      bus.emit({ type: 'throttle.reject', source: this.name, time: clock.now(), probability, code: 'E_THROTTLED' });
    }
    return new ThrottledError(this.name, probability);
  }

  snapshot(): AdaptiveThrottleSnapshot {
    const probability = this.probability;
    return {
      name: this.name,
      k: this.k,
      requests: this.#requestSum,
      accepts: this.#acceptSum,
      probability,
      rejected: this.#rejected,
      status: probability > 0 ? 'warn' : 'pass',
    };
  }

  dispose(): void {
    this.#disposed = true;
    this.unregister();
  }
}

/** Whether the backend refused: an `isRejection` that throws counts a refusal, and the call keeps its own error. */
function rejected(isRejection: (error: unknown) => boolean, error: unknown): boolean {
  try {
    return isRejection(error);
  } catch {
    return true;
  }
}
