import { parseOptions } from '@holdfast/core';
import type { z } from 'zod';
import { departureScore, Hysteresis, type Verdict } from './hysteresis.js';
import { type BaselineOptions, baselineOptionsSchema, notNumber } from './options.js';
import { WarmupSample } from './warmup.js';

/** A robust baseline's verdict on one sample: the score, the label, and what was expected. */
export interface BaselineVerdict extends Verdict {
  /** The value the baseline expected for this sample (its level plus the season's offset). */
  readonly expected: number;
  /** The spread it expected around that value, as a standard deviation. */
  readonly spread: number;
}

/** A univariate online detector: one sample at a time, constant memory, no training phase. */
export interface RobustBaseline {
  /**
   * Scores `value`, then learns it. A non-finite value scores 0 and is not learnt, but takes its
   * place in the season (an empty cell is a sample missing, not a shift of the cycle). `noise`, when
   * the caller knows it, is the value's own standard error (a rate from few calls is noisier than the
   * usual spread says): the sample is judged and learnt with a spread of at least that; a
   * non-finite noise is none known (0), one that is no number throws `HoldfastConfigError`.
   */
  update(value: number, noise?: number): BaselineVerdict;
  /** The value expected next (level plus the season's offset for the next sample). */
  readonly expected: number;
  /** Samples learnt so far. */
  readonly samples: number;
}

/** Mean absolute deviation to standard deviation, for normal noise: sqrt(pi / 2). */
const MAD_TO_SD = 1.2533;
/** Residuals are clipped at this many spreads before they are learnt (Huber): a spike barely moves the level. */
const CLIP = 3;

type Parsed = z.output<typeof baselineOptionsSchema>;

/**
 * A robust, seasonality-aware baseline: an exponentially weighted level and spread whose
 * updates are clipped (Huber), so spikes do not drag it while level shifts and drifts are
 * followed; optional seasonal offsets per phase bin (additive Holt-Winters). A sample scores by
 * how many spreads it sits from the expected value, in the direction that matters.
 *
 * @example
 * const latency = robustBaseline({ direction: 'up' });
 * for (const ms of [20, 21, 19, 22, 20, 20, 21, 19, 20, 22, 21, 20, 19, 21, 20, 22, 240]) {
 *   const v = latency.update(ms);
 *   if (v.change === 'detected') console.log(`${ms} ms, expected ${v.expected.toFixed(1)}`);
 * }
 */
export function robustBaseline(options: BaselineOptions = {}): RobustBaseline {
  return new Baseline(parseOptions('robustBaseline', baselineOptionsSchema, options));
}

/** Parses a baseline's options once, for a caller that makes many baselines alike (the watch, per key). */
export function baselineFactory(owner: string, options: BaselineOptions): () => RobustBaseline {
  const o = parseOptions(owner, baselineOptionsSchema, options);
  return () => new Baseline(o);
}

class Baseline implements RobustBaseline {
  readonly #o: Parsed;
  readonly #alpha: number;
  readonly #gamma: number;
  readonly #seasonal: Float64Array | undefined;
  readonly #labels: Hysteresis;
  /** The first samples: the level and spread start from their median and deviation. */
  readonly #first: WarmupSample;
  #level = 0;
  #mad = 0;
  #n = 0;
  /** Samples given so far, learnt or not (an empty cell too): the season's phase. */
  #seen = 0;

  constructor(o: Parsed) {
    this.#o = o;
    this.#alpha = 1 - 2 ** (-1 / o.halfLife);
    // Each bin sees one sample in period/bins: it learns on the scale of a few seasons.
    this.#gamma = o.season === undefined ? 0 : Math.min(0.5, (this.#alpha * o.season.period) / o.season.bins / 4);
    this.#seasonal = o.season === undefined ? undefined : new Float64Array(o.season.bins);
    this.#labels = new Hysteresis(o.hysteresis);
    this.#first = new WarmupSample(o.warmup);
  }

  get samples(): number {
    return this.#n;
  }

  get expected(): number {
    return this.#level + this.#offset(this.#seen);
  }

  update(value: number, noise = 0): BaselineVerdict {
    if (typeof value !== 'number') throw notNumber('robustBaseline.update', 'value', value);
    if (typeof noise !== 'number') throw notNumber('robustBaseline.update', 'noise', noise);
    const expected = this.expected;
    const phase = this.#seen++;
    // A noise worked out from nothing (0 / 0 for an interval without calls) is no known noise.
    const spread = Math.max(this.#spread(), Number.isFinite(noise) ? noise : 0);
    if (!Number.isFinite(value)) return { ...this.#labels.next(0), expected, spread };
    const residual = value - expected;
    if (!Number.isFinite(residual))
      return { ...this.#labels.next(departureScore(Number.POSITIVE_INFINITY, 1)), expected, spread };
    const warm = this.#n >= this.#o.warmup;
    const z = residual / spread;
    const d = this.#o.direction === 'up' ? z : this.#o.direction === 'down' ? -z : Math.abs(z);
    const verdict = this.#labels.next(warm ? departureScore(d, this.#o.threshold) : 0);
    this.#learn(residual, spread, warm, phase);
    return { score: verdict.score, raised: verdict.raised, change: verdict.change, expected, spread };
  }

  #spread(): number {
    const floor = Math.max(this.#o.minScale, this.#o.relativeScale * Math.abs(this.#level), 1e-12);
    return Math.max(this.#mad * MAD_TO_SD, floor);
  }

  #offset(n: number): number {
    const s = this.#o.season;
    if (s === undefined || this.#seasonal === undefined) return 0;
    return this.#seasonal[Math.floor(((n % s.period) * s.bins) / s.period)] ?? 0;
  }

  #learn(residual: number, spread: number, warm: boolean, phase: number): void {
    const n = this.#n++;
    // Running means while warming up, then exponentially weighted.
    const alpha = warm ? this.#alpha : Math.max(this.#alpha, 1 / (n + 1));
    // Residuals are clipped (Huber), so a spike barely moves what is learnt.
    const limit = CLIP * spread;
    const r = Math.max(-limit, Math.min(limit, residual));
    if (!this.#first.full) {
      // The first samples set the level and spread by their median: a wild one among them is left out.
      const value = this.#level + residual;
      if (!Number.isFinite(value)) return;
      const { level, mad } = this.#first.add(value);
      if (!Number.isFinite(level) || !Number.isFinite(mad)) return;
      this.#level = level;
      this.#mad = mad;
    } else {
      const level = this.#level + alpha * r;
      const mad = this.#mad + alpha * (Math.abs(r) - this.#mad);
      // A value near the float limits would overflow the state and poison every later score.
      if (!Number.isFinite(level) || !Number.isFinite(mad)) return;
      this.#level = level;
      this.#mad = mad;
    }
    const s = this.#o.season;
    if (s !== undefined && this.#seasonal !== undefined && n >= s.period) {
      const bin = Math.floor(((phase % s.period) * s.bins) / s.period);
      this.#seasonal[bin] = (this.#seasonal[bin] ?? 0) + this.#gamma * (1 - alpha) * r;
    }
  }
}
