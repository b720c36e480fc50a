/**
 * collect() keeps, per policy, what removes each of its series, keyed by the series' label
 * values. Joined with \u0000, `x\0y`, `z` and `x`, `y\0z` were one key: the second series was
 * never kept, and stayed in the registry after its policy left (an evicted host's counts for
 * good). Keys are exact now (length-prefixed).
 */
import { createBus, createPolicyRegistry, type HoldfastEvent } from '@holdfast/core';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { collect } from '../src/index.js';

const ev = (e: Record<string, unknown>) => ({ time: 1, source: 'pay', ...e }) as unknown as HoldfastEvent;

describe('collect(): series told apart exactly', () => {
  it('two series whose label values join alike both leave with their policy', async () => {
    const bus = createBus();
    const registry = new Registry();
    const policies = createPolicyRegistry();
    const stop = collect({ bus, registry, policies });
    try {
      const unregister = policies.register('failover', 'pay', { snapshot: () => ({ endpoints: [] }) });
      bus.emit(ev({ type: 'failover.switch', from: undefined, reason: 'x\u0000y', to: 'z' }));
      bus.emit(ev({ type: 'failover.switch', from: undefined, reason: 'x', to: 'y\u0000z' }));
      const series = async () =>
        (await registry.metrics()).split('\n').filter((l) => l.startsWith('holdfast_failover_switches_total{'));
      expect(await series()).toHaveLength(2);
      unregister();
      expect(await series()).toEqual([]);
    } finally {
      stop();
    }
  });
});
