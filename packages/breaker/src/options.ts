import { busOption, clockOption, fnOption, nameOption, policiesOption, positiveDurationOption } from '@holdfast/core';
import { z } from 'zod';
import type { IsFailure } from './outcome.js';

const ratio = z.number().gt(0).lte(1);

/** The state a breaker is in. */
export const breakerStates = ['closed', 'open', 'halfOpen', 'isolated', 'disabled'] as const;

/** Plain JSON a breaker reports, and takes back through the `restore` option. */
export const breakerSnapshotSchema = z.object({
  name: z.string(),
  state: z.enum(breakerStates),
  /** The breaker's clock when the snapshot was taken. */
  time: z.number(),
  /** When an open breaker lets its first probe through (epoch ms). */
  retryAt: z.number().nullable(),
  /** Milliseconds until then: the time until half-open. */
  retryIn: z.number().nullable(),
  /** Opens since the breaker last closed by probes: what `openFor.multiplier` grows with. */
  opens: z.number().int().nonnegative(),
  consecutiveFailures: z.number().int().nonnegative(),
  /** Probes in flight and successful probes so far, in half-open. */
  probes: z.object({ inFlight: z.number().int().nonnegative(), succeeded: z.number().int().nonnegative() }),
  window: z.object({
    duration: z.number(),
    buckets: z.number(),
    /** Calls that reached the downstream and were counted: successes + failures. */
    calls: z.number().int().nonnegative(),
    successes: z.number().int().nonnegative(),
    failures: z.number().int().nonnegative(),
    /** Successes slower than `slowCall.duration`. */
    slow: z.number().int().nonnegative(),
    timeouts: z.number().int().nonnegative(),
    /** Calls refused while open; never counted as calls. */
    rejects: z.number().int().nonnegative(),
    fallbacks: z.number().int().nonnegative(),
    /** failures / calls, 0 with no calls. */
    failureRate: z.number(),
    slowCallRate: z.number(),
  }),
  /**
   * Latency of the calls in the window, in ms, from a fixed-size histogram (within ~20%). On the
   * real clock, past 32 calls a slice, from a random sample of one call in 8 (every call with a
   * `slowCall` rule or an outcome listener).
   */
  latency: z.object({ p50: z.number().nullable(), p95: z.number().nullable(), p99: z.number().nullable() }),
});

/** What `snapshot()` returns. */
export type BreakerSnapshot = z.output<typeof breakerSnapshotSchema>;

const openForGrowth = z
  .strictObject({
    /** How long the first open lasts, in ms. */
    initial: positiveDurationOption,
    /** Each further open in a row lasts this many times longer. @default 2 */
    multiplier: z.number().finite().min(1).default(2),
    /** The cap, in ms. */
    max: positiveDurationOption,
  })
  .refine((o) => o.max >= o.initial, { error: 'max must be >= initial', path: ['max'] });

