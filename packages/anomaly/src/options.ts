import {
  busOption,
  clockOption,
  fnOption,
  HoldfastConfigError,
  nameOption,
  positiveDurationOption,
} from '@holdfast/core';
import { z } from 'zod';

const share = z.number().min(0).max(1);
const count = z.number().int().positive();

/** Which departures count: `up` (latency, errors), `down` (throughput), or `both`. */
export const directionOption = z.enum(['up', 'down', 'both']);

/** The hysteresis every detector puts on its score: an alert is raised once and held, never flapped. */
export const hysteresisSchema = z
  .strictObject({
    /** The score (0..1) at or above which the label is raised. 0.5 is the detector's threshold. @default 0.5 */
    on: z.number().gt(0).lt(1).default(0.5),
    /** The score below which the label may clear. @default 0.35 */
    off: z.number().gt(0).lt(1).default(0.35),
    /** Samples in a row below `off` before the label clears. @default 3 */
    clearAfter: count.default(3),
    /** Samples at or above `on`, among the last `2 * raiseAfter - 1`, that raise the label: 1 raises it at once. @default 1 */
    raiseAfter: count.default(1),
  })
  .refine((h) => h.off <= h.on, { message: 'must be <= on', path: ['off'] });

const seasonSchema = z.strictObject({
  /** Samples in one season (one day of 5-minute samples is 288). */
  period: z.number().int().min(2),
  /** Phase bins the season is learnt in; each learns its own offset. @default 24 */
  bins: z.number().int().min(2).max(1024).default(24),
});

/** Options of {@link robustBaseline}. */
export const baselineOptionsSchema = z
  .strictObject({
    /** Samples over which the baseline forgets half of what it knew. @default 32 */
    halfLife: z.number().finite().min(1).default(32),
    /** Robust z-score (departures in estimated standard deviations) that scores 0.5. @default 4 */
    threshold: z.number().finite().positive().default(4),
    /** Which departures count. @default 'both' */
    direction: directionOption.default('both'),
    /** Samples learnt before any score is given. @default 16 */
    warmup: z.number().int().min(2).default(16),
    /** The smallest spread assumed, in the metric's unit: 0.02 for an error rate makes one stray error no anomaly. @default 0 */
    minScale: z.number().finite().nonnegative().default(0),
    /** The smallest spread assumed, as a share of the level: keeps a flat series from alarming on a rounding. @default 0.01 */
    relativeScale: z.number().finite().nonnegative().default(0.01),
    /** A seasonal cycle to learn (a daily one, say), in samples; none by default. */
    season: seasonSchema.optional(),
    /** Hysteresis of the label. */
    hysteresis: hysteresisSchema.prefault({}),
  })
  // Parsed, so every default above applies.
  .prefault({});

/** Options of {@link robustBaseline}. */
export type BaselineOptions = z.input<typeof baselineOptionsSchema>;

/** Options of {@link halfSpaceForest}, before the per-dimension lists are checked against `dimensions` (for `.omit()`). */
export const forestOptionsShape = z.strictObject({
  /** How many values each sample has (latency p99, error rate, throughput...). */
  dimensions: z.number().int().min(1).max(64),
  /** Trees in the forest. @default 20 */
  trees: z.number().int().min(1).max(200).default(20),
  /** Depth of each tree: 2^(depth+1) - 1 nodes. @default 8 */
  depth: z.number().int().min(1).max(14).default(8),
  /** Samples per mass window (the paper's psi): the reference profile is the window before the latest. @default 256 */
  window: z.number().int().min(8).max(65_535).default(256),
  /** The seed of the random tree structure: the same seed scores the same series the same way. @default 1 */
  seed: z.number().int().default(1),
  /** Samples over which each dimension's normaliser forgets half of what it knew. @default 64 */
  halfLife: z.number().finite().min(1).default(64),
  /** Robust z-score of the forest's isolation measure that scores 0.5. @default 5 */
  threshold: z.number().finite().positive().default(5),
  /** Samples seen before any score is given. @default 32 */
  warmup: z.number().int().min(2).default(32),
  /** Per dimension: which departures count (a drop in throughput is news, a drop in latency is not). @default 'both' each */
  directions: z.array(directionOption).optional(),
  /** Per dimension: the smallest spread assumed, in its unit. @default 0 each */
  minScales: z.array(z.number().finite().nonnegative()).optional(),
  /** Hysteresis of the label. */
  hysteresis: hysteresisSchema.prefault({}),
});

