import { faultProxy, injectFault, injectLatency } from '@holdfast/chaos';
import { describe, expect, it } from 'vitest';
import { metricNames } from '../src/index.js';
import { collectPoints } from './collect.js';

describe('instrument(): faults injected on purpose are counted apart', () => {
  it('counts injections by kind and the proxy toxics on now', async () => {
    const { bus, points, close } = collectPoints();
    const proxy = await faultProxy({ target: { port: 1 }, bus, name: 'redis-proxy' });
    try {
      const flaky = injectFault({ enabled: true, bus, name: 'flaky' });
      for (let i = 0; i < 4; i++) await flaky.execute(() => 1).catch(() => {});
      await injectLatency({ latency: 1, enabled: true, bus, name: 'flaky' }).execute(() => 1);
      proxy.add({ type: 'latency', latency: 5, name: 'a' });
      proxy.add({ type: 'latency', latency: 5, name: 'b' });
      proxy.add({ type: 'blackhole', name: 'c' }).remove();

      expect(await points(metricNames.chaosInjections)).toEqual([
        { attributes: { 'holdfast.policy.name': 'flaky', 'holdfast.chaos.kind': 'fault' }, value: 4 },
        { attributes: { 'holdfast.policy.name': 'flaky', 'holdfast.chaos.kind': 'latency' }, value: 1 },
      ]);
      expect(await points(metricNames.chaosToxicsActive)).toEqual([
        { attributes: { 'holdfast.policy.name': 'redis-proxy', 'holdfast.chaos.toxic': 'latency' }, value: 2 },
        { attributes: { 'holdfast.policy.name': 'redis-proxy', 'holdfast.chaos.toxic': 'blackhole' }, value: 0 },
      ]);
    } finally {
      await close();
      await proxy.close();
    }
  });
});
