/**
 * Two policies whose names hide alike (one breaker per tenant, named by a URL that differs only in
 * its API key or password): two series, `#2` apart, as the anomaly watch shows such keys. Merged
 * into one, an open breaker's state was summed with a closed one's, and one leaving took the
 * other's counts along.
 */
import { createBus, createPolicyRegistry, type HoldfastEvent } from '@holdfast/core';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { collect } from '../src/index.js';

const cleanups: (() => unknown)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

const ev = (e: Record<string, unknown>) => ({ time: 1_700_000_000_000, ...e }) as unknown as HoldfastEvent;
const tenantA = 'https://api.example/v1?api_key=KEY-OF-A';
const tenantB = 'https://api.example/v1?api_key=KEY-OF-B';
/** `metric`'s samples: label set -> value. */
const samples = async (registry: Registry, metric: string) => {
  const json = await registry.getMetricsAsJSON();
  const found = json.find((m) => m.name === metric) as { values: { labels: object; value: number }[] } | undefined;
  return (found?.values ?? []).map((v) => ({ ...v.labels, value: v.value }) as Record<string, unknown>);
};

describe('collect(), two names that hide alike', () => {
  it('each keeps a series of its own; one leaving leaves the other its counts', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const registry = new Registry();
    cleanups.push(collect({ bus, policies, registry }));
    const a = { snapshot: () => ({ name: tenantA, state: 'open' }) };
    const b = { snapshot: () => ({ name: tenantB, state: 'closed' }) };
    const unregisterA = policies.register('breaker', tenantA, a);
    policies.register('breaker', tenantB, b);
    for (let i = 0; i < 2; i++) bus.emit(ev({ type: 'breaker.success', source: tenantA, latency: 5 }));
    for (let i = 0; i < 3; i++) bus.emit(ev({ type: 'breaker.success', source: tenantB, latency: 5 }));

    const calls = await samples(registry, 'holdfast_breaker_calls_total');
    expect(calls.map((c) => c.value).sort()).toEqual([2, 3]);
    const open = (await samples(registry, 'holdfast_breaker_state')).filter((s) => s.value === 1);
    // One breaker open, one closed: never one series open and closed at once.
    expect(open.map((s) => s.state).sort()).toEqual(['closed', 'open']);
    expect(new Set(open.map((s) => s.policy)).size).toBe(2);
    expect(JSON.stringify(await registry.getMetricsAsJSON())).not.toMatch(/KEY-OF/);

    unregisterA();
    const left = await samples(registry, 'holdfast_breaker_calls_total');
    expect(left.map((c) => c.value)).toEqual([3]);
  });
});

describe('collect(), keys the anomaly watch showed apart', () => {
  it('two keys hidden alike, `#2` apart as the watch shows them, stay two series', async () => {
    const bus = createBus();
    const registry = new Registry();
    cleanups.push(collect({ bus, policies: createPolicyRegistry(), registry }));
    // What watch() shows for tenantA's and tenantB's keys: hidden, and apart.
    const keys = ['https://api.example/v1?api_key=***', 'https://api.example/v1?api_key=***#2'];
    for (const [i, key] of keys.entries()) {
      bus.emit(ev({ type: 'anomaly.score', source: 'anomaly', key, score: i, raised: false, metrics: [] }));
    }
    const scores = await samples(registry, 'holdfast_anomaly_score');
    expect(scores.map((s) => [s.key, s.value])).toEqual(keys.map((key, i) => [key, i]));
  });
});
