/**
 * What grows without bound in a service that runs for weeks: each `it` is a leak a soak run
 * found (scripts driving each package for minutes, sampled after forced GC), shrunk to a
 * bounded count that fails without its fix. Counts, never timings.
 *
 * npx vitest run test/soak-leaks.test.ts
 */

import { breakerRegistry } from '@holdfast/breaker';
import { createBus, createPolicyRegistry } from '@holdfast/core';
import { attributeNames, instrument, metricNames } from '@holdfast/otel';
import { collect } from '@holdfast/prometheus';
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';

describe('per-host breakers that come and go (breakerRegistry eviction), watched by the exporters', () => {
  /**
   * 300 hosts through a registry of 10, each with a call still running when its breaker is
   * evicted, the calls settling afterwards. Soak: with maxKeys 200 and maxPolicies 500, the
   * Prometheus label set held 500 names (300 of them dead) within 10,000 calls, and every
   * breaker made after that was reported as `_other`.
   */
  async function churn(bus: ReturnType<typeof createBus>, policies: ReturnType<typeof createPolicyRegistry>) {
    const hosts = breakerRegistry({ name: 'hosts', bus, policies, maxKeys: 10 });
    const settle: (() => void)[] = [];
    const running: Promise<unknown>[] = [];
    for (let i = 0; i < 300; i++) {
      const call = () =>
        new Promise<string>((resolve, reject) =>
          settle.push(() => (i % 2 ? resolve('ok') : reject(new Error('ECONNRESET')))),
        );
      running.push(hosts.execute(`host-${i}`, call).catch(() => undefined));
    }
    for (const done of settle) done();
    await Promise.all(running);
    return hosts;
  }

  const policyLabels = (text: string) => new Set([...text.matchAll(/policy="([^"]*)"/g)].map((m) => m[1]));

  it('Prometheus: the labels are those of the breakers held, not of every host a call outlived', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const registry = new Registry();
    const stop = collect({ bus, policies, registry, maxPolicies: 50 });
    const hosts = await churn(bus, policies);
    const labels = policyLabels(await registry.metrics());
    expect(labels.has('_other')).toBe(false);
    expect(labels.size).toBe(hosts.size);
    hosts.dispose();
    expect(policyLabels(await registry.metrics()).size).toBe(0);
    stop();
  });

  it('OpenTelemetry: the call counters are those of the breakers held', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
    const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
    const meterProvider = new MeterProvider({ readers: [reader] });
    const stop = instrument({ bus, policies, meterProvider, spans: false, maxPolicies: 50 });
    const hosts = await churn(bus, policies);
    await reader.forceFlush();
    const calls = exporter
      .getMetrics()
      .flatMap((rm) => rm.scopeMetrics.flatMap((sm) => sm.metrics))
      .filter((m) => m.descriptor.name === metricNames.breakerCalls)
      .flatMap((m) => m.dataPoints);
    const names = new Set(calls.map((p) => p.attributes[attributeNames.policy]));
    expect(names.has('_other')).toBe(false);
    expect(names.size).toBe(hosts.size);
    stop();
    hosts.dispose();
    await meterProvider.shutdown();
  });
});
