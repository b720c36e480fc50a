import { busOption, type PolicyRegistry } from '@holdfast/core';
import type { OpenMetricsContentType, Registry } from 'prom-client';
import { z } from 'zod';

const hasFn = (name: string) => (v: unknown) =>
  typeof v === 'object' && v !== null && typeof (v as Record<string, unknown>)[name] === 'function';

/** Validates the options of {@link collect}; {@link CollectOptions} is inferred from it. */
export const collectOptionsSchema = z.strictObject({
  /** The bus whose events feed the counters and histograms. @default the global bus */
  bus: busOption.optional(),
  /**
   * The prom-client registry the metrics are registered on, Prometheus or OpenMetrics.
   * @default prom-client's global `register`
   */
  registry: z
    .custom<Registry | Registry<OpenMetricsContentType>>(hasFn('registerMetric'), {
      error: 'must be a prom-client Registry',
    })
    .optional(),
  /** Where the gauges read breaker, failover and budget snapshots at scrape time. @default the process-wide registry */
  policies: z
    .custom<PolicyRegistry>(hasFn('snapshots'), { error: 'must be a PolicyRegistry (from createPolicyRegistry())' })
    .optional(),
  /** Put before every metric name. @default 'holdfast_' */
  prefix: z
    .string()
    .regex(/^[a-zA-Z_:][a-zA-Z0-9_:]*$/, { error: 'must be a valid Prometheus metric name prefix' })
    .default('holdfast_'),
  /** Histogram buckets, in seconds. @default 1 ms to 30 s */
  buckets: z
    .array(z.number().finite().positive())
    .min(1)
    // prom-client takes them as given: out of order, a bucket counts less than the one before; repeated, a series twice.
    .refine((b) => b.every((x, i) => i === 0 || x > (b[i - 1] as number)), {
      error: 'must be in increasing order, each once',
    })
    .default([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]),
  /**
   * Most distinct `policy` label values at once. Past it, new names are reported as
   * `policy="_other"` (one `HOLDFAST_METRICS_CARDINALITY` warning). A policy that leaves the
   * registry (disposed, or evicted from a breakerRegistry) frees its place and drops its series.
   * @default 500
   */
  maxPolicies: z.number().int().min(1).max(100_000).default(500),
});

/** Options of {@link collect}. */
export type CollectOptions = z.input<typeof collectOptionsSchema>;

/** Options of {@link collect} as parsed, defaults filled in. */
export type ParsedCollectOptions = z.output<typeof collectOptionsSchema>;

/** A prom-client registry of either content type. */
export type AnyRegistry = NonNullable<CollectOptions['registry']>;
