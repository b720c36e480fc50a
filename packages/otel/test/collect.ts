import { type Bus, createBus, createPolicyRegistry, type PolicyRegistry } from '@holdfast/core';
import type { Attributes } from '@opentelemetry/api';
import {
  AggregationTemporality,
  type DataPoint,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { instrument } from '../src/index.js';

/** One data point as the exporter got it. */
export interface Point {
  readonly attributes: Attributes;
  readonly value: number;
}

/**
 * instrument() on a bus of its own (or `bus`), spans off, into a MeterProvider that exports to
 * memory: `points(name)` collects now and returns that metric's data points (only this
 * collection's: the exporter is emptied first); `value(name, attributes)` the value of the one
 * whose attributes include those given. `close()` uninstruments and shuts the provider down.
 */
export function collectPoints(
  options: { bus?: Bus; policies?: PolicyRegistry; temporality?: AggregationTemporality; maxPolicies?: number } = {},
) {
  const bus = options.bus ?? createBus();
  const policies = options.policies ?? createPolicyRegistry();
  const exporter = new InMemoryMetricExporter(options.temporality ?? AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 60_000 });
  const meterProvider = new MeterProvider({ readers: [reader] });
  const stop = instrument({ bus, meterProvider, policies, spans: false, maxPolicies: options.maxPolicies });
  const points = async (name: string): Promise<Point[]> => {
    exporter.reset();
    await reader.forceFlush();
    return exporter
      .getMetrics()
      .flatMap((rm) => rm.scopeMetrics.flatMap((sm) => sm.metrics))
      .filter((m) => m.descriptor.name === name)
      .flatMap((m) => m.dataPoints as DataPoint<number>[])
      .map((p) => ({ attributes: p.attributes, value: p.value }));
  };
  const value = async (name: string, attributes: Attributes): Promise<number | undefined> =>
    (await points(name)).find((p) => Object.entries(attributes).every(([k, v]) => p.attributes[k] === v))?.value;
  const close = async () => {
    stop();
    await meterProvider.shutdown();
  };
  return { bus, policies, points, value, close };
}

/**
 * A MeterProvider that exports to memory, for tests that instrument on their own:
 * `points(name)` collects now and returns that metric's data points (this collection's only).
 */
export function memoryProvider() {
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 60_000 });
  const meterProvider = new MeterProvider({ readers: [reader] });
  const points = async (name: string) => {
    exporter.reset();
    await reader.forceFlush();
    return exporter
      .getMetrics()
      .flatMap((rm) => rm.scopeMetrics.flatMap((sm) => sm.metrics))
      .filter((m) => m.descriptor.name === name)
      .flatMap((m) => m.dataPoints as DataPoint<number>[]);
  };
  return { meterProvider, points };
}

/** A TracerProvider that keeps finished spans in memory; `named(name)` the finished spans of that name. */
export function tracing() {
  const spans = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
  const named = (name: string) => spans.getFinishedSpans().filter((s) => s.name === name);
  return { spans, tracerProvider, named, tracer: tracerProvider.getTracer('app') };
}