/** Options of {@link halfSpaceForest}: `directions` and `minScales`, when given, hold one entry per dimension. */
export const forestOptionsSchema = forestOptionsShape.superRefine((o, ctx) => {
  for (const name of ['directions', 'minScales'] as const) {
    const list = o[name];
    if (list !== undefined && list.length !== o.dimensions)
      ctx.addIssue({
        code: 'custom',
        path: [name],
        message: `${name} must hold one entry per dimension: ${o.dimensions} (got ${list.length})`,
        input: list,
      });
  }
});

/** Options of {@link halfSpaceForest}. */
export type ForestOptions = z.input<typeof forestOptionsSchema>;

/** A failover set as the watch uses it: by name, through its public API. */
export const failoverLike = z.custom<{
  readonly name: string;
  readonly endpoints: readonly { readonly name: string }[];
  eject(name: string, options: { durationMs: number; reason?: string }): boolean;
  restore(name: string): boolean;
  /** When there: the watch reads which endpoints are drained or ejected, by the operator or the set. */
  snapshot?(): {
    readonly endpoints: readonly {
      readonly name: string;
      readonly role?: string;
      readonly available?: boolean;
      readonly ejection?: string;
      readonly ejectedUntil?: number | null;
    }[];
  };
}>(
  (v) =>
    typeof v === 'object' &&
    v !== null &&
    Array.isArray((v as { endpoints?: unknown }).endpoints) &&
    typeof (v as { eject?: unknown }).eject === 'function' &&
    typeof (v as { restore?: unknown }).restore === 'function',
  { error: 'must be a failover set (endpoints, eject, restore)' },
);

/** A breaker as the watch uses it: `open()` only. */
type BreakerLike = { readonly name: string; open(): void };

const budgetLike = z.custom<{ tryWithdraw(): boolean; readonly balance: number }>(
  (v) =>
    typeof v === 'object' &&
    v !== null &&
    typeof (v as { tryWithdraw?: unknown }).tryWithdraw === 'function' &&
    typeof (v as { balance?: unknown }).balance === 'number',
  { error: 'must be a retry budget (tryWithdraw, balance)' },
);

const ejectSchema = z.strictObject({
  /** The failover set whose endpoints may be taken out early. */
  failover: failoverLike,
  /** The endpoint a watched key stands for. @default the endpoint whose name is the key, else the longest that ends it after a `/` */
  endpointOf: fnOption<(key: string) => string | undefined>().optional(),
  /**
   * How long an early ejection lasts, in ms; it ends sooner when the anomaly clears. If the anomaly
   * is still raised once the endpoint is back and scored again, it is ejected again. @default 30_000
   */
  duration: positiveDurationOption.default(30_000),
  /**
   * The largest share of the set's endpoints taken out at once, by this watch: at least one
   * (never the last in service), none for 0. @default 0.34
   */
  maxShare: share.default(0.34),
  /**
   * Envoy-style: the endpoint's metric must sit this many standard deviations beyond its peers' mean
   * (the spread is at least 10% of the mean for rates and half the mean for latencies, so a set of
   * two or three can decide; a p99 outlier must stand out at the median too). @default 1.9
   */
  stdevFactor: z.number().finite().positive().default(1.9),
});

