import { faultProxy, injectFault, injectOutcome } from '@holdfast/chaos';
import { createBus, createPolicyRegistry } from '@holdfast/core';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { collect } from '../src/index.js';

describe('collect(): faults injected on purpose are counted apart', () => {
  it('counts injections by kind and gauges the proxy toxics on now', async () => {
    const bus = createBus();
    const registry = new Registry();
    const stop = collect({ bus, registry, policies: createPolicyRegistry() });
    const proxy = await faultProxy({ target: { port: 1 }, bus, name: 'pg-proxy' });
    try {
      const flaky = injectFault({ enabled: true, bus, name: 'db' });
      for (let i = 0; i < 3; i++) await flaky.execute(() => 1).catch(() => {});
      await injectOutcome({ outcome: () => ({ status: 503 }), enabled: true, bus, name: 'api' }).execute(() => 1);
      const reset = proxy.add({ type: 'reset', after: 60_000 });
      let text = await registry.metrics();
      expect(text).toContain('holdfast_chaos_injections_total{policy="db",kind="fault"} 3');
      expect(text).toContain('holdfast_chaos_injections_total{policy="api",kind="outcome"} 1');
      expect(text).toContain('holdfast_chaos_toxics_active{proxy="pg-proxy",toxic="reset"} 1');
      reset.remove();
      text = await registry.metrics();
      expect(text).toContain('holdfast_chaos_toxics_active{proxy="pg-proxy",toxic="reset"} 0');
    } finally {
      stop();
      await proxy.close();
    }
  });

  it('a proxy whose toxics all went off is scraped at 0 once, then leaves: 100 drills leave no series', async () => {
    const bus = createBus();
    const registry = new Registry();
    const stop = collect({ bus, registry, policies: createPolicyRegistry() });
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
    for (let i = 0; i < 100; i++) toxic(`drill-${i}`, true);
    const series = (text: string) => text.split('\n').filter((l) => l.startsWith('holdfast_chaos_toxics_active{'));
    expect(series(await registry.metrics())).toHaveLength(100);
    for (let i = 0; i < 100; i++) toxic(`drill-${i}`, false);
    expect(series(await registry.metrics()).filter((l) => l.endsWith(' 0'))).toHaveLength(100);
    expect(series(await registry.metrics())).toEqual([]);
    toxic('drill-7', true); // a proxy of that name again: counted from the start
    expect(series(await registry.metrics())).toEqual([
      'holdfast_chaos_toxics_active{proxy="drill-7",toxic="latency"} 1',
    ]);
    stop();
  });
});