/** Everything but the breaker's identity: what a registry shares among its breakers. */
export const breakerSettingsSchema = z.strictObject({
  /**
   * Opens when failures / calls in the window reach this ratio (0 < x <= 1), once
   * `minimumCalls` calls are in the window. Not allowed with `consecutiveFailures`.
   * @default 0.5
   */
  failureRateThreshold: ratio.optional(),
  /** Calls the window must hold before a rate can open the breaker. @default 10 */
  minimumCalls: z.number().int().positive().default(10),
  /** The rolling window the rates are measured over. @default { duration: 10_000, buckets: 10 } */
  window: z
    .strictObject({
      /** @default 10_000 */
      duration: positiveDurationOption.default(10_000),
      /** @default 10 */
      buckets: z.number().int().min(1).max(600).default(10),
    })
    .refine((w) => w.duration / w.buckets >= 1, {
      error: 'duration / buckets must be at least 1 ms',
      path: ['buckets'],
    })
    .prefault({}),
  /**
   * How long the breaker stays open before it lets probes through, in ms; or a growth rule for
   * repeated opens: `{ initial: 5_000, multiplier: 2, max: 300_000 }`.
   * @default 30_000
   */
  openFor: z.union([positiveDurationOption, openForGrowth]).default(30_000),
  /** Half-open: probes let through at once, and successful probes needed to close. */
  halfOpen: z
    .strictObject({
      /** Probes in flight at once; further calls are rejected. @default 1 */
      maxProbes: z.number().int().positive().default(1),
      /** Successful probes, one after another, that close the breaker. @default 1 */
      successesToClose: z.number().int().positive().default(1),
      /**
       * How long probes may stay out, ms. A call that comes later gives them up: the breaker
       * opens again (reason `halfOpenFailure`, code `E_PROBE_HUNG`) and their late answers are
       * not counted. Without it, a probe that never settles (a frozen downstream, no timeout
       * around it) would keep the breaker half-open, refusing every call, for good.
       * `false` waits for them however long (an explicit opt-in). @default 60000
       */
      maxWait: z.union([z.number().positive(), z.literal(false)]).default(60_000),
    })
    .prefault({}),
  /**
   * Successes slower than `duration` ms are slow; the breaker opens when slow / calls reaches
   * `rateThreshold`. A slow probe fails the half-open test. @default off
   */
  slowCall: z
    .strictObject({
      duration: positiveDurationOption,
      /** @default 0.5 */
      rateThreshold: ratio.default(0.5),
    })
    .optional(),
  /** Opens after this many failures in a row instead of on a failure rate. @default off */
  consecutiveFailures: z.number().int().positive().optional(),
  /**
   * Judges each settled call: `'failure'`, `'success'` or `'ignored'` (not counted at all).
   * @default defaultIsFailure: 4xx (but 408, 429) is a success, the caller's abort is ignored
   */
  isFailure: fnOption<IsFailure>().optional(),
  /**
   * Serves calls the breaker refuses: a value, or a function of the `BrokenCircuitError`
   * that returns one (or a promise of one). @default none: the call rejects
   */
  fallback: z.unknown().optional(),
  bus: busOption.optional(),
  clock: clockOption.optional(),
  /**
   * Where the breaker lists itself for `healthReport()`, the dashboard and the metrics packages
   * (until `dispose()`), or `false` not to. @default the process-wide `policies` of @holdfast/core
   */
  policies: policiesOption.optional(),
});

/** Validates the options of {@link circuitBreaker}; {@link CircuitBreakerOptions} is inferred from it. */
export const breakerOptionsSchema = breakerSettingsSchema
  .extend({
    /** Shown as `source` on every event. @default 'breaker' */
    name: nameOption.default('breaker'),
    /** A snapshot to start from, e.g. one saved before a restart, so the breaker starts open. */
    restore: breakerSnapshotSchema.optional(),
  })
  .superRefine(noRateWithConsecutive);

/** Options of `circuitBreaker()`. */
export type CircuitBreakerOptions = z.input<typeof breakerOptionsSchema>;
/** Options after parsing, defaults filled in. */
export type BreakerConfig = z.output<typeof breakerOptionsSchema>;
/** Options a registry shares among its breakers. */
export type BreakerSettings = z.input<typeof breakerSettingsSchema>;

export function noRateWithConsecutive(
  value: { failureRateThreshold?: number | undefined; consecutiveFailures?: number | undefined },
  ctx: z.RefinementCtx,
): void {
  if (value.consecutiveFailures !== undefined && value.failureRateThreshold !== undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['failureRateThreshold'],
      message: 'cannot be combined with consecutiveFailures (pick one rule)',
    });
  }
}

/** How long the breaker stays open on its `opens`-th open in a row (1 for the first). */
export function openDuration(openFor: BreakerConfig['openFor'], opens: number): number {
  if (typeof openFor === 'number') return openFor;
  return Math.min(openFor.max, openFor.initial * openFor.multiplier ** Math.max(0, opens - 1));
}

/** The state a breaker is in: `closed`, `open`, `halfOpen`, `isolated` (held open) or `disabled`. */
export type BreakerState = (typeof breakerStates)[number];
