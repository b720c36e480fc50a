import { faultProxy, injectFault, injectLatency } from '@holdfast/chaos';
import { createBus, createPolicyRegistry } from '@holdfast/core';
import {
  AggregationTemporality,
  type DataPoint,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import { describe, expect, it } from 'vitest';
import { instrument, metricNames } from '../src/index.js';

describe('instrument(): faults injected on purpose are counted apart', () => {
  it('counts injections by kind and the proxy toxics on now', async () => {
    const bus = createBus();
    const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
    const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 60_000 });
    const meterProvider = new MeterProvider({ readers: [reader] });
    const stop = instrument({ bus, meterProvider, policies: createPolicyRegistry(), spans: false });
    const proxy = await faultProxy({ target: { port: 1 }, bus, name: 'redis-proxy' });
    try {
      const points = async (name: string) => {
        exporter.reset();
        await reader.forceFlush();
        return exporter
          .getMetrics()
          .flatMap((rm) => rm.scopeMetrics.flatMap((sm) => sm.metrics))
          .filter((m) => m.descriptor.name === name)
          .flatMap((m) => m.dataPoints as DataPoint<number>[])
          .map((p) => ({ attributes: p.attributes, value: p.value }));
      };
      const flaky = injectFault({ enabled: true, bus, name: 'flaky' });
      for (let i = 0; i < 4; i++) await flaky.execute(() => 1).catch(() => {});
      await injectLatency({ latency: 1, enabled: true, bus, name: 'flaky' }).execute(() => 1);
      proxy.add({ type: 'latency', latency: 5, name: 'a' });
      proxy.add({ type: 'latency', latency: 5, name: 'b' });
      proxy.add({ type: 'blackhole', name: 'c' }).remove();

      expect(await points(metricNames.chaosInjections)).toEqual([
        { attributes: { 'holdfast.policy.name': 'flaky', 'holdfast.chaos.kind': 'fault' }, value: 4 },
        { attributes: { 'holdfast.policy.name': 'flaky', 'holdfast.chaos.kind': 'latency' }, value: 1 },
      ]);
      expect(await points(metricNames.chaosToxicsActive)).toEqual([
        { attributes: { 'holdfast.policy.name': 'redis-proxy', 'holdfast.chaos.toxic': 'latency' }, value: 2 },
        { attributes: { 'holdfast.policy.name': 'redis-proxy', 'holdfast.chaos.toxic': 'blackhole' }, value: 0 },
      ]);
    } finally {
      stop();
      await proxy.close();
      await meterProvider.shutdown();
    }
  });
});
