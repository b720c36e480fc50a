/**
 * A policy whose name is shown as it is (`https://***@db.example/`: one of ours, hidden already)
 * and a user's own named by the same URL with its password are two series: merged, one leaving
 * took the other's series along.
 */
import { createBus, createPolicyRegistry, type HoldfastEvent } from '@holdfast/core';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { collect } from '../src/index.js';

describe('collect(), a name hidden already and one that hides alike', () => {
  it('are two series, and one leaving leaves the other', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const registry = new Registry();
    const stop = collect({ bus, policies, registry });
    try {
      const ours = 'https://***@db.example/';
      const theirs = 'https://app:pw@db.example/';
      policies.register('breaker', ours, { snapshot: () => ({ state: 'closed' }) });
      const leave = policies.register('breaker', theirs, { snapshot: () => ({ state: 'open' }) });
      for (const source of [ours, theirs]) {
        bus.emit({ type: 'breaker.success', source, time: 0, latency: 1 } as HoldfastEvent);
      }
      const calls = (text: string) => text.split('\n').filter((l) => l.startsWith('holdfast_breaker_calls_total{'));
      expect(calls(await registry.metrics())).toHaveLength(2);
      leave();
      expect(calls(await registry.metrics())).toEqual([
        'holdfast_breaker_calls_total{policy="https://***@db.example/",outcome="success"} 1',
      ]);
    } finally {
      stop();
    }
  });
});
