/**
 * Two instrument()s of one bus, a MeterProvider each (one per backend), both with spans on: every
 * span event went on the call's span twice, and a state change got two root spans. Span events
 * go on the active span whatever the tracer provider, so they come once per bus: the first
 * instrument() still running makes them, the others add metrics only and take over when it
 * stops; one with another tracer provider is refused. And without `meterProvider`, an
 * instrument() made before the SDK registers its global MeterProvider reports to it once it does.
 */
import { createBus, createPolicyRegistry, HoldfastConfigError, type HoldfastEvent } from '@holdfast/core';
import { context, metrics } from '@opentelemetry/api';
import type { Histogram } from '@opentelemetry/sdk-metrics';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlsContextManager } from '../../../test/support/otel-recorder.js';
import { instrument, metricNames } from '../src/index.js';
import { memoryProvider, tracing } from './collect.js';

beforeAll(() => {
  context.setGlobalContextManager(new AlsContextManager());
});
afterAll(() => {
  context.disable();
});

const ev = (e: Record<string, unknown>) =>
  ({ time: 1_700_000_000_000, source: 'pay', ...e }) as unknown as HoldfastEvent;
const open = ev({ type: 'breaker.open', reason: 'manual', failureRate: 0, retryAt: undefined });

describe('spans once per bus', () => {
  it('the second instrument() adds metrics only, and takes the spans over when the first stops', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const t = tracing();
    const a = memoryProvider();
    const b = memoryProvider();
    const stopA = instrument({ bus, policies, tracerProvider: t.tracerProvider, meterProvider: a.meterProvider });
    const stopB = instrument({ bus, policies, tracerProvider: t.tracerProvider, meterProvider: b.meterProvider });
    try {
      bus.emit(open);
      expect(t.named('holdfast.breaker.open')).toHaveLength(1);
      stopA();
      bus.emit(open);
      expect(t.named('holdfast.breaker.open')).toHaveLength(2);
      // Each backend has its metrics all along.
      expect((await b.points(metricNames.breakerTransitions)).map((p) => p.value)).toEqual([2]);
      stopB();
      bus.emit(open);
      expect(t.named('holdfast.breaker.open')).toHaveLength(2);
      expect(bus.wants('breaker.open')).toBe(false);
    } finally {
      stopA();
      stopB();
      await t.tracerProvider.shutdown();
    }
  });

  it('one with another tracer provider is refused, naming it; with spans off it is taken', () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const stop = instrument({ bus, policies, tracerProvider: tracing().tracerProvider, metrics: false });
    try {
      const other = tracing().tracerProvider;
      const again = () => instrument({ bus, policies, tracerProvider: other, metrics: false });
      expect(again).toThrow(HoldfastConfigError);
      expect(again).toThrow(/^instrument: tracerProvider is not the one this bus's spans go to/);
      instrument({ bus, policies, tracerProvider: other, spans: false, metrics: false })();
      // Another bus has spans of its own.
      instrument({ bus: createBus(), policies, tracerProvider: other, metrics: false })();
    } finally {
      stop();
    }
    // Once the first is stopped, the bus takes another tracer provider.
    instrument({ bus, policies, tracerProvider: tracing().tracerProvider, metrics: false })();
  });
});

describe('without meterProvider, made before the SDK registers its global one', () => {
  it('records to it from the first event after it is registered, once even beside an instrument() given it', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const early = instrument({ bus, policies, spans: false });
    const sdk = memoryProvider();
    const given = instrument({ bus, policies, spans: false, meterProvider: sdk.meterProvider });
    const count = async () =>
      ((await sdk.points(metricNames.breakerCallDuration))[0]?.value as Histogram | undefined)?.count;
    try {
      metrics.setGlobalMeterProvider(sdk.meterProvider);
      bus.emit(ev({ type: 'breaker.success', latency: 5 }));
      // The one given the provider records; the early one leaves it to it: counted once.
      expect(await count()).toBe(1);
      given();
      bus.emit(ev({ type: 'breaker.success', latency: 5 }));
      expect(await count()).toBe(2);
    } finally {
      early();
      given();
      metrics.disable();
      await sdk.meterProvider.shutdown();
    }
  });
});
