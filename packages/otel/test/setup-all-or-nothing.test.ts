/**
 * instrument() sets up in parts: the event metrics, chaos and limit metrics (each a batch
 * callback on the meter), the span listeners, the policy registry's listener. A meter or tracer
 * provider of the user's that throws halfway left the callbacks already added on the meter and
 * the provider marked as instrumented: the error went out, and the metrics of a listener gone
 * were still collected. Now it leaves nothing behind, and an instrument() again works.
 */
import { createBus, createPolicyRegistry, type HoldfastEvent } from '@holdfast/core';
import type { BatchObservableCallback, Meter, MeterProvider, Observable, TracerProvider } from '@opentelemetry/api';
import { MeterProvider as SdkMeterProvider } from '@opentelemetry/sdk-metrics';
import { describe, expect, it } from 'vitest';
import { instrument, metricNames } from '../src/index.js';
import { collectPoints } from './collect.js';

/** A meter provider over the SDK's that counts batch callbacks on, and throws creating `failing`. */
function flakyMeterProvider(failing: string | undefined) {
  const sdk = new SdkMeterProvider();
  const callbacks = new Set<BatchObservableCallback>();
  const provider: MeterProvider = {
    getMeter(name, version) {
      const meter = sdk.getMeter(name, version);
      const create =
        <K extends 'createObservableCounter' | 'createObservableGauge' | 'createObservableUpDownCounter'>(kind: K) =>
        (instrument: string, options?: object) => {
          if (instrument === failing) throw new Error('meter down');
          return meter[kind](instrument, options);
        };
      return {
        ...meter,
        createHistogram: meter.createHistogram.bind(meter),
        createObservableCounter: create('createObservableCounter'),
        createObservableGauge: create('createObservableGauge'),
        createObservableUpDownCounter: create('createObservableUpDownCounter'),
        addBatchObservableCallback(callback: BatchObservableCallback, observables: Observable[]) {
          callbacks.add(callback);
          meter.addBatchObservableCallback(callback, observables);
        },
        removeBatchObservableCallback(callback: BatchObservableCallback, observables: Observable[]) {
          callbacks.delete(callback);
          meter.removeBatchObservableCallback(callback, observables);
        },
      } as Meter;
    },
  };
  return { provider, callbacks, shutdown: () => sdk.shutdown() };
}

describe('instrument() that throws halfway leaves nothing behind', () => {
  it('a meter that throws on the limit metrics: the event and chaos callbacks go, no listener stays, and the provider takes another', async () => {
    const bus = createBus();
    const flaky = flakyMeterProvider(metricNames.limitRejections);
    try {
      expect(() => instrument({ bus, meterProvider: flaky.provider, policies: createPolicyRegistry() })).toThrow(
        'meter down',
      );
      expect(flaky.callbacks.size).toBe(0);
      expect(bus.wants('breaker.success')).toBe(false);
      expect(bus.wants('chaos.toxic')).toBe(false);
    } finally {
      await flaky.shutdown();
    }
    // Not refused with "already has holdfast metrics of this bus".
    const ok = flakyMeterProvider(undefined);
    const stop = instrument({ bus, meterProvider: ok.provider, policies: createPolicyRegistry() });
    expect(ok.callbacks.size).toBe(3);
    stop();
    expect(ok.callbacks.size).toBe(0);
    await ok.shutdown();
  });

  it('a tracer provider that throws: the metrics set up before it go, and the meter provider takes the bus again', async () => {
    const bus = createBus();
    const flaky = flakyMeterProvider(undefined);
    const tracerProvider: TracerProvider = {
      getTracer() {
        throw new Error('tracing down');
      },
    };
    const policies = createPolicyRegistry();
    expect(() => instrument({ bus, meterProvider: flaky.provider, tracerProvider, policies })).toThrow('tracing down');
    expect(flaky.callbacks.size).toBe(0);
    expect(bus.wants('breaker.success')).toBe(false);
    const stop = instrument({ bus, meterProvider: flaky.provider, policies, spans: false });
    expect(flaky.callbacks.size).toBe(3);
    stop();
    await flaky.shutdown();
  });

  it('a policy registry whose onUnregister throws: the listeners and callbacks put on go', async () => {
    const bus = createBus();
    const flaky = flakyMeterProvider(undefined);
    const policies = Object.assign(createPolicyRegistry(), {
      onUnregister() {
        throw new Error('registry down');
      },
    });
    expect(() => instrument({ bus, meterProvider: flaky.provider, policies })).toThrow('registry down');
    expect(flaky.callbacks.size).toBe(0);
    expect(bus.wants('breaker.open')).toBe(false);
    await flaky.shutdown();
  });
});

describe('attribute sets are told apart exactly', () => {
  const ev = (e: Record<string, unknown>) => ({ time: 1, source: 'pay', ...e }) as unknown as HoldfastEvent;

  it('values with \\u0000 in them are two series, not one counted twice', async () => {
    const m = collectPoints();
    try {
      // Joined with \u0000, both are `pay\0x\0y\0z`.
      m.bus.emit(ev({ type: 'failover.switch', from: undefined, reason: 'x\u0000y', to: 'z' }));
      m.bus.emit(ev({ type: 'failover.switch', from: undefined, reason: 'x', to: 'y\u0000z' }));
      m.bus.emit(ev({ type: 'chaos.inject', source: 'a', kind: 'b\u0000c' }));
      m.bus.emit(ev({ type: 'chaos.inject', source: 'a\u0000b', kind: 'c' }));
      expect((await m.points(metricNames.failoverSwitches)).map((p) => p.value)).toEqual([1, 1]);
      expect((await m.points(metricNames.chaosInjections)).map((p) => p.value)).toEqual([1, 1]);
    } finally {
      await m.close();
    }
  });
});
