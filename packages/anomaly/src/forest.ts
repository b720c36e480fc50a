import { HoldfastConfigError, parseOptions, seededRandom } from '@holdfast/core';
import type { z } from 'zod';
import { departureScore, Hysteresis, type Verdict } from './hysteresis.js';
import { type ForestOptions, forestOptionsSchema, notNumber } from './options.js';
import { WarmupSample } from './warmup.js';

/** A forest's verdict on one sample. */
export interface ForestVerdict extends Verdict {
  /** Per dimension, the value each normaliser expected: the baseline the sample departed from. */
  readonly expected: readonly number[];
  /** The dimension that departed most from its expected value (in spreads), or -1 while warming up. */
  readonly dimension: number;
}

/** A multivariate online detector over several metrics at once. */
export interface HalfSpaceForest {
  /** Scores `values` (one per dimension), then learns them. Non-finite values count as expected. */
  update(values: ArrayLike<number>): ForestVerdict;
  /** Samples seen so far. */
  readonly samples: number;
  /** Bytes held by the trees and their mass profiles. */
  readonly bytes: number;
}

type Parsed = z.output<typeof forestOptionsSchema>;

const MAD_TO_SD = 1.2533;
const CLIP = 3;
/** While warming up, a value beyond this many deviations of the first samples' median is pulled in to it. */
const FENCE = 10;

/**
 * Streaming Half-Space Trees (Tan, Ting & Liu, 2011) over robustly normalised metrics: random
 * trees that halve a perturbed work space, a mass profile learnt over one window and used to score
 * the next, so the forest follows the data with no training phase and fixed memory. Each
 * dimension is first centred and scaled by a clipped EWMA (and folded by its direction), so a
 * level shift becomes usual once it lasts; the forest's isolation measure is itself turned into
 * a score against its own robust baseline.
 *
 * @example
 * const forest = halfSpaceForest({ dimensions: 3, seed: 7 });
 * for (let i = 0; i < 300; i++) forest.update([20 + (i % 5), 0.01, 100 - (i % 3)]);
 * const v = forest.update([180, 0.4, 40]);
 * console.log(v.score > 0.5, v.raised);
 */
export function halfSpaceForest(options: ForestOptions): HalfSpaceForest {
  const o = parseOptions('halfSpaceForest', forestOptionsSchema, options);
  return new Forest(o);
}

/** Parses a forest's options once, for a caller that makes many forests alike but for their seed. */
export function forestFactory(owner: string, options: ForestOptions): (seed: number) => HalfSpaceForest {
  const o = parseOptions(owner, forestOptionsSchema, options);
  return (seed) => new Forest({ ...o, seed });
}

class Forest implements HalfSpaceForest {
  readonly #o: Parsed;
  readonly #nodes: number;
  /** Per tree and node: the dimension split on (internal nodes). */
  readonly #dim: Uint8Array;
  /** Per tree and node: the split value, in normalised units (0..1). */
  readonly #split: Float32Array;
  #ref: Uint16Array;
  #latest: Uint16Array;
  readonly #sizeLimit: number;
  readonly #alpha: number;
  readonly #level: Float64Array;
  readonly #mad: Float64Array;
  readonly #u: Float64Array;
  /** Per dimension, the first samples: their median and deviation fence what is learnt while warming up. */
  readonly #first: WarmupSample[];
  readonly #labels: Hysteresis;
  /** Robust baseline of the isolation measure itself. */
  #isoLevel = 0;
  #isoMad = 0;
  readonly #isoFirst: WarmupSample;
  #n = 0;

