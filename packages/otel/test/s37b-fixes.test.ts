/**
 * Pins the s37b fixes beyond the review's own tests: what an instrument() made before the SDK
 * registered keeps while it waits goes along when it binds (a limiter's limit, toxics on, anomaly
 * scores, counts); one waiting on a bus's place takes it as soon as the other stops (its gauges
 * exported with no event after); the spans' tracer provider is compared through the global proxy
 * whenever the SDK registers; keys tell apart what the SDK tells apart.
 */
import { createBus, createPolicyRegistry, HoldfastConfigError, type HoldfastEvent } from '@holdfast/core';
import { metrics, trace } from '@opentelemetry/api';
import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import { afterEach, describe, expect, it } from 'vitest';
import { instrument, metricNames } from '../src/index.js';
import { memoryProvider } from './collect.js';

afterEach(() => {
  metrics.disable();
  trace.disable();
});

const ev = (e: Record<string, unknown>) =>
  ({ time: 1_700_000_000_000, source: 'pay', ...e }) as unknown as HoldfastEvent;

describe('instrument() before the SDK registers: what it kept goes along', () => {
  it("a limiter's limit, toxics on, anomaly scores and counts from before are exported at the first collection", async () => {
    const bus = createBus();
    const stop = instrument({ bus, policies: createPolicyRegistry(), spans: false });
    const sdk = memoryProvider();
    try {
      bus.emit(ev({ type: 'concurrency.limit', algorithm: 'aimd', from: 10, to: 12 }));
      bus.emit(ev({ type: 'chaos.toxic', source: 'redis-proxy', toxic: 'latency', name: 'slow', active: true }));
      bus.emit(ev({ type: 'anomaly.score', key: 'checkout', score: 0.7, metrics: [] }));
      bus.emit(ev({ type: 'breaker.success', latency: 5 }));
      metrics.setGlobalMeterProvider(sdk.meterProvider);
      expect((await sdk.points(metricNames.concurrencyLimit)).map((p) => p.value)).toEqual([12]);
      expect((await sdk.points(metricNames.chaosToxicsActive)).map((p) => p.value)).toEqual([1]);
      expect((await sdk.points(metricNames.anomalyScore)).map((p) => p.value)).toEqual([0.7]);
      expect((await sdk.points(metricNames.breakerCalls)).map((p) => p.value)).toEqual([1]);
    } finally {
      stop();
      await sdk.meterProvider.shutdown();
    }
  });

  it("one waiting for its bus's place on the global provider takes it when the other stops, with no event after", async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    let state = 'open';
    policies.register('breaker', 'pay', { snapshot: () => ({ name: 'pay', state }) });
    const sdk = memoryProvider();
    // The SDK's provider given to one, the other made before the SDK registers it: it waits.
    const first = instrument({ bus, policies, meterProvider: sdk.meterProvider, spans: false });
    const second = instrument({ bus, policies, spans: false });
    metrics.setGlobalMeterProvider(sdk.meterProvider);
    try {
      const value = async (which: string) =>
        (await sdk.points(metricNames.breakerState)).find((p) => p.attributes['holdfast.breaker.state'] === which)
          ?.value;
      expect(await value('open')).toBe(1);
      first();
      // Observed by the second now (the SDK would export the first's last values for good).
      state = 'closed';
      expect(await value('closed')).toBe(1);
      expect(await value('open')).toBe(0);
    } finally {
      first();
      second();
      await sdk.meterProvider.shutdown();
    }
  });

  it('a stop() that throws (the meter cannot take its callbacks off) is spent: a second does nothing', async () => {
    const bus = createBus();
    const sdk = memoryProvider();
    const meter = sdk.meterProvider.getMeter('x');
    const meterProvider = {
      getMeter: () =>
        Object.assign(Object.create(meter) as typeof meter, {
          removeBatchObservableCallback: () => {
            throw new Error('meter gone');
          },
        }),
    };
    const stop = instrument({ bus, policies: createPolicyRegistry(), meterProvider, spans: false });
    expect(stop).toThrow('meter gone');
    expect(stop).not.toThrow();
    expect(bus.wants('breaker.success')).toBe(false);
    await sdk.meterProvider.shutdown();
  });
});

describe('spans once per bus: the global proxy and the SDK provider under it', () => {
  it('the proxy taken before the SDK registered, then the SDK provider given: one, once registered', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const first = instrument({ bus, policies, metrics: false });
    const sdk = new BasicTracerProvider();
    try {
      // Not registered yet: the proxy's spans go nowhere, the SDK's somewhere.
      expect(() => instrument({ bus, policies, metrics: false, tracerProvider: sdk })).toThrow(HoldfastConfigError);
      trace.setGlobalTracerProvider(sdk);
      instrument({ bus, policies, metrics: false, tracerProvider: sdk })();
    } finally {
      first();
      await sdk.shutdown();
    }
  });
});

describe('exact keys', () => {
  it('true and "true", undefined and "undefined" are two rows, as the SDK has two series', async () => {
    const bus = createBus();
    const sdk = memoryProvider();
    const stop = instrument({ bus, policies: createPolicyRegistry(), meterProvider: sdk.meterProvider, spans: false });
    try {
      for (const trigger of [true, 'true', undefined, 'undefined', 'undefined']) {
        bus.emit(ev({ type: 'hedge.attempt', attempt: 1, delay: 5, trigger }));
      }
      const points = await sdk.points(metricNames.hedgeAttempts);
      expect(points.map((p) => p.value).sort()).toEqual([1, 1, 1, 2]);
    } finally {
      stop();
      await sdk.meterProvider.shutdown();
    }
  });
});
