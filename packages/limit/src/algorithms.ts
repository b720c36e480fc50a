/**
 * The limit algorithms of Netflix's concurrency-limits, as pure state machines: each sample is
 * one call's latency, the calls in flight when it started, and whether it failed as a drop.
 */

/** One call's measurements. */
export interface Sample {
  /** Latency, ms. */
  readonly rtt: number;
  /** Calls in flight when this one started (itself included). */
  readonly inFlight: number;
  /** Whether it failed in a way that says the dependency is overloaded. */
  readonly didDrop: boolean;
  /** How many calls the sample stands for (a window's; 1 if left out). */
  readonly count?: number;
}

/** A limit that moves with each sample. */
export interface LimitAlgorithm {
  /** The algorithm's name, as events report it. */
  readonly name: 'gradient2' | 'aimd' | 'vegas';
  /** The current limit (fractional; the limiter rounds down). */
  readonly limit: number;
  /** Folds in one sample; returns the new limit. */
  update(sample: Sample): number;
}

interface Bounds {
  readonly initialLimit: number;
  readonly minLimit: number;
  readonly maxLimit: number;
}

const clamp = (b: Bounds, value: number) => Math.max(b.minLimit, Math.min(b.maxLimit, value));

/**
 * Gradient2: compares each latency to a long-run average. While latency stays within
 * `tolerance` of it the limit grows by `queueSize`; when latency rises the limit shrinks in
 * proportion (never below half). A long-run average far above the latest latency decays, so
 * the limit recovers after a slow spell.
 */
export class Gradient2 implements LimitAlgorithm {
  /** The algorithm's name, as events report it. */
  readonly name = 'gradient2';
  /** The current limit. */
  limit: number;
  #longRtt = 0;
  #samples = 0;

  constructor(
    private readonly o: Bounds & { tolerance: number; smoothing: number; longWindow: number; queueSize: number },
  ) {
    this.limit = clamp(o, o.initialLimit);
  }

  update({ rtt, inFlight, didDrop }: Sample): number {
    // Finite: an infinite latency (a window's sum past Number.MAX_VALUE) made the gradient NaN.
    const shortRtt = Math.min(Math.max(rtt, 1e-3), Number.MAX_VALUE);
    this.#samples++;
    // An exponential average whose first `warmup` samples are a plain mean.
    const warmup = 10;
    if (this.#samples <= warmup) this.#longRtt += (shortRtt - this.#longRtt) / this.#samples;
    else this.#longRtt += (shortRtt - this.#longRtt) * (2 / (this.o.longWindow + 1));
    if (this.#longRtt / shortRtt > 2) this.#longRtt *= 0.95;
    // A limit that calls do not reach says nothing about the dependency: do not grow it.
    if (inFlight < this.limit / 2 && !didDrop) return this.limit;
    const gradient = Math.max(0.5, Math.min(1, (this.o.tolerance * this.#longRtt) / shortRtt));
    const target = didDrop ? this.limit * 0.5 : this.limit * gradient + this.o.queueSize;
    this.limit = clamp(this.o, this.limit * (1 - this.o.smoothing) + target * this.o.smoothing);
    return this.limit;
  }
}

/**
 * AIMD: additive increase while calls succeed within `timeout` and use at least half the
 * limit; multiplicative decrease (`backoffRatio`) on a drop or a success slower than `timeout`,
 * at most once per update (a window of calls) and per limit's worth of calls (the calls already
 * in flight report the overload the decrease answers).
 */
export class Aimd implements LimitAlgorithm {
  /** The algorithm's name, as events report it. */
  readonly name = 'aimd';
  /** The current limit. */
  limit: number;
  /** Calls still to ignore after a decrease: calls sent before it report the old overload. */
  #cooldown = 0;

  constructor(private readonly o: Bounds & { backoffRatio: number; timeout: number }) {
    this.limit = clamp(o, o.initialLimit);
  }

  update({ rtt, inFlight, didDrop, count = 1 }: Sample): number {
    const dropped = didDrop || rtt > this.o.timeout;
    // Counted in calls, not updates: the limiter folds a window of calls into each update, and
    // a cooldown of `limit` windows held a limit of 90 for 90 windows (9 s) of nothing but drops.
    this.#cooldown = Math.max(0, this.#cooldown - count);
    if (dropped) {
      if (this.#cooldown > 0) return this.limit;
      this.limit = clamp(this.o, this.limit * this.o.backoffRatio);
      this.#cooldown = Math.ceil(this.limit);
    } else if (inFlight * 2 >= this.limit) this.limit = clamp(this.o, this.limit + 1);
    return this.limit;
  }
}

/**
 * Vegas: estimates the queue at the dependency as `limit × (1 − noLoadRtt / rtt)` and keeps it
 * between alpha (3·log10 limit) and beta (6·log10 limit); a drop cuts the limit by log10.
 * The no-load latency is the lowest seen, forgotten now and then (`probeRate`) to follow a
 * dependency whose baseline moved.
 */
export class Vegas implements LimitAlgorithm {
  /** The algorithm's name, as events report it. */
  readonly name = 'vegas';
  /** The current limit. */
  limit: number;
  #noLoadRtt = Number.POSITIVE_INFINITY;

  constructor(
    private readonly o: Bounds & { probeRate: number },
    private readonly random: () => number,
  ) {
    this.limit = clamp(o, o.initialLimit);
  }

  update({ rtt, inFlight, didDrop }: Sample): number {
    const latency = Math.max(rtt, 1e-3);
    if (this.random() < this.o.probeRate) this.#noLoadRtt = latency;
    if (latency < this.#noLoadRtt) this.#noLoadRtt = latency;
    const log = Math.max(1, Math.log10(Math.max(1, this.limit)));
    if (didDrop) {
      this.limit = clamp(this.o, this.limit - log);
      return this.limit;
    }
    if (inFlight * 2 < this.limit) return this.limit;
    const queue = Math.ceil(this.limit * (1 - this.#noLoadRtt / latency));
    const alpha = 3 * log;
    const beta = 6 * log;
    if (queue <= log) this.limit += beta;
    else if (queue < alpha) this.limit += log;
    else if (queue > beta) this.limit -= log;
    this.limit = clamp(this.o, this.limit);
    return this.limit;
  }
}
