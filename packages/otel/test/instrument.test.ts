import { AsyncResource } from 'node:async_hooks';
import {
  type Bus,
  createBus,
  createPolicyRegistry,
  HoldfastConfigError,
  type HoldfastEvent,
  type JsonValue,
  ManualClock,
  type PolicyRegistry,
  TimeoutError,
  timeout,
} from '@holdfast/core';
import { context, trace } from '@opentelemetry/api';
import {
  AggregationTemporality,
  type DataPoint,
  type Histogram,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AlsContextManager } from '../../../test/support/otel-recorder.js';
import { instrument, metricNames } from '../src/index.js';

beforeAll(() => {
  context.setGlobalContextManager(new AlsContextManager());
});
afterAll(() => {
  context.disable();
});

interface Setup {
  bus: Bus;
  policies: PolicyRegistry;
  spans: InMemorySpanExporter;
  tracerProvider: BasicTracerProvider;
  meterProvider: MeterProvider;
  /** Collects now and returns the data points of one metric. */
  points(name: string): Promise<DataPoint<unknown>[]>;
  stop(): void;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

function setup(options: { maxPolicies?: number } = {}): Setup {
  const bus = createBus();
  const policies = createPolicyRegistry();
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 60_000 });
  const meterProvider = new MeterProvider({ readers: [reader] });
  const spans = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
  const stop = instrument({ bus, meterProvider, tracerProvider, policies, ...options });
  cleanups.push(
    stop,
    () => meterProvider.shutdown(),
    () => tracerProvider.shutdown(),
  );
  return {
    bus,
    policies,
    spans,
    tracerProvider,
    meterProvider,
    stop,
    async points(name) {
      exporter.reset();
      await reader.forceFlush();
      const metrics = exporter.getMetrics().flatMap((rm) => rm.scopeMetrics.flatMap((sm) => sm.metrics));
      return metrics.filter((m) => m.descriptor.name === name).flatMap((m) => m.dataPoints as DataPoint<unknown>[]);
    },
  };
}

const at = 1_700_000_000_000;
const ev = (e: Record<string, unknown>) => ({ source: 'payments', time: at, ...e }) as unknown as HoldfastEvent;
const pointValue = (points: DataPoint<unknown>[], attrs: Record<string, string>) =>
  points.find((p) => Object.entries(attrs).every(([k, v]) => p.attributes[k] === v))?.value;

