/**
 * Names with credentials, hidden: two policies whose names hide alike (one breaker per tenant,
 * named by a URL that differs only in its API key) keep two series, `#2` apart, as the anomaly
 * watch shows such keys; and a breaker named by its DSN, registered and on the bus, is one breaker.
 */
import { createBus, createPolicyRegistry, type HoldfastEvent } from '@holdfast/core';
import { afterEach, describe, expect, it } from 'vitest';
import { type Recorded, RecordingMeterProvider, RecordingTracerProvider } from '../../../test/support/otel-recorder.js';
import { instrument } from '../src/index.js';

const cleanups: (() => unknown)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

const ev = (e: Record<string, unknown>) => ({ time: 1_700_000_000_000, ...e }) as unknown as HoldfastEvent;
const tenantA = 'https://api.example/v1?api_key=KEY-OF-A';
const tenantB = 'https://api.example/v1?api_key=KEY-OF-B';
const of = (rows: Recorded[], instrument: string) => rows.filter((r) => r.instrument === instrument);
const policyOf = (r: Recorded) => r.attributes['holdfast.policy.name'];

function setup() {
  const bus = createBus();
  const policies = createPolicyRegistry();
  const meterProvider = new RecordingMeterProvider();
  cleanups.push(instrument({ bus, policies, meterProvider, tracerProvider: new RecordingTracerProvider() }));
  return { bus, policies, meterProvider };
}

describe('instrument(), names that hide alike', () => {
  it('each keeps a series of its own; one leaving leaves the other its counts', async () => {
    const { bus, policies, meterProvider } = setup();
    const unregisterA = policies.register('breaker', tenantA, { snapshot: () => ({ name: tenantA, state: 'open' }) });
    policies.register('breaker', tenantB, { snapshot: () => ({ name: tenantB, state: 'closed' }) });
    for (let i = 0; i < 2; i++) bus.emit(ev({ type: 'breaker.success', source: tenantA, latency: 5 }));
    for (let i = 0; i < 3; i++) bus.emit(ev({ type: 'breaker.success', source: tenantB, latency: 5 }));

    const rows = await meterProvider.collect();
    expect(JSON.stringify(rows)).not.toMatch(/KEY-OF/);
    expect(
      of(rows, 'holdfast.breaker.calls')
        .map((r) => r.value)
        .sort(),
    ).toEqual([2, 3]);
    const inState = of(rows, 'holdfast.breaker.state').filter((r) => r.value === 1);
    // One breaker open, one closed: never one series open and closed at once.
    expect(inState.map((r) => r.attributes['holdfast.breaker.state']).sort()).toEqual(['closed', 'open']);
    expect(new Set(inState.map(policyOf)).size).toBe(2);

    unregisterA();
    expect(of(await meterProvider.collect(), 'holdfast.breaker.calls').map((r) => r.value)).toEqual([3]);
  });

  it('a breaker named by its DSN, registered and emitting, is counted once in its state', async () => {
    const { bus, policies, meterProvider } = setup();
    const dsn = 'postgres://app:hunter2@db.internal/orders';
    let state = 'closed';
    policies.register('breaker', dsn, { snapshot: () => ({ name: dsn, state }) });
    state = 'open';
    bus.emit(ev({ type: 'breaker.open', source: dsn, reason: 'failures', failureRate: 1, retryAt: undefined }));
    const rows = of(await meterProvider.collect(), 'holdfast.breaker.state');
    expect(JSON.stringify(rows)).not.toMatch(/hunter2/);
    // One breaker: in one state, once.
    expect(rows.reduce((sum, r) => sum + r.value, 0)).toBe(1);
    expect(rows.filter((r) => r.value === 1).map((r) => r.attributes['holdfast.breaker.state'])).toEqual(['open']);
  });
});

describe('instrument(), keys the anomaly watch showed apart', () => {
  it('two keys hidden alike, `#2` apart as the watch shows them, stay two series', async () => {
    const { bus, meterProvider } = setup();
    // What watch() shows for tenantA's and tenantB's keys: hidden, and apart.
    const keys = ['https://api.example/v1?api_key=***', 'https://api.example/v1?api_key=***#2'];
    for (const [i, key] of keys.entries()) {
      bus.emit(ev({ type: 'anomaly.score', source: 'anomaly', key, score: i, raised: false, metrics: [] }));
    }
    const scores = of(await meterProvider.collect(), 'holdfast.anomaly.score');
    const shown = new Map(scores.map((s) => [s.attributes['holdfast.anomaly.key'], s.value]));
    expect(shown).toEqual(new Map(keys.map((key, i) => [key, i])));
  });
});
