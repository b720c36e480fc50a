/**
 * A user's own policy (a Policy of their own emitting on the bus, or a snapshot they registered)
 * named by a URL with a password or an API key: the exporter hides it, as the dashboard does.
 */
import { createBus, createPolicyRegistry, type HoldfastEvent } from '@holdfast/core';
import { afterEach, describe, expect, it } from 'vitest';
import { RecordingMeterProvider, RecordingTracerProvider } from '../../../test/support/otel-recorder.js';
import { instrument } from '../src/index.js';

const cleanups: (() => unknown)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

const leaked = /hunter2|SEKRET/g;
const ev = (e: Record<string, unknown>) => ({ time: 1_700_000_000_000, ...e }) as unknown as HoldfastEvent;

describe('instrument(), secrets in names it did not make', () => {
  it('a source or a registered name with credentials reaches no metric attribute, span or span attribute', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const meterProvider = new RecordingMeterProvider();
    const tracerProvider = new RecordingTracerProvider();
    cleanups.push(instrument({ bus, policies, meterProvider, tracerProvider }));
    const source = 'https://alice:hunter2@pay.example/v1?api_key=SEKRET';
    bus.emit(ev({ type: 'breaker.success', source, latency: 5 }));
    bus.emit(ev({ type: 'breaker.open', source, reason: 'manual', failureRate: 0, retryAt: undefined }));
    bus.emit(
      ev({ type: 'failover.eject', source: 'api', endpoint: 'redis://default:hunter2@cache:6379', reason: 'failures' }),
    );
    const dsn = 'postgres://app:hunter2@db.internal/orders';
    const breaker = { snapshot: () => ({ name: dsn, state: 'open' }) };
    policies.register('breaker', dsn, breaker);
    const exported = JSON.stringify({
      metrics: await meterProvider.collect(),
      histograms: meterProvider.histograms,
      spans: tracerProvider.spans,
    });
    expect(exported).toContain('pay.example');
    expect(exported).toContain('db.internal');
    // Before the fix: [ 'hunter2', 'SEKRET', ... ] (the names as emitted and registered).
    expect(exported.match(leaked)).toBeNull();
  });

  it("an anomaly metric's name or a registered breaker's state with credentials reaches no attribute", async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const meterProvider = new RecordingMeterProvider();
    cleanups.push(instrument({ bus, policies, meterProvider, tracerProvider: new RecordingTracerProvider() }));
    const metric = 'https://alice:hunter2@pay.example/v1';
    bus.emit(
      ev({
        type: 'anomaly.score',
        source: 'watch',
        key: 'api',
        score: 1,
        raised: true,
        metrics: [{ name: metric, value: 1, expected: 0, score: 1 }],
      }),
    );
    policies.register('breaker', 'mine', { snapshot: () => ({ state: 'redis://default:SEKRET@cache:6379' }) });
    const exported = JSON.stringify(await meterProvider.collect());
    expect(exported).toContain('pay.example');
    expect(exported).toContain('cache:6379');
    // Before: [ 'hunter2', 'SEKRET' ] (the metric's name and the state as given).
    expect(exported.match(leaked)).toBeNull();
  });
});
