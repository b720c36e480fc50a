import CircuitBreaker from 'opossum';
import { BINS, binOf, quantiles } from './histogram.js';

/** One bucket of opossum's Status. @types/opossum 8 lacks the coalesce fields opossum 9 adds. */
export interface OpossumBucket {
  fires: number;
  successes: number;
  failures: number;
  timeouts: number;
  rejects: number;
  fallbacks: number;
}

/** What we use of opossum 9's Status; @types/opossum 8 declares only `stats` and `window`. */
interface OpossumStatus {
  readonly window: OpossumBucket[];
  readonly stats: CircuitBreaker.Stats;
  rotateBucket(): void;
  shutdown(): void;
}

/**
 * The rotation controller every window shares. Opossum's Status starts a bucket interval per
 * breaker unless it is given a controller; it subscribes to one only when `listenerCount` says
 * nobody is subscribed yet, so this one holds no listeners and never ticks. Each window rotates
 * itself on its next use instead, by as many buckets as elapsed: idle breakers cost nothing,
 * and a window catches up after any gap.
 */
const lazyRotation = {
  listenerCount: () => 1,
  on() {
    return this;
  },
  removeListener() {
    return this;
  },
};

/** Counts to prime a window with, e.g. from a snapshot. */
export interface WindowCounts {
  readonly successes: number;
  readonly failures: number;
  readonly slow: number;
  readonly rejects: number;
  readonly timeouts: number;
  readonly fallbacks: number;
}

/**
 * The rolling window of one breaker: opossum's Status holds the counts per bucket (fires are
 * the calls that reached the downstream, rejects the calls refused while open); beside it, in
 * step with its buckets, a ring of slow-call counts and latency histograms. Running totals make
 * every call O(1), whatever the number of calls in the window.
 */
export class RollingWindow {
  /** Calls counted in the window (opossum's fires): successes and failures, never rejects. */
  calls = 0;
  failures = 0;
  slow = 0;

  readonly #status: OpossumStatus;
  readonly #buckets: number;
  readonly #span: number;
  /** When the newest bucket began. */
  #headStart: number;
  #head: OpossumBucket;
  /** Ring slot of the newest bucket in `#slowRing` and `#latency`. */
  #at = 0;
  readonly #slowRing: Uint32Array;
  /** `buckets` histograms of `BINS` bins, made on the first recorded latency. */
  #latency: Uint32Array | undefined;

  constructor(duration: number, buckets: number, now: number, prime?: WindowCounts) {
    this.#buckets = buckets;
    this.#span = duration / buckets;
    this.#headStart = now;
    this.#status = CircuitBreaker.newStatus({
      rollingCountTimeout: duration,
      rollingCountBuckets: buckets,
      rollingPercentilesEnabled: false,
      enableSnapshots: false,
      // biome-ignore lint/suspicious/noExplicitAny: opossum only calls listenerCount/on/removeListener
      rotateBucketController: lazyRotation as any,
      // biome-ignore lint/suspicious/noExplicitAny: Status fills in the fields a partial bucket lacks
      stats: prime ? (primeBucket(prime) as any) : undefined,
    }) as unknown as OpossumStatus;
    this.#head = this.#newest();
    this.#slowRing = new Uint32Array(buckets);
    if (prime) {
      this.calls = prime.successes + prime.failures;
      this.failures = prime.failures;
      this.slow = prime.slow;
      this.#slowRing[0] = prime.slow;
    }
  }

  /** Rotates out every bucket that ended before `now`. */
  advance(now: number): void {
    const elapsed = now - this.#headStart;
    if (elapsed < this.#span) return;
    const steps = Math.floor(elapsed / this.#span);
    this.#headStart += steps * this.#span;
    const n = Math.min(steps, this.#buckets);
    for (let i = 0; i < n; i++) this.#rotate();
    this.#head = this.#newest();
  }

  /** Records a call that reached the downstream. `now` must have been passed to `advance`. */
  record(failure: boolean, slow: boolean, latency: number, timeout: boolean): void {
    const head = this.#head;
    head.fires++;
    this.calls++;
    if (failure) {
      head.failures++;
      this.failures++;
      if (timeout) head.timeouts++;
    } else {
      head.successes++;
    }
    if (slow) {
      this.#slowRing[this.#at] = (this.#slowRing[this.#at] as number) + 1;
      this.slow++;
    }
    const latencies = (this.#latency ??= new Uint32Array(this.#buckets * BINS));
    const slot = this.#at * BINS + binOf(latency);
    latencies[slot] = (latencies[slot] as number) + 1;
  }

  /** Records a call refused while open, and whether a fallback served it. */
  reject(fallback: boolean): void {
    this.#head.rejects++;
    if (fallback) this.#head.fallbacks++;
  }

  /** Empties the window: a closed breaker starts afresh. */
  reset(now: number): void {
    for (let i = 0; i < this.#buckets; i++) this.#rotate();
    this.#headStart = now;
    this.#head = this.#newest();
  }

  /** Opossum's totals over the window (percentiles off, so they read -1 there). */
  get stats(): CircuitBreaker.Stats {
    return this.#status.stats;
  }

  /** Latency at the given quantiles over the window, from the histograms. */
  latency(qs: readonly number[]): (number | null)[] {
    const all = this.#latency;
    if (all === undefined) return qs.map(() => null);
    const sum = new Uint32Array(BINS);
    for (let b = 0; b < this.#buckets; b++) {
      for (let i = 0; i < BINS; i++) sum[i] = (sum[i] as number) + (all[b * BINS + i] as number);
    }
    return quantiles(sum, qs);
  }

  dispose(): void {
    this.#status.shutdown();
  }

  #rotate(): void {
    const window = this.#status.window;
    const oldest = window[window.length - 1];
    if (oldest) {
      this.calls -= oldest.fires;
      this.failures -= oldest.failures;
    }
    this.#status.rotateBucket();
    this.#at = (this.#at + 1) % this.#buckets;
    this.slow -= this.#slowRing[this.#at] as number;
    this.#slowRing[this.#at] = 0;
    this.#latency?.fill(0, this.#at * BINS, (this.#at + 1) * BINS);
  }

  #newest(): OpossumBucket {
    return this.#status.window[0] as OpossumBucket;
  }
}

function primeBucket(counts: WindowCounts): Partial<OpossumBucket> {
  return {
    fires: counts.successes + counts.failures,
    successes: counts.successes,
    failures: counts.failures,
    timeouts: counts.timeouts,
    rejects: counts.rejects,
    fallbacks: counts.fallbacks,
  };
}