  constructor(o: Parsed) {
    this.#o = o;
    this.#nodes = 2 ** (o.depth + 1) - 1;
    const size = this.#nodes * o.trees;
    this.#dim = new Uint8Array(size);
    this.#split = new Float32Array(size);
    this.#ref = new Uint16Array(size);
    this.#latest = new Uint16Array(size);
    this.#sizeLimit = Math.max(1, Math.floor(o.window / 10));
    this.#alpha = 1 - 2 ** (-1 / o.halfLife);
    this.#level = new Float64Array(o.dimensions);
    this.#mad = new Float64Array(o.dimensions);
    this.#u = new Float64Array(o.dimensions);
    this.#first = Array.from({ length: o.dimensions }, () => new WarmupSample(o.warmup));
    this.#isoFirst = new WarmupSample(o.warmup);
    this.#labels = new Hysteresis(o.hysteresis);
    const random = seededRandom(o.seed);
    const lo = new Float64Array(o.dimensions);
    const hi = new Float64Array(o.dimensions);
    for (let t = 0; t < o.trees; t++) {
      for (let q = 0; q < o.dimensions; q++) {
        // The perturbed work range of the paper: it covers [0, 1] whatever sq is.
        const sq = random();
        const r = 2 * Math.max(sq, 1 - sq);
        lo[q] = sq - r;
        hi[q] = sq + r;
      }
      this.#build(t * this.#nodes, 0, 0, lo, hi, random);
    }
  }

  get samples(): number {
    return this.#n;
  }

  get bytes(): number {
    return this.#dim.byteLength + this.#split.byteLength + this.#ref.byteLength * 2 + this.#o.dimensions * 24;
  }

