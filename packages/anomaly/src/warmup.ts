/** The most warm-up samples kept to start an estimate from (a longer warm-up goes on clipped). */
const KEPT = 64;

/** Median absolute deviation to mean absolute deviation, for normal noise: 1.4826 / 1.2533. */
const MEDIAN_TO_MEAN_DEVIATION = 1.183;

/**
 * The first samples of a level-and-spread estimate, kept so that the estimate starts from their
 * median and a trimmed deviation around it: one wild value while warming up (a 1e6 ms call timed
 * across a clock step) neither drags the level nor widens the spread for hundreds of samples, as
 * running means would.
 */
export class WarmupSample {
  readonly #size: number;
  /** The values kept, made at the first one and let go once full (the estimate stays). */
  #values: Float64Array | undefined;
  #n = 0;
  #estimate = { level: 0, mad: 0 };

  constructor(warmup: number) {
    this.#size = Math.max(1, Math.min(warmup, KEPT));
  }

  /** Whether every slot is taken: from then on the estimate goes on by clipped updates. */
  get full(): boolean {
    return this.#n === this.#size;
  }

  /** The last estimate: the median of the values kept, and their trimmed deviation. */
  get estimate(): { readonly level: number; readonly mad: number } {
    return this.#estimate;
  }

  /**
   * Where values stop being believable while warming up: the median of the values kept so far,
   * plus or minus `k` of their deviations (at least `floor`, and 1% of the median); undefined
   * before 3 values, too few to tell a wild one.
   */
  fence(k: number, floor: number): [number, number] | undefined {
    if (this.#n < 3) return undefined;
    const { level, mad } = this.#estimate;
    const reach = k * Math.max(mad * 1.2533, 0.01 * Math.abs(level), floor);
    return [level - reach, level + reach];
  }

  /**
   * Adds a finite value and returns the estimate over every value kept: the median as the level,
   * and as the spread the mean absolute deviation from it with the largest eighth left out (at
   * least the median deviation's normal equivalent, so a handful of wild values cannot make it 0).
   */
  add(value: number): { level: number; mad: number } {
    if (this.full || !Number.isFinite(value)) return this.#estimate;
    this.#values ??= new Float64Array(this.#size);
    this.#values[this.#n++] = value;
    const n = this.#n;
    const sorted = scratch.subarray(0, n);
    sorted.set(this.#values.subarray(0, n));
    sorted.sort();
    const level = median(sorted);
    for (let i = 0; i < n; i++) sorted[i] = Math.abs((sorted[i] as number) - level);
    sorted.sort();
    const kept = n - Math.floor(n / 8);
    let sum = 0;
    for (let i = 0; i < kept; i++) sum += sorted[i] as number;
    const mad = Math.max(sum / kept, median(sorted) * MEDIAN_TO_MEAN_DEVIATION);
    this.#estimate = { level, mad };
    if (this.full) this.#values = undefined;
    return this.#estimate;
  }
}

/** One sort buffer for every sample: JavaScript runs one add() at a time. */
const scratch = new Float64Array(KEPT);

function median(sorted: Float64Array): number {
  const n = sorted.length;
  const mid = n >> 1;
  return n % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}