const openBreakerSchema = z.strictObject({
  /** The breaker a watched key stands for, or undefined to leave it alone. */
  breakerOf: fnOption<(key: string) => BreakerLike | undefined>(),
  /** The largest share of the watched keys whose breakers this watch opens at once: at least one, none for 0. @default 0.34 */
  maxShare: share.default(0.34),
});

const budgetSchema = z.strictObject({
  /** The retry budget to lower while an anomaly lasts. */
  budget: budgetLike,
  /** The share of the budget's balance withdrawn each interval an anomaly is raised. @default 0.5 */
  share: share.default(0.5),
});

/** The metrics the watch computes per key and interval, in the forest's order. */
export const watchMetrics = ['latencyP50', 'latencyP99', 'errorRate', 'throughput', 'rejectRate'] as const;

/** Options of {@link anomalyWatch}. */
export const watchOptionsSchema = z.strictObject({
  /** The watch's name: `source` of its events. @default 'anomaly' */
  name: nameOption.default('anomaly'),
  /** The bus to read calls from and report anomalies on. */
  bus: busOption,
  clock: clockOption.optional(),
  /** How often each key's calls are summed into one sample, in ms. @default 5_000 */
  interval: positiveDurationOption.default(5_000),
  /** Keys (breakers, endpoints, policies) watched at most; past it, new keys share `_other` (see the README). @default 200 */
  maxKeys: count.max(100_000).default(200),
  /** Intervals without a call after which a key is forgotten. @default 60 */
  idleAfter: count.default(60),
  /** Which detectors run per key: the robust baseline per metric, the forest over all of them, or both. @default 'both' */
  detector: z.enum(['baseline', 'forest', 'both']).default('both'),
  /** Options of the per-metric baselines (direction and minScale are set per metric). */
  baseline: z
    .strictObject({
      halfLife: z.number().finite().min(1).optional(),
      threshold: z.number().finite().positive().optional(),
      warmup: z.number().int().min(2).optional(),
    })
    .default({}),
  /** Options of the per-key forest. */
  forest: z
    .strictObject({
      trees: z.number().int().min(1).max(200).optional(),
      depth: z.number().int().min(1).max(14).optional(),
      window: z.number().int().min(8).max(65_535).optional(),
      seed: z.number().int().optional(),
      threshold: z.number().finite().positive().optional(),
      warmup: z.number().int().min(2).optional(),
    })
    .default({}),
  /**
   * Intervals at its threshold, among a detector's last `2 * raiseAfter - 1`, that raise an anomaly
   * (three in a row, or bad, good, bad, good, bad: a fault that flaps; an interval with too few
   * calls to make a sample is not one of them). One interval of a few calls is noisy (its p99 is
   * little more than its slowest call); a fault lasts. 1 raises on the first interval. @default 3
   */
  raiseAfter: count.max(1_000).default(3),
  /** Fewer calls than this in an interval make no sample (a sample of 2 calls is noise). @default 5 */
  minCalls: z.number().int().nonnegative().default(5),
  /** What the watch may do; nothing unless asked. */
  actions: z
    .strictObject({
      /** Take an anomalous endpoint out of its failover set early (through `eject`/`restore`). */
      eject: ejectSchema.optional(),
      /** Open a key's breaker ahead of its own threshold (through `open()`). */
      openBreaker: openBreakerSchema.optional(),
      /** Lower a retry budget while an anomaly lasts (by withdrawing from it). */
      lowerBudget: budgetSchema.optional(),
    })
    .default({}),
});

/** Options of {@link anomalyWatch}. */
export type AnomalyWatchOptions = z.input<typeof watchOptionsSchema>;

/** What a detector says of a value given where a number goes: NaN is no value, a string is a bug to name. */
export function notNumber(owner: string, path: string, value: unknown): HoldfastConfigError {
  return new HoldfastConfigError(owner, [{ path, message: 'must be a number (NaN for no value)', value }]);
}