describe('instrument(): metrics', () => {
  it('counts breaker calls by outcome and records their latency in seconds', async () => {
    const s = setup();
    s.bus.emit(ev({ type: 'breaker.success', latency: 120 }));
    s.bus.emit(ev({ type: 'breaker.success', latency: 80 }));
    s.bus.emit(ev({ type: 'breaker.failure', latency: 300, code: 'ECONNRESET' }));
    s.bus.emit(ev({ type: 'breaker.reject', state: 'open', retryAt: at + 5000 }));

    const calls = await s.points(metricNames.breakerCalls);
    expect(pointValue(calls, { 'holdfast.policy.name': 'payments', 'holdfast.outcome': 'success' })).toBe(2);
    expect(pointValue(calls, { 'holdfast.outcome': 'failure', 'error.type': 'ECONNRESET' })).toBe(1);
    expect(pointValue(calls, { 'holdfast.outcome': 'rejected' })).toBe(1);

    const latency = await s.points(metricNames.breakerCallDuration);
    const ok = pointValue(latency, { 'holdfast.outcome': 'success' }) as Histogram;
    expect(ok.count).toBe(2);
    expect(ok.sum).toBeCloseTo(0.2);
  });

  it('a call whose wall-clock latency is negative (the clock stepped back during it) is recorded at 0, not dropped', async () => {
    const s = setup();
    s.bus.emit(ev({ type: 'breaker.success', latency: 40 }));
    // What a breaker on the real clock emits when NTP steps the clock back an hour mid-call.
    s.bus.emit(ev({ type: 'breaker.success', latency: -3_599_999 }));
    const latency = await s.points(metricNames.breakerCallDuration);
    const ok = pointValue(latency, { 'holdfast.outcome': 'success' }) as Histogram;
    expect(ok.count).toBe(2);
    expect(ok.sum).toBeCloseTo(0.04);
  });

  it('counts retries and records their backoff delay; counts give-ups by reason and idempotency events', async () => {
    const s = setup();
    s.bus.emit(ev({ type: 'retry.attempt', source: 'api', attempt: 1, delay: 100, code: 'E_TIMEOUT' }));
    s.bus.emit(ev({ type: 'retry.attempt', source: 'api', attempt: 2, delay: 400, code: 'E_TIMEOUT' }));
    s.bus.emit(ev({ type: 'retry.giveUp', source: 'api', attempts: 3, reason: 'maxAttempts', code: 'E_TIMEOUT' }));
    s.bus.emit(ev({ type: 'retry.budgetExhausted', source: 'api', attempt: 1, code: undefined }));
    s.bus.emit(ev({ type: 'idempotency.replay', source: 'orders', key: 'k1', createdAt: 0 }));
    s.bus.emit(ev({ type: 'idempotency.storeError', source: 'orders', key: 'k2', code: 'ECONNREFUSED' }));

    expect(pointValue(await s.points(metricNames.retryAttempts), { 'error.type': 'E_TIMEOUT' })).toBe(2);
    const delay = pointValue(await s.points(metricNames.retryDelay), { 'holdfast.policy.name': 'api' }) as Histogram;
    expect(delay.count).toBe(2);
    expect(delay.sum).toBeCloseTo(0.5);
    expect(pointValue(await s.points(metricNames.retryGiveUps), { 'holdfast.retry.reason': 'maxAttempts' })).toBe(1);
    expect(pointValue(await s.points(metricNames.retryBudgetRejections), { 'holdfast.policy.name': 'api' })).toBe(1);
    const idempotency = await s.points(metricNames.idempotencyEvents);
    expect(pointValue(idempotency, { 'holdfast.idempotency.event': 'replay' })).toBe(1);
    expect(pointValue(idempotency, { 'holdfast.idempotency.event': 'store_error' })).toBe(1);
  });

  it('reports breaker state as a gauge: from registered snapshots at collection, else the last transition', async () => {
    const s = setup();
    const breaker = {
      state: 'open' as string,
      snapshot: (): JsonValue => ({ name: 'payments', state: breaker.state }),
    };
    s.policies.register('breaker', 'payments', breaker);
    s.bus.emit(ev({ type: 'breaker.open', source: 'search', reason: 'failureRate', failureRate: 0.7, retryAt: at }));

    let state = await s.points(metricNames.breakerState);
    expect(pointValue(state, { 'holdfast.policy.name': 'payments', 'holdfast.breaker.state': 'open' })).toBe(1);
    expect(pointValue(state, { 'holdfast.policy.name': 'payments', 'holdfast.breaker.state': 'closed' })).toBe(0);
    expect(pointValue(state, { 'holdfast.policy.name': 'search', 'holdfast.breaker.state': 'open' })).toBe(1);

    breaker.state = 'closed';
    s.bus.emit(ev({ type: 'breaker.close', source: 'search', reason: 'probes' }));
    state = await s.points(metricNames.breakerState);
    expect(pointValue(state, { 'holdfast.policy.name': 'payments', 'holdfast.breaker.state': 'open' })).toBe(0);
    expect(pointValue(state, { 'holdfast.policy.name': 'payments', 'holdfast.breaker.state': 'closed' })).toBe(1);
    expect(pointValue(state, { 'holdfast.policy.name': 'search', 'holdfast.breaker.state': 'closed' })).toBe(1);
    const opened = await s.points(metricNames.breakerTransitions);
    expect(pointValue(opened, { 'holdfast.policy.name': 'search', 'holdfast.breaker.state': 'open' })).toBe(1);
  });

  it('a breaker disposed while a failover set of its name stays takes its last state along (it stayed open)', async () => {
    const s = setup();
    const breaker = { snapshot: (): JsonValue => ({ name: 'orders-db', state: 'closed' }) };
    const set = { snapshot: (): JsonValue => ({ endpoints: [] }) };
    s.policies.register('failover', 'orders-db', set);
    s.bus.emit(ev({ type: 'breaker.open', source: 'orders-db', reason: 'failureRate', failureRate: 0.7, retryAt: at }));
    const unregister = s.policies.register('breaker', 'orders-db', breaker);
    let state = await s.points(metricNames.breakerState);
    expect(pointValue(state, { 'holdfast.policy.name': 'orders-db', 'holdfast.breaker.state': 'closed' })).toBe(1);
    unregister();
    state = await s.points(metricNames.breakerState);
    // The SDK may keep a cumulative gauge's last reading of the snapshot (closed); the bus's open is gone.
    expect(pointValue(state, { 'holdfast.policy.name': 'orders-db', 'holdfast.breaker.state': 'open' })).not.toBe(1);
  });

  it('reports failover endpoints (up, in flight) and budget balance from snapshots', async () => {
    const s = setup();
    const set = {
      snapshot: (): JsonValue => ({
        name: 'db',
        endpoints: [
          { name: 'primary', role: 'active', health: 'unhealthy', available: false, inFlight: 0 },
          { name: 'replica', role: 'standby', health: 'healthy', available: true, inFlight: 3 },
        ],
      }),
    };
    const budget = { snapshot: (): JsonValue => ({ name: 'shared', balance: 7, refused: 2 }) };
    s.policies.register('failover', 'db', set);
    s.policies.register('budget', 'shared', budget);

    const up = await s.points(metricNames.failoverEndpointUp);
    expect(pointValue(up, { 'holdfast.endpoint.name': 'primary' })).toBe(0);
    expect(pointValue(up, { 'holdfast.endpoint.name': 'replica' })).toBe(1);
    expect(
      pointValue(await s.points(metricNames.failoverEndpointInFlight), { 'holdfast.endpoint.name': 'replica' }),
    ).toBe(3);
    expect(pointValue(await s.points(metricNames.retryBudgetBalance), { 'holdfast.policy.name': 'shared' })).toBe(7);
  });

  it('stops counting, and stops listening, once disposed', async () => {
    const s = setup();
    s.bus.emit(ev({ type: 'breaker.reject', state: 'open', retryAt: undefined }));
    expect(pointValue(await s.points(metricNames.breakerCalls), { 'holdfast.outcome': 'rejected' })).toBe(1);
    s.stop();
    s.stop();
    expect(s.bus.wants('breaker.reject')).toBe(false);
    s.bus.emit(ev({ type: 'breaker.reject', state: 'open', retryAt: undefined }));
    expect(pointValue(await s.points(metricNames.breakerCalls), { 'holdfast.outcome': 'rejected' })).toBe(1);
  });
});

