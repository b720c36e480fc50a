import { BINS, binOf, quantiles } from './histogram.js';

/** Counts to prime a window with, e.g. from a snapshot. */
export interface WindowCounts {
  readonly successes: number;
  readonly failures: number;
  readonly slow: number;
  readonly rejects: number;
  readonly timeouts: number;
  readonly fallbacks: number;
}

/** Totals over the window of what the breaker's own rules do not read on every call. */
export interface WindowTotals {
  readonly timeouts: number;
  readonly rejects: number;
  readonly fallbacks: number;
}

// The layout of one bucket: six counts, then a latency histogram of BINS bins.
const CALLS = 0;
const FAILURES = 1;
const SLOW = 2;
const TIMEOUTS = 3;
const REJECTS = 4;
const FALLBACKS = 5;
/** Calls whose latency the bucket's histogram holds. */
const TIMED = 6;
const HISTOGRAM = 7;
const BUCKET_SIZE = HISTOGRAM + BINS;

/** A bucket's histogram takes every call's latency up to this many, then a sample. */
const FULL_SAMPLE = 32;
/** Past FULL_SAMPLE, about one call in this many (a power of two) is timed. */
const SAMPLE_ONE_IN = 8;

/** xorshift32 state: the sample is drawn at random, so no periodic pattern of calls can dodge it. */
let seed = 0x9e3779b9;

/**
 * The rolling window of one breaker: a ring of `buckets` time slices, each one typed array of
 * counts and a latency histogram, made the first time something lands in it and dropped when
 * it leaves the window. An idle breaker holds no bucket at all, a breaker called once holds
 * one; running totals make every call O(1) whatever the number of calls in the window.
 * Nothing rotates in the background: each use catches up by as many buckets as elapsed.
 */
export class RollingWindow {
  /** Calls counted in the window: successes and failures, never rejects. */
  calls = 0;
  failures = 0;
  slow = 0;

  readonly #buckets: (Uint32Array | undefined)[];
  readonly #span: number;
  /** When the newest bucket began. */
  #headStart: number;
  /** Ring slot of the newest bucket. */
  #at = 0;
  /** Calls recorded without a clock read since the last `advance`: they may sit in a stale bucket. */
  #unread = 0;

  constructor(duration: number, buckets: number, now: number, prime?: WindowCounts) {
    this.#buckets = new Array<Uint32Array | undefined>(buckets).fill(undefined);
    this.#span = duration / buckets;
    this.#headStart = now;
    if (prime) {
      const head = this.#head();
      head[CALLS] = prime.successes + prime.failures;
      head[FAILURES] = prime.failures;
      head[SLOW] = prime.slow;
      head[TIMEOUTS] = prime.timeouts;
      head[REJECTS] = prime.rejects;
      head[FALLBACKS] = prime.fallbacks;
      this.calls = prime.successes + prime.failures;
      this.failures = prime.failures;
      this.slow = prime.slow;
    }
  }

  /** Rotates out every bucket that ended before `now`. */
  advance(now: number): void {
    this.#unread = 0;
    const elapsed = now - this.#headStart;
    if (elapsed < this.#span) {
      // The wall clock stepped back: slide from now, or nothing would leave the window until
      // the clock caught up (an hour of successes would hide an outage for that hour).
      if (elapsed < 0) this.#headStart = now;
      return;
    }
    const steps = Math.floor(elapsed / this.#span);
    this.#headStart += steps * this.#span;
    const n = Math.min(steps, this.#buckets.length);
    for (let i = 0; i < n; i++) this.#rotate();
  }

  /**
   * Whether the next call's latency should be measured for the histograms: every call while
   * the newest bucket holds fewer than 32, then about one in 8 at random, and at least one in 9. A clock read costs
   * more than the rest of a successful call, and percentiles need no more than a sample.
   */
  wantsSample(): boolean {
    const head = this.#buckets[this.#at];
    if (head === undefined || (head[TIMED] as number) < FULL_SAMPLE) return true;
    // At most SAMPLE_ONE_IN untimed calls in a row: the newest bucket is never more stale.
    if (this.#unread >= SAMPLE_ONE_IN) return true;
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed & (SAMPLE_ONE_IN - 1)) === 0;
  }

  /**
   * Records a call that reached the downstream; `latency` is NaN when it was not measured.
   * `now` must have been passed to `advance`.
   */
  record(failure: boolean, slow: boolean, latency: number, timeout: boolean): void {
    const head = this.#head();
    head[CALLS] = (head[CALLS] as number) + 1;
    this.calls++;
    if (failure) {
      head[FAILURES] = (head[FAILURES] as number) + 1;
      this.failures++;
      if (timeout) head[TIMEOUTS] = (head[TIMEOUTS] as number) + 1;
    }
    if (slow) {
      head[SLOW] = (head[SLOW] as number) + 1;
      this.slow++;
    }
    if (Number.isNaN(latency)) this.#unread++;
    else {
      head[TIMED] = (head[TIMED] as number) + 1;
      const bin = HISTOGRAM + binOf(latency);
      head[bin] = (head[bin] as number) + 1;
    }
  }

  /** Records a call refused while open, and whether a fallback served it. */
  reject(fallback: boolean): void {
    const head = this.#head();
    head[REJECTS] = (head[REJECTS] as number) + 1;
    if (fallback) head[FALLBACKS] = (head[FALLBACKS] as number) + 1;
  }

  /** Empties the window: a closed breaker starts afresh. */
  reset(now: number): void {
    this.#buckets.fill(undefined);
    this.calls = 0;
    this.failures = 0;
    this.slow = 0;
    this.#headStart = now;
  }

  /** Timeouts, rejects and fallbacks over the window. */
  get totals(): WindowTotals {
    let timeouts = 0;
    let rejects = 0;
    let fallbacks = 0;
    for (const b of this.#buckets) {
      if (b === undefined) continue;
      timeouts += b[TIMEOUTS] as number;
      rejects += b[REJECTS] as number;
      fallbacks += b[FALLBACKS] as number;
    }
    return { timeouts, rejects, fallbacks };
  }

  /** Latency at the given quantiles over the window, from the histograms. */
  latency(qs: readonly number[]): (number | null)[] {
    const sum = new Uint32Array(BINS);
    for (const b of this.#buckets) {
      if (b === undefined) continue;
      for (let i = 0; i < BINS; i++) sum[i] = (sum[i] as number) + (b[HISTOGRAM + i] as number);
    }
    return quantiles(sum, qs);
  }

  #head(): Uint32Array {
    let head = this.#buckets[this.#at];
    if (head === undefined) {
      head = new Uint32Array(BUCKET_SIZE);
      this.#buckets[this.#at] = head;
    }
    return head;
  }

  #rotate(): void {
    this.#at = (this.#at + 1) % this.#buckets.length;
    const oldest = this.#buckets[this.#at];
    if (oldest === undefined) return;
    this.calls -= oldest[CALLS] as number;
    this.failures -= oldest[FAILURES] as number;
    this.slow -= oldest[SLOW] as number;
    this.#buckets[this.#at] = undefined;
  }
}
