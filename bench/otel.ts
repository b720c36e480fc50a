/**
 * What observing costs a call: one async call that emits what a breaker emits on success
 * (`breaker.success` with its latency), with nobody listening, with @holdfast/otel on the
 * OpenTelemetry SDK, with @holdfast/prometheus on prom-client, with the dashboard, and with all.
 */
import { createBus, createPolicyRegistry, type HoldfastEvent } from '@holdfast/core';
import { dashboard } from '@holdfast/dashboard';
import { instrument } from '@holdfast/otel';
import { collect } from '@holdfast/prometheus';
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import { Registry } from 'prom-client';
import { compare } from './harness.js';

type Observer = 'otel' | 'prometheus' | 'dashboard';

export async function benchOtel(): Promise<void> {
  const op = async () => 1;
  const stops: (() => void)[] = [];
  const observed = (...observers: Observer[]) => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    if (observers.includes('otel')) {
      // A reader, so the SDK really aggregates (it never exports during the run).
      const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
      const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
      const meterProvider = new MeterProvider({ readers: [reader] });
      stops.push(instrument({ bus, policies, meterProvider }), () => void meterProvider.shutdown());
    }
    if (observers.includes('prometheus')) stops.push(collect({ bus, policies, registry: new Registry() }));
    if (observers.includes('dashboard')) {
      const dash = dashboard({ bus, policies });
      stops.push(() => dash.close());
    }
    let n = 0;
    return async () => {
      const value = await op();
      if (bus.wants('breaker.success')) {
        bus.emit({ type: 'breaker.success', source: 'payments', time: 0, latency: n++ % 250 } as HoldfastEvent);
      }
      return value;
    };
  };
  await compare({
    title: 'otel, prometheus, dashboard: per call (an async call that emits breaker.success)',
    baseline: 'nobody listens',
    variants: [
      { name: 'nobody listens', call: observed() },
      { name: '@holdfast/otel (SDK MeterProvider)', call: observed('otel') },
      { name: '@holdfast/prometheus (prom-client)', call: observed('prometheus') },
      { name: '@holdfast/dashboard (its bus listener)', call: observed('dashboard') },
      { name: 'all three', call: observed('otel', 'prometheus', 'dashboard') },
    ],
  });
  for (const stop of stops) stop();
}