describe('instrument(): one per MeterProvider', () => {
  it('a second instrument() on a MeterProvider already instrumented throws, naming it: the histograms would count every call twice', async () => {
    const s = setup();
    const again = () => instrument({ bus: s.bus, meterProvider: s.meterProvider, spans: false });
    expect(again).toThrow(
      'instrument: meterProvider already has holdfast metrics of this bus; stop the other instrument() first',
    );
    s.bus.emit(ev({ type: 'breaker.success', latency: 5 }));
    const duration = (await s.points(metricNames.breakerCallDuration))[0] as DataPoint<Histogram> | undefined;
    expect(duration?.value.count).toBe(1);
    // Once the first is stopped, the provider takes another.
    s.stop();
    again()();
  });

  it('a second instrument() of another bus on the same MeterProvider is taken: each bus is counted once', async () => {
    const s = setup();
    const other = createBus();
    cleanups.push(instrument({ bus: other, meterProvider: s.meterProvider, spans: false }));
    s.bus.emit(ev({ type: 'breaker.success', latency: 5 }));
    other.emit(ev({ type: 'breaker.success', source: 'search', latency: 5 }));
    const calls = await s.points(metricNames.breakerCalls);
    expect(pointValue(calls, { 'holdfast.policy.name': 'payments' })).toBe(1);
    expect(pointValue(calls, { 'holdfast.policy.name': 'search' })).toBe(1);
    const duration = await s.points(metricNames.breakerCallDuration);
    expect(duration.map((p) => (p as DataPoint<Histogram>).value.count)).toEqual([1, 1]);
  });
});

describe('instrument(): cardinality', () => {
  const names = (points: DataPoint<unknown>[]) => new Set(points.map((p) => p.attributes['holdfast.policy.name']));

  it('past maxPolicies names, the others share "_other"; a policy that leaves frees its place and drops its counts', async () => {
    const s = setup({ maxPolicies: 2 });
    const sources = ['a', 'b', 'c'].map((name) => ({ name, snapshot: (): JsonValue => ({ state: 'open' }) }));
    const unregister = sources.map((source) => s.policies.register('breaker', source.name, source));
    for (const source of ['a', 'b', 'c', 'd']) s.bus.emit(ev({ type: 'breaker.success', source, latency: 5 }));
    let calls = await s.points(metricNames.breakerCalls);
    expect(names(calls)).toEqual(new Set(['a', 'b', '_other']));
    expect(pointValue(calls, { 'holdfast.policy.name': '_other' })).toBe(2);
    // The state gauge of `_other` counts its breakers per state: c is registered and open.
    const state = await s.points(metricNames.breakerState);
    expect(pointValue(state, { 'holdfast.policy.name': '_other', 'holdfast.breaker.state': 'open' })).toBe(1);
    unregister[0]?.();
    s.bus.emit(ev({ type: 'breaker.success', source: 'e', latency: 5 }));
    calls = await s.points(metricNames.breakerCalls);
    // e got a's place. (The SDK itself keeps exporting a's last cumulative value: that is its
    // memory; holdfast stops observing a, as test/observability-hostile-review.test.ts checks.)
    expect(names(calls).has('e')).toBe(true);
    expect(pointValue(calls, { 'holdfast.policy.name': '_other' })).toBe(2);
  });
});

