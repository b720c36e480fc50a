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
});