  #build(base: number, node: number, depth: number, lo: Float64Array, hi: Float64Array, random: () => number): void {
    if (depth === this.#o.depth) return;
    const q = Math.floor(random() * this.#o.dimensions);
    const low = lo[q] as number;
    const high = hi[q] as number;
    const mid = (low + high) / 2;
    this.#dim[base + node] = q;
    this.#split[base + node] = mid;
    hi[q] = mid;
    this.#build(base, 2 * node + 1, depth + 1, lo, hi, random);
    hi[q] = high;
    lo[q] = mid;
    this.#build(base, 2 * node + 2, depth + 1, lo, hi, random);
    lo[q] = low;
  }

  update(values: ArrayLike<number>): ForestVerdict {
    // A row missing a metric (or one too many) would be scored as if whole.
    const width = this.#o.dimensions;
    if (values?.length !== width) {
      throw new HoldfastConfigError('halfSpaceForest.update', [
        { path: 'values', message: `must hold ${width} numbers (got ${values?.length})`, value: values },
      ]);
    }
    for (let d = 0; d < width; d++)
      if (typeof values[d] !== 'number') throw notNumber('halfSpaceForest.update', `values[${d}]`, values[d]);
    const expected = Array.from(this.#level);
    const dimension = this.#normalise(values);
    const mass = this.#scoreAndCount();
    const n = ++this.#n;
    if (n % this.#o.window === 0) {
      const old = this.#ref;
      this.#ref = this.#latest;
      this.#latest = old;
      old.fill(0);
    }
    if (n <= this.#o.warmup) {
      this.#learnIsolation(mass, false);
      return { ...this.#labels.next(0), expected, dimension: -1 };
    }
    const verdict = this.#labels.next(this.#learnIsolation(mass, true));
    return { score: verdict.score, raised: verdict.raised, change: verdict.change, expected, dimension };
  }

  /** Writes each dimension's squashed robust z into #u, learns it, and returns the most departed dimension. */
  #normalise(values: ArrayLike<number>): number {
    const { dimensions, directions, minScales } = this.#o;
    const warm = this.#n >= this.#o.warmup;
    const alpha = warm ? this.#alpha : Math.max(this.#alpha, 1 / (this.#n + 1));
    let worst = -1;
    let worstZ = Number.NEGATIVE_INFINITY;
    for (let q = 0; q < dimensions; q++) {
      // Warm now: a level or spread beyond the fence of the first samples' median (a wild value
      // among the very first, before there was a fence) starts over from that median instead.
      if (this.#n === this.#o.warmup) this.#settle(q);
      const level = this.#level[q] as number;
      const spread = Math.max((this.#mad[q] as number) * MAD_TO_SD, minScales?.[q] ?? 0, 0.01 * Math.abs(level), 1e-12);
      const raw = values[q];
      const x = raw === undefined || !Number.isFinite(raw) ? level : raw;
      const residual = x - level;
      let z = residual / spread;
      const direction = directions?.[q] ?? 'both';
      // A departure in the harmless direction is folded to zero: it cannot isolate a point.
      if ((direction === 'up' && z < 0) || (direction === 'down' && z > 0)) z = 0;
      if (Math.abs(z) > worstZ) {
        worstZ = Math.abs(z);
        worst = q;
      }
      this.#u[q] = Number.isNaN(z) ? 0.5 : 1 / (1 + Math.exp(-z / 2));
      let r = residual;
      if (warm) {
        // Exponentially weighted, residuals clipped (Huber).
        const limit = CLIP * spread;
        r = Math.max(-limit, Math.min(limit, residual));
      } else if (x === raw) {
        // Running means while warming up, but a value far outside what the first samples were (their
        // median, their deviation) is pulled in to that fence before it is learnt: one wild value
        // among them neither drags the level nor widens the spread for hundreds of samples.
        const first = this.#first[q] as WarmupSample;
        const fence = first.fence(FENCE, Math.max(minScales?.[q] ?? 0, 1e-12));
        if (fence !== undefined) r = Math.max(fence[0], Math.min(fence[1], x)) - level;
        first.add(x);
      }
      const nextLevel = level + alpha * r;
      const nextMad = (this.#mad[q] as number) + alpha * (Math.abs(r) - (this.#mad[q] as number));
      // A value near the float limits would overflow the state and poison every later score.
      if (!Number.isFinite(nextLevel) || !Number.isFinite(nextMad)) continue;
      this.#level[q] = nextLevel;
      this.#mad[q] = nextMad;
    }
    return worst;
  }

  #settle(q: number): void {
    const first = this.#first[q] as WarmupSample;
    const fence = first.fence(FENCE, Math.max(this.#o.minScales?.[q] ?? 0, 1e-12));
    if (fence === undefined) return;
    const level = this.#level[q] as number;
    const mad = this.#mad[q] as number;
    if (level >= fence[0] && level <= fence[1] && mad * MAD_TO_SD <= fence[1] - fence[0]) return;
    this.#level[q] = first.estimate.level;
    this.#mad[q] = first.estimate.mad;
  }

  /** Counts the sample into the latest profile of every tree; returns its mass score against the reference. */
  #scoreAndCount(): number {
    const { trees, depth, window } = this.#o;
    const latest = this.#latest;
    const dim = this.#dim;
    const split = this.#split;
    const u = this.#u;
    const nodes = this.#nodes;
    // Until the first window closes, the latest profile (scaled up) stands in for the reference.
    const early = this.#n < window;
    const profile = early ? latest : this.#ref;
    const scale = early ? window / Math.max(1, this.#n) : 1;
    const limit = this.#sizeLimit;
    let total = 0;
    for (let t = 0; t < trees; t++) {
      const base = t * nodes;
      let node = 0;
      let scored = false;
      let weight = 1;
      for (let d = 0; ; d++) {
        const i = base + node;
        if (!scored) {
          const m = (profile[i] as number) * scale;
          if (m < limit || d === depth) {
            total += m * weight;
            scored = true;
          }
        }
        latest[i] = (latest[i] as number) + 1;
        if (d === depth) break;
        weight *= 2;
        node = (u[dim[i] as number] as number) < (split[i] as number) ? 2 * node + 1 : 2 * node + 2;
      }
    }
    return total / trees;
  }

  /** Learns the isolation measure -log2(mass) and returns the sample's score against it. */
  #learnIsolation(mass: number, warm: boolean): number {
    const iso = -Math.log2(mass + 1);
    const spread = Math.max(this.#isoMad * MAD_TO_SD, 0.05);
    const residual = iso - this.#isoLevel;
    const score = departureScore(residual / spread, this.#o.threshold);
    if (!this.#isoFirst.full) {
      // Its first values set its level and spread by their median, as each dimension's do.
      ({ level: this.#isoLevel, mad: this.#isoMad } = this.#isoFirst.add(iso));
      return score;
    }
    const alpha = warm ? this.#alpha : Math.max(this.#alpha, 1 / this.#n);
    const limit = CLIP * spread;
    const r = Math.max(-limit, Math.min(limit, residual));
    this.#isoLevel += alpha * r;
    this.#isoMad += alpha * (Math.abs(r) - this.#isoMad);
    return score;
  }
}