describe('instrument(): spans', () => {
  /** A call through a fake policy that retries once and fails over, emitting as a real one would. */
  async function tracedCall(s: Setup): Promise<string> {
    const tracer = s.tracerProvider.getTracer('test');
    return tracer.startActiveSpan('GET /pay', async (span) => {
      await Promise.resolve();
      s.bus.emit(ev({ type: 'retry.attempt', source: 'api', attempt: 2, delay: 200, code: 'ECONNRESET' }));
      await new Promise((r) => setTimeout(r, 1));
      s.bus.emit(ev({ type: 'breaker.reject', state: 'open', retryAt: at + 30_000 }));
      s.bus.emit(ev({ type: 'failover.switch', source: 'db', from: 'primary', to: 'replica', reason: 'failover' }));
      span.end();
      return 'paid';
    });
  }

  const only = (spans: ReadableSpan[], name: string) => {
    const found = spans.filter((x) => x.name === name);
    expect(found).toHaveLength(1);
    return found[0] as ReadableSpan;
  };

  it('adds span events and summary attributes to the active span, across awaits', async () => {
    const s = setup();
    expect(await tracedCall(s)).toBe('paid');
    const span = only(s.spans.getFinishedSpans(), 'GET /pay');
    expect(span.events.map((e) => e.name)).toEqual([
      'holdfast.retry.attempt',
      'holdfast.breaker.reject',
      'holdfast.failover.switch',
    ]);
    expect(span.events[0]?.attributes).toMatchObject({
      'holdfast.policy.name': 'api',
      'holdfast.retry.attempt.attempt': 2,
      'holdfast.retry.attempt.delay': 200,
      'error.type': 'ECONNRESET',
    });
    expect(span.attributes).toMatchObject({
      'holdfast.retry.attempt': 2,
      'holdfast.breaker.rejected': true,
      'holdfast.breaker.state': 'open',
      'holdfast.endpoint.name': 'replica',
    });
  });

  it('a code that is no short word (a message, with a URL and its password) goes on the span as _OTHER', () => {
    const s = setup();
    const code = 'connect failed: postgres://app:hunter2@db:5432/app';
    s.tracerProvider.getTracer('test').startActiveSpan('GET /pay', (span) => {
      s.bus.emit(ev({ type: 'retry.attempt', source: 'api', attempt: 2, delay: 200, code }));
      s.bus.emit(ev({ type: 'retry.giveUp', source: 'api', attempts: 2, reason: 'maxAttempts', code }));
      span.end();
    });
    const span = only(s.spans.getFinishedSpans(), 'GET /pay');
    expect(span.events.map((e) => e.attributes?.['error.type'])).toEqual(['_OTHER', '_OTHER']);
    expect(JSON.stringify([span.attributes, span.events])).not.toContain('hunter2');
  });

  it('sees a real policy: core timeout() counted, and put on the span of the call it cut short', async () => {
    const s = setup();
    // Node's timers run their callback in the async context they were set in; ManualClock's do not.
    const manual = new ManualClock();
    const clock = {
      now: () => manual.now(),
      setTimeout: (cb: () => void, ms: number) => manual.setTimeout(AsyncResource.bind(cb), ms),
      clearTimeout: (handle: unknown) => manual.clearTimeout(handle),
    };
    const limit = timeout(100, { bus: s.bus, clock, name: 'per-try' });
    const tracer = s.tracerProvider.getTracer('test');
    const call = tracer.startActiveSpan('GET /slow', (span) =>
      limit
        .execute(
          ({ signal }) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))),
        )
        .finally(() => span.end()),
    );
    const settled = expect(call).rejects.toThrow(TimeoutError);
    await manual.advance(100);
    await settled;
    expect(pointValue(await s.points(metricNames.timeouts), { 'holdfast.policy.name': 'per-try' })).toBe(1);
    const span = only(s.spans.getFinishedSpans(), 'GET /slow');
    expect(span.events.map((e) => e.name)).toEqual(['holdfast.timeout']);
    expect(span.events[0]?.attributes).toMatchObject({ 'holdfast.timeout.timeout': 100 });
  });

  it('gives a state change outside any span a span of its own, and leaves call events there alone', async () => {
    const s = setup();
    expect(trace.getActiveSpan()).toBeUndefined();
    s.bus.emit(ev({ type: 'breaker.open', reason: 'consecutiveFailures', failureRate: 1, retryAt: at + 1000 }));
    s.bus.emit(ev({ type: 'retry.attempt', attempt: 1, delay: 10, code: undefined }));
    const spans = s.spans.getFinishedSpans();
    expect(spans.map((x) => x.name)).toEqual(['holdfast.breaker.open']);
    expect(spans[0]?.attributes).toMatchObject({
      'holdfast.policy.name': 'payments',
      'holdfast.breaker.open.reason': 'consecutiveFailures',
    });
  });

  it('gives a state change a span of its own when the span it happens in has ended (a timer set during a call)', async () => {
    const s = setup();
    const tracer = s.tracerProvider.getTracer('test');
    const fire = tracer.startActiveSpan('GET /pay', (span) => {
      span.end();
      // A half-open timer set during the call keeps its context, whose span has ended by now.
      return AsyncResource.bind(() => s.bus.emit(ev({ type: 'breaker.halfOpen' })));
    });
    fire();
    const spans = s.spans.getFinishedSpans();
    expect(spans.map((x) => x.name)).toEqual(['GET /pay', 'holdfast.breaker.half_open']);
    expect(spans[0]?.events).toEqual([]);
    expect(spans[1]?.parentSpanContext).toBeUndefined();
  });

  it('leaves spans alone when spans: false', async () => {
    const bus = createBus();
    const spans = new InMemorySpanExporter();
    const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
    const stop = instrument({ bus, tracerProvider, spans: false, metrics: false });
    cleanups.push(stop);
    tracerProvider.getTracer('t').startActiveSpan('call', (span) => {
      bus.emit(ev({ type: 'retry.attempt', attempt: 1, delay: 10, code: undefined }));
      span.end();
    });
    expect(spans.getFinishedSpans()[0]?.events).toEqual([]);
    expect(bus.wants('retry.attempt')).toBe(false);
  });
});

