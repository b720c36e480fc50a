/**
 * `_other` is what every policy past maxPolicies shares. A user's own policy named `_other` is one
 * policy: shown apart (`_other#2`, as the anomaly watch shows such a key), never summed with the
 * overflow, and its leaving never takes the overflow's series along. The same for the `proxy` label
 * of fault proxies: two named alike once their credentials are hidden stay two series.
 */
import { createBus, createPolicyRegistry, type HoldfastEvent } from '@holdfast/core';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { collect } from '../src/index.js';

const success = (source: string) =>
  ({ type: 'breaker.success', source, time: 0, latency: 1 }) as unknown as HoldfastEvent;
const calls = (text: string) => text.split('\n').filter((l) => l.startsWith('holdfast_breaker_calls_total{'));
const states = (text: string) =>
  text.split('\n').filter((l) => l.startsWith('holdfast_breaker_state{') && l.endsWith(' 1'));

function setup(maxPolicies: number) {
  const bus = createBus();
  const policies = createPolicyRegistry();
  const registry = new Registry();
  const stop = collect({ bus, policies, registry, maxPolicies });
  return { bus, policies, registry, stop };
}

describe('collect(), a policy of the user named `_other`', () => {
  it('is no overflow: its calls and state are its own, apart from the policies past maxPolicies', async () => {
    const { bus, policies, registry, stop } = setup(2);
    try {
      const leave = policies.register('breaker', '_other', { snapshot: () => ({ state: 'open' }) });
      policies.register('breaker', 'a', { snapshot: () => ({ state: 'closed' }) });
      policies.register('breaker', 'b', { snapshot: () => ({ state: 'closed' }) });
      for (const source of ['_other', 'a', 'b', 'b']) bus.emit(success(source));
      const text = await registry.metrics();
      expect(calls(text).sort()).toEqual([
        'holdfast_breaker_calls_total{policy="_other",outcome="success"} 2',
        'holdfast_breaker_calls_total{policy="_other#2",outcome="success"} 1',
        'holdfast_breaker_calls_total{policy="a",outcome="success"} 1',
      ]);
      // The user's `_other` is open; the overflow stands for one closed breaker (b).
      expect(states(text).sort()).toEqual([
        'holdfast_breaker_state{policy="_other",state="closed"} 1',
        'holdfast_breaker_state{policy="_other#2",state="open"} 1',
        'holdfast_breaker_state{policy="a",state="closed"} 1',
      ]);
      leave();
      // It left: its series go, the overflow's stay.
      expect(calls(await registry.metrics()).sort()).toEqual([
        'holdfast_breaker_calls_total{policy="_other",outcome="success"} 2',
        'holdfast_breaker_calls_total{policy="a",outcome="success"} 1',
      ]);
    } finally {
      stop();
    }
  });

  it('a user name spelled as the shown one (`_other#2`) is a third series', async () => {
    const { bus, registry, stop } = setup(10);
    try {
      for (const source of ['_other', '_other#2', '_other#2']) bus.emit(success(source));
      expect(calls(await registry.metrics()).sort()).toEqual([
        'holdfast_breaker_calls_total{policy="_other#2",outcome="success"} 1',
        'holdfast_breaker_calls_total{policy="_other#2#2",outcome="success"} 2',
      ]);
    } finally {
      stop();
    }
  });
});

describe('collect(), fault proxies named alike once hidden', () => {
  it('are two `proxy` series, `#2` apart', async () => {
    const { bus, registry, stop } = setup(10);
    try {
      const toxic = (source: string, name: string) =>
        bus.emit({
          type: 'chaos.toxic',
          source,
          time: 0,
          toxic: 'latency',
          name,
          direction: 'downstream',
          active: true,
          target: '127.0.0.1:5432',
        });
      toxic('postgres://app:KEY-A@db/orders', 'lag');
      toxic('postgres://app:KEY-B@db/orders', 'lag');
      toxic('postgres://app:KEY-B@db/orders', 'slow');
      const text = await registry.metrics();
      expect(text).not.toMatch(/KEY-/);
      expect(text.split('\n').filter((l) => l.startsWith('holdfast_chaos_toxics_active{'))).toEqual([
        'holdfast_chaos_toxics_active{proxy="postgres://***@db/orders",toxic="latency"} 1',
        'holdfast_chaos_toxics_active{proxy="postgres://***@db/orders#2",toxic="latency"} 2',
      ]);
    } finally {
      stop();
    }
  });
});

describe('collect(), fault proxies that come and go', () => {
  it('take no place from the policies for good: after 50 drills a new breaker is still named', async () => {
    const { bus, policies, registry, stop } = setup(10);
    try {
      const toxic = (source: string, active: boolean) =>
        bus.emit({
          type: 'chaos.toxic',
          source,
          time: 0,
          toxic: 'latency',
          name: 'lag',
          direction: 'downstream',
          active,
          target: '127.0.0.1:5432',
        });
      for (let i = 0; i < 50; i++) {
        toxic(`drill-${i}`, true);
        toxic(`drill-${i}`, false);
        // Scraped at 0 once, then dropped.
        await registry.metrics();
        await registry.metrics();
      }
      policies.register('breaker', 'db', { snapshot: () => ({ state: 'closed' }) });
      bus.emit(success('db'));
      expect(calls(await registry.metrics())).toEqual([
        'holdfast_breaker_calls_total{policy="db",outcome="success"} 1',
      ]);
    } finally {
      stop();
    }
  });
});
