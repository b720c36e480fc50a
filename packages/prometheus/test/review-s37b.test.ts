/**
 * Outside review (s37b) of the s37 fixes to collect(): all or nothing, stop() removing its own
 * metrics only, exact series keys, non-finite durations. Each `it` marked BUG fails on the code as
 * reviewed; each marked GUARD passes and pins what held.
 */
import { createBus, createPolicyRegistry, HoldfastConfigError, type HoldfastEvent } from '@holdfast/core';
import { Counter, Gauge, type OpenMetricsContentType, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { collect } from '../src/index.js';

const ev = (e: Record<string, unknown>) => ({ time: 1, source: 'pay', ...e }) as unknown as HoldfastEvent;
const ours = (registry: Registry) =>
  registry
    .getMetricsAsArray()
    .map((m) => (m as unknown as { name: string }).name)
    .filter((n) => n.startsWith('holdfast_'));
const lines = async (registry: Registry, prefix: string) =>
  (await registry.metrics()).split('\n').filter((l) => l.startsWith(prefix));

describe('review s37b: collect()', () => {
  it('BUG: label values undefined and "undefined" are two series to prom-client: both leave with their policy', async () => {
    const bus = createBus();
    const registry = new Registry();
    const policies = createPolicyRegistry();
    const stop = collect({ bus, registry, policies });
    try {
      const unregister = policies.register('failover', 'pay', { snapshot: () => ({ endpoints: [] }) });
      // An emitter of a user's own: no `to` (prom-client leaves the label out), and the text "undefined".
      bus.emit(ev({ type: 'failover.switch', from: undefined, reason: 'manual', to: undefined }));
      bus.emit(ev({ type: 'failover.switch', from: undefined, reason: 'manual', to: 'undefined' }));
      expect(await lines(registry, 'holdfast_failover_switches_total{')).toHaveLength(2);
      unregister();
      // keyOf() String()s each value: one key, so one remover; the second series stays for good.
      expect(await lines(registry, 'holdfast_failover_switches_total{')).toEqual([]);
    } finally {
      stop();
    }
  });

  it('BUG: stop() on a registry whose removeSingleMetric throws for one metric still removes the others', () => {
    class Sticky extends Registry {
      override removeSingleMetric(name: string): void {
        if (name === 'holdfast_breaker_calls_total') throw new Error('cannot remove');
        super.removeSingleMetric(name);
      }
    }
    const registry = new Sticky();
    const stop = collect({ bus: createBus(), registry, policies: createPolicyRegistry() });
    try {
      stop();
    } catch {
      // Told or not.
    }
    // The loop stops at the first throw (and stop() is spent: active is false), so every metric
    // after it stays registered, and a collect() again is refused "already has a metric".
    expect(ours(registry)).toEqual(['holdfast_breaker_calls_total']);
  });

  it('BUG: setup that fails on a registry whose cleanup throws leaves none of the others behind', () => {
    const broken = true;
    class Flaky extends Registry {
      override registerMetric(metric: Parameters<Registry['registerMetric']>[0]): void {
        if (broken && (metric as unknown as { name: string }).name === 'holdfast_ready') throw new Error('setup broke');
        super.registerMetric(metric);
      }
      override removeSingleMetric(name: string): void {
        if (broken && name === 'holdfast_breaker_calls_total') throw new Error('cannot remove');
        super.removeSingleMetric(name);
      }
    }
    const registry = new Flaky();
    const bus = createBus();
    expect(() => collect({ bus, registry, policies: createPolicyRegistry() })).toThrow('setup broke');
    // Only the one that cannot be removed may stay.
    expect(ours(registry)).toEqual(['holdfast_breaker_calls_total']);
  });

  it('GUARD: a registry that throws on the Nth metric (by name): the original error, none of ours left, collect() again works', () => {
    let broken = true;
    class Flaky extends Registry {
      override registerMetric(metric: Parameters<Registry['registerMetric']>[0]): void {
        if (broken && (metric as unknown as { name: string }).name === 'holdfast_chaos_toxics_active')
          throw new Error('setup broke');
        super.registerMetric(metric);
      }
    }
    const registry = new Flaky();
    const bus = createBus();
    expect(() => collect({ bus, registry, policies: createPolicyRegistry() })).toThrow('setup broke');
    expect(ours(registry)).toEqual([]);
    expect(bus.wants('breaker.success')).toBe(false);
    broken = false;
    collect({ bus, registry, policies: createPolicyRegistry() })();
    expect(ours(registry)).toEqual([]);
  });

  it("GUARD: stop() after registry.clear() and the app's own metrics of the same names: the app's stay", async () => {
    const registry = new Registry();
    const bus = createBus();
    const stop = collect({ bus, registry, policies: createPolicyRegistry() });
    registry.clear();
    new Counter({ name: 'holdfast_breaker_calls_total', help: "the app's own", registers: [registry] });
    new Gauge({ name: 'holdfast_ready', help: "the app's own too", registers: [registry] });
    stop();
    stop();
    expect(ours(registry).sort()).toEqual(['holdfast_breaker_calls_total', 'holdfast_ready']);
    expect(await registry.metrics()).toContain("the app's own");
  });

  it('GUARD: an OpenMetrics registry: histograms, gauges and counters exposed, series removed with their policy', async () => {
    const bus = createBus();
    const registry = new Registry<OpenMetricsContentType>();
    registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    const policies = createPolicyRegistry();
    const stop = collect({ bus, registry, policies });
    try {
      const unregister = policies.register('breaker', 'pay', { snapshot: () => ({ name: 'pay', state: 'open' }) });
      bus.emit(ev({ type: 'breaker.failure', latency: 250, code: 'ECONNRESET' }));
      bus.emit(ev({ type: 'retry.attempt', attempt: 1, delay: 100 }));
      const text = await registry.metrics();
      expect(text).toContain(
        'holdfast_breaker_call_duration_seconds_bucket{le="0.25",policy="pay",outcome="failure"} 1',
      );
      expect(text).toContain('holdfast_breaker_state{policy="pay",state="open"} 1');
      expect(text.endsWith('# EOF\n')).toBe(true);
      unregister();
      expect(await registry.metrics()).not.toContain('policy="pay"');
    } finally {
      stop();
    }
  });

  it('GUARD: a name taken by the app: HoldfastConfigError, no listener left', () => {
    const registry = new Registry();
    new Gauge({ name: 'holdfast_concurrency_limit', help: "the app's own", registers: [registry] });
    const bus = createBus();
    expect(() => collect({ bus, registry, policies: createPolicyRegistry() })).toThrow(HoldfastConfigError);
    expect(bus.wants('breaker.success')).toBe(false);
    expect(ours(registry)).toEqual(['holdfast_concurrency_limit']);
  });
});
