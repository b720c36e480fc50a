/**
 * Outside review (s37) of instrument(): what production does to an exporter. Each `it` marked BUG
 * fails on the code as reviewed; each marked GUARD passes and pins what held.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createBus, createPolicyRegistry, type HoldfastEvent } from '@holdfast/core';
import { context, metrics } from '@opentelemetry/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlsContextManager } from '../../../test/support/otel-recorder.js';
import { instrument, metricNames } from '../src/index.js';
import { collectPoints, memoryProvider, tracing } from './collect.js';

beforeAll(() => {
  context.setGlobalContextManager(new AlsContextManager());
});
afterAll(() => {
  context.disable();
});

const at = 1_700_000_000_000;
const ev = (e: Record<string, unknown>) => ({ time: at, source: 'pay', ...e }) as unknown as HoldfastEvent;

describe('review s37: instrument()', () => {
  it('BUG: two instrument() of one bus (a MeterProvider per backend) put each span event on the span once, and give a state change one span', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const t = tracing();
    const prometheusSide = memoryProvider();
    const otlpSide = memoryProvider();
    // Allowed: the duplicate check only looks at the meter provider.
    const stopA = instrument({
      bus,
      policies,
      tracerProvider: t.tracerProvider,
      meterProvider: prometheusSide.meterProvider,
    });
    const stopB = instrument({
      bus,
      policies,
      tracerProvider: t.tracerProvider,
      meterProvider: otlpSide.meterProvider,
    });
    try {
      t.tracer.startActiveSpan('GET /pay', (span) => {
        bus.emit(ev({ type: 'retry.attempt', attempt: 2, delay: 100, code: 'ECONNRESET' }));
        span.end();
      });
      bus.emit(ev({ type: 'breaker.open', reason: 'manual', failureRate: 0, retryAt: undefined }));
      const finished = t.spans.getFinishedSpans();
      const call = finished.find((s) => s.name === 'GET /pay');
      expect(call?.events.map((e) => e.name)).toEqual(['holdfast.retry.attempt']);
      expect(finished.filter((s) => s.name === 'holdfast.breaker.open')).toHaveLength(1);
    } finally {
      stopA();
      stopB();
      await t.tracerProvider.shutdown();
    }
  });

  it('BUG: a rate limiter store error with no code exports no `error.type: undefined` attribute', async () => {
    const m = collectPoints();
    try {
      // `code: ErrorLabel` is `string | undefined` in core's event types.
      m.bus.emit(ev({ type: 'rateLimit.storeError', code: undefined, failOpen: true }));
      const [point] = await m.points(metricNames.rateLimitStoreErrors);
      expect(point?.value).toBe(1);
      // An attribute whose value is undefined is no valid OTel attribute (OTLP sends an empty AnyValue).
      expect(Object.entries(point?.attributes ?? {}).filter(([, v]) => v === undefined)).toEqual([]);
    } finally {
      await m.close();
    }
  });

  it('BUG: instrument() without meterProvider, called before the SDK registers its global MeterProvider, still reports metrics (as its spans do)', async () => {
    const bus = createBus();
    const stop = instrument({ bus, policies: createPolicyRegistry(), spans: false });
    const sdk = memoryProvider();
    try {
      // NodeSDK.start() after the module that called instrument() was imported.
      metrics.setGlobalMeterProvider(sdk.meterProvider);
      bus.emit(ev({ type: 'breaker.success', latency: 5 }));
      const points = await sdk.points(metricNames.breakerCalls);
      // It bound the no-op provider it found at call time, for good: nothing is ever exported.
      expect(points.map((p) => p.value)).toEqual([1]);
    } finally {
      stop();
      metrics.disable();
      await sdk.meterProvider.shutdown();
    }
  });

  it('GUARD: stop() twice, then instrument() again on the same provider and bus: counted once, nothing thrown', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const p = memoryProvider();
    const first = instrument({ bus, policies, meterProvider: p.meterProvider, spans: false });
    first();
    first();
    const second = instrument({ bus, policies, meterProvider: p.meterProvider, spans: false });
    try {
      bus.emit(ev({ type: 'breaker.success', latency: 5 }));
      const duration = await p.points(metricNames.breakerCallDuration);
      expect((duration[0]?.value as { count: number } | undefined)?.count).toBe(1);
    } finally {
      second();
      await p.meterProvider.shutdown();
    }
  });

  it('GUARD: -Infinity / null latency are counted, not recorded; a call event outside any span makes no span', async () => {
    const m = collectPoints();
    const t = tracing();
    const stop = instrument({ bus: m.bus, policies: m.policies, tracerProvider: t.tracerProvider, metrics: false });
    try {
      m.bus.emit(ev({ type: 'breaker.success', latency: Number.NEGATIVE_INFINITY }));
      m.bus.emit(ev({ type: 'breaker.success', latency: null }));
      m.bus.emit(ev({ type: 'retry.attempt', attempt: 2, delay: 10, code: undefined }));
      expect(await m.value(metricNames.breakerCalls, { 'holdfast.outcome': 'success' })).toBe(2);
      expect(await m.points(metricNames.breakerCallDuration)).toEqual([]);
      expect(t.spans.getFinishedSpans()).toEqual([]);
    } finally {
      stop();
      await m.close();
      await t.tracerProvider.shutdown();
    }
  });

  it('GUARD: after stop() (twice) nothing listens and nothing holds the process open (built dist, child process)', () => {
    const dir = fileURLToPath(new URL('..', import.meta.url));
    const script = `
      import { instrument } from './dist/index.js';
      import { createBus } from '@holdfast/core';
      import { MeterProvider } from '@opentelemetry/sdk-metrics';
      const bus = createBus();
      const meterProvider = new MeterProvider();
      const stop = instrument({ bus, meterProvider });
      bus.emit({ type: 'breaker.open', source: 'x', time: Date.now(), reason: 'manual', failureRate: 0, retryAt: undefined });
      stop(); stop();
      await meterProvider.shutdown();
      console.log(JSON.stringify({ wants: bus.wants('breaker.success') || bus.wants('breaker.open') }));
    `;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: dir,
      timeout: 8_000,
      encoding: 'utf8',
    });
    expect(child.error).toBeUndefined();
    expect(child.status).toBe(0);
    expect(JSON.parse(child.stdout.trim())).toEqual({ wants: false });
  });
});
