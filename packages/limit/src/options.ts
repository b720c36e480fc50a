import {
  busOption,
  clockOption,
  durationOption,
  fnOption,
  nameOption,
  policiesOption,
  positiveDurationOption,
} from '@holdfast/core';
import { z } from 'zod';

/** Options every policy of this package takes: name, bus, clock, policies. */
export const nameDefaults = (name: string) => ({
  /** Shown as `source` on its events, and its name in `healthReport()` and the dashboard. */
  name: nameOption.default(name),
  /** The bus its events go to. @default the global bus */
  bus: busOption.optional(),
  /** @default the real clock */
  clock: clockOption.optional(),
  /** Where it lists itself for `healthReport()` and the dashboard, or `false`. @default the global registry */
  policies: policiesOption.optional(),
});

const count = z.number().int().min(1).max(1_000_000_000);

/**
 * The key this limiter counts a call under, from the call's `key` (`undefined` when it gave none;
 * returning `undefined` means `defaultKey`). Every limiter of a `pipeline()` reads the call's key:
 * `key: () => 'all'` makes one limit for every call beside one per user. @default the call's key
 */
export const keyOption = fnOption<(key: string | undefined) => string | undefined>().optional();

/** Validates the options of `bulkhead()`; {@link BulkheadOptions} is inferred from it. */
export const bulkheadOptionsSchema = z.strictObject({
  /** Calls that may run at once. */
  maxConcurrent: count,
  /** Calls that may wait for a slot; more are refused at once. @default 0 */
  maxQueue: z.number().int().min(0).max(1_000_000_000).default(0),
  /** How long a call may wait in the queue, ms. @default no limit */
  queueTimeout: positiveDurationOption.optional(),
  ...nameDefaults('bulkhead'),
});

/** Options of `bulkhead()`. */
export type BulkheadOptions = z.input<typeof bulkheadOptionsSchema>;

/**
 * The longest a limit may take to come back whole, ms (`interval`, or `interval × burst / limit`
 * for a token bucket; about 31,700 years): its `w` and `t` in the RateLimit headers, in seconds,
 * stay integers of at most 15 digits (RFC 8941), as they must.
 */
export const MAX_WINDOW = 1e15;

/**
 * The period a limit is counted over, ms: from 1 (below, the rate in the headers ran past 15
 * digits, or to `Infinity`; a faster rate is more calls per ms) to {@link MAX_WINDOW}.
 */
export const intervalOption = z
  .number()
  .min(1, 'must be at least 1 ms')
  .max(MAX_WINDOW, 'must be at most 1e15 ms')
  .default(1000);

const rate = {
  /** Calls allowed per `interval`. */
  limit: count,
  /** The period `limit` is counted over, ms, from 1 to 1e15. @default 1000 */
  interval: intervalOption,
  /**
   * Most distinct keys tracked. Past it, of the 16 least recently used keys, the one with the most
   * of its limit left is forgotten (a forgotten key gets its whole limit back: a key part-way
   * through its limit is kept while keys with more room are tracked, so spraying new keys cannot
   * reset it). @default 10000
   */
  maxKeys: z.number().int().min(1).default(10_000),
  /** The key of calls that give none (`execute(fn, { key })`). @default '' */
  defaultKey: z.string().default(''),
  key: keyOption,
};

/** Validates the options of `tokenBucket()`; {@link TokenBucketOptions} is inferred from it. */
export const tokenBucketOptionsSchema = z
  .strictObject({
    ...rate,
    /** Calls allowed at once after a quiet spell (the bucket's size). @default `limit` */
    burst: count.optional(),
    ...nameDefaults('tokenBucket'),
  })
  .superRefine(refillBound);

/**
 * `interval × burst / limit` (how long an empty bucket takes to fill) at most {@link MAX_WINDOW}:
 * for the RateLimit headers, and for Redis (past about 1e17 ms, it prints Lua's numbers as
 * `1e+17` and every decision failed). An issue on `interval` if not.
 */
export function refillBound(
  o: { interval: number; limit: number; burst?: number | undefined },
  ctx: z.RefinementCtx,
): void {
  const full = (o.interval * (o.burst ?? o.limit)) / o.limit;
  if (full > MAX_WINDOW) {
    ctx.addIssue({
      code: 'custom',
      path: ['interval'],
      message: `x burst / limit must be at most 1e15 ms (is ${full})`,
    });
  }
}

/** Options of `tokenBucket()`. */
export type TokenBucketOptions = z.input<typeof tokenBucketOptionsSchema>;

/** Validates the options of `slidingWindow()`; {@link SlidingWindowOptions} is inferred from it. */
export const slidingWindowOptionsSchema = z.strictObject({
  ...rate,
  ...nameDefaults('slidingWindow'),
});

/** Options of `slidingWindow()`. */
export type SlidingWindowOptions = z.input<typeof slidingWindowOptionsSchema>;

const limits = {
  /** The limit before any latency was seen. @default 20 */
  initialLimit: count.default(20),
  /** Never below. @default 1 */
  minLimit: count.default(1),
  /** Never above. @default 1000 */
  maxLimit: count.default(1000),
};