describe('instrument(): failures never reach the call', () => {
  it('a throwing meter, span processor or listener does not break the call it observes', async () => {
    const reported: unknown[] = [];
    const bus = createBus({ onListenerError: (error) => reported.push(error) });
    const broken = () => {
      throw new Error('exporter down');
    };
    const brokenInstrument = { add: broken, record: broken };
    const meterProvider = {
      getMeter: () => ({
        createCounter: () => brokenInstrument,
        createHistogram: () => brokenInstrument,
        createObservableGauge: () => ({}),
        createObservableCounter: () => ({}),
        createObservableUpDownCounter: () => ({}),
        addBatchObservableCallback: () => {},
        removeBatchObservableCallback: () => {},
      }),
    } as never;
    const tracerProvider = new BasicTracerProvider({
      spanProcessors: [{ onStart: () => {}, onEnd: broken, forceFlush: async () => {}, shutdown: async () => {} }],
    });
    cleanups.push(instrument({ bus, meterProvider, tracerProvider }));
    bus.on('*', broken);

    // A fake policy: it emits what a breaker emits around a call, and returns the call's value.
    const call = async () => {
      const value = await Promise.resolve(42);
      bus.emit(ev({ type: 'breaker.success', latency: 5 }));
      bus.emit(ev({ type: 'breaker.open', reason: 'manual', failureRate: 0, retryAt: undefined }));
      return value;
    };
    await expect(call()).resolves.toBe(42);
    expect(reported.length).toBeGreaterThanOrEqual(3);
    expect(reported.every((e) => e instanceof Error && e.message === 'exporter down')).toBe(true);
  });

  it('rejects bad options naming the option', () => {
    expect(() => instrument({ meterProvider: {} as never })).toThrow(HoldfastConfigError);
    expect(() => instrument({ meterProvider: {} as never })).toThrow(/meterProvider/);
  });
});
