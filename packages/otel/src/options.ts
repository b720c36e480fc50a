import { busOption, type PolicyRegistry } from '@holdfast/core';
import type { MeterProvider, TracerProvider } from '@opentelemetry/api';
import { z } from 'zod';

const hasFn = (name: string) => (v: unknown) =>
  typeof v === 'object' && v !== null && typeof (v as Record<string, unknown>)[name] === 'function';

/** Validates the options of {@link instrument}; {@link InstrumentOptions} is inferred from it. */
export const instrumentOptionsSchema = z.strictObject({
  /** The bus whose events become metrics and span events. @default the global bus */
  bus: busOption.optional(),
  /**
   * Where the metrics go.
   * @default the global MeterProvider (`metrics.getMeterProvider()`)
   */
  meterProvider: z.custom<MeterProvider>(hasFn('getMeter'), { error: 'must be a MeterProvider' }).optional(),
  /**
   * Where state changes seen outside any span get a span of their own. Call events always go on
   * the active span, whatever its provider.
   * @default the global TracerProvider (`trace.getTracerProvider()`)
   */
  tracerProvider: z.custom<TracerProvider>(hasFn('getTracer'), { error: 'must be a TracerProvider' }).optional(),
  /** Where the gauges read breaker, failover and budget snapshots. @default the process-wide registry */
  policies: z
    .custom<PolicyRegistry>(hasFn('snapshots'), { error: 'must be a PolicyRegistry (from createPolicyRegistry())' })
    .optional(),
  /** Whether to put events on spans. @default true */
  spans: z.boolean().default(true),
  /** Whether to record metrics. @default true */
  metrics: z.boolean().default(true),
  /**
   * Most distinct policy names at once in metric and span attributes. Past it, new names are reported as
   * `holdfast.policy.name="_other"` (one `HOLDFAST_METRICS_CARDINALITY` warning). A policy that
   * leaves the registry (disposed, or evicted from a breakerRegistry) frees its place and drops its counts.
   * @default 500
   */
  maxPolicies: z.number().int().min(1).max(100_000).default(500),
});

/** Options of {@link instrument}. */
export type InstrumentOptions = z.input<typeof instrumentOptionsSchema>;