// The defaults are filled in after the check, so it blames the option the user set, and says
// when the other is the default (checked after them, minTime: 5000 alone was blamed on a maxTime
// never set, "(got undefined)").
const sampleWindow = z
  .strictObject({
    /** A window closes no sooner than this, ms: a few latencies long. @default 100 */
    minTime: durationOption.optional(),
    /** A window closes by this time whatever it holds, ms. @default 1000 */
    maxTime: positiveDurationOption.optional(),
    /** Samples a window needs before it closes (before maxTime). @default 10 */
    minSamples: z.number().int().min(1).optional(),
  })
  .transform(({ minTime = 100, maxTime, minSamples = 10 }, ctx) => {
    if (maxTime === undefined) {
      maxTime = 1000;
      if (minTime > maxTime) {
        ctx.addIssue({ code: 'custom', message: 'must be <= maxTime (1000, the default)', path: ['minTime'] });
      }
    } else if (minTime > maxTime) {
      ctx.addIssue({ code: 'custom', message: `must be >= minTime (${minTime})`, path: ['maxTime'] });
    }
    return { minTime, maxTime, minSamples };
  });

const gradient2 = z.strictObject({
  algorithm: z.literal('gradient2'),
  ...limits,
  /** How much slower than the long-run latency a call may be before the limit shrinks. @default 1.5 */
  tolerance: z.number().min(1).default(1.5),
  /** Weight of each new estimate in the limit (0..1]. @default 0.2 */
  smoothing: z.number().gt(0).max(1).default(0.2),
  /** Samples the long-run latency averages over. @default 600 */
  longWindow: z.number().int().min(10).default(600),
  /** Headroom added to the limit each sample, so it probes upwards. @default 4 */
  queueSize: z.number().min(0).default(4),
});

const aimd = z.strictObject({
  algorithm: z.literal('aimd'),
  ...limits,
  /** Factor the limit is multiplied by after a drop (0.5..1). @default 0.9 */
  backoffRatio: z.number().min(0.5).lt(1).default(0.9),
  /** A success slower than this counts as a drop, ms. @default 5000 */
  timeout: positiveDurationOption.default(5000),
});

const vegas = z.strictObject({
  algorithm: z.literal('vegas'),
  ...limits,
  /** Probability of forgetting the no-load latency on a sample, to follow a slower baseline. @default 0.001 */
  probeRate: z.number().min(0).max(1).default(0.001),
});

/** Validates the options of `adaptiveConcurrency()`; {@link AdaptiveConcurrencyOptions} is inferred from it. */
export const adaptiveConcurrencyOptionsSchema = z
  .discriminatedUnion('algorithm', [
    gradient2.extend({ ...commonAdaptive() }),
    aimd.extend({ ...commonAdaptive() }),
    vegas.extend({ ...commonAdaptive() }),
  ])
  .superRefine((o, ctx) => {
    if (o.minLimit > o.maxLimit) {
      ctx.addIssue({ code: 'custom', message: `must be <= maxLimit (${o.maxLimit})`, path: ['minLimit'] });
    } else if (o.initialLimit < o.minLimit || o.initialLimit > o.maxLimit) {
      ctx.addIssue({
        code: 'custom',
        message: `must be between minLimit (${o.minLimit}) and maxLimit (${o.maxLimit}); it is ${o.initialLimit}`,
        path: ['initialLimit'],
      });
    }
  });

function commonAdaptive() {
  return {
    /**
     * The limit moves once per window of samples (their mean latency, the most calls in flight,
     * whether any dropped), as in concurrency-limits' WindowedLimit: per-call updates chase
     * calls sent under an older limit and oscillate. @default {}
     */
    window: sampleWindow.prefault({}),
    /**
     * Which failures say the dependency is overloaded (count as drops). It sees only the
     * dependency's errors: a call refused on this side of it (`isLocalRefusal(error)`, a rate
     * limiter or bulkhead inside this one) is no sample. @default every error
     */
    isDrop: fnOption<(error: unknown) => boolean>().optional(),
    /** Random numbers in [0, 1), for Vegas' probes. @default Math.random */
    random: fnOption<() => number>().optional(),
    ...nameDefaults('adaptiveConcurrency'),
  };
}

/** Options of `adaptiveConcurrency()`. */
export type AdaptiveConcurrencyOptions = z.input<typeof adaptiveConcurrencyOptionsSchema>;

/** Validates the options of `adaptiveThrottle()`; {@link AdaptiveThrottleOptions} is inferred from it. */
export const adaptiveThrottleOptionsSchema = z.strictObject({
  /** How many requests per accept are tolerated before throttling: 2 allows 50% refusals. @default 2 */
  k: z.number().min(1).default(2),
  /** The period requests and accepts are counted over, ms. @default 60000 */
  window: durationOption.min(100).default(60_000),
  /** Which failures are the backend refusing (overload, 429, 503). @default every error */
  isRejection: fnOption<(error: unknown) => boolean>().optional(),
  /** Random numbers in [0, 1). @default Math.random */
  random: fnOption<() => number>().optional(),
  ...nameDefaults('adaptiveThrottle'),
});

/** Options of `adaptiveThrottle()`. */
export type AdaptiveThrottleOptions = z.input<typeof adaptiveThrottleOptionsSchema>;
