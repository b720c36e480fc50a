/**
 * Label values are worked out once and held while they have a place: policies that come and go
 * (per-host breakers a registry evicts), each named by a URL with a password, leave nothing behind.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createBus, createPolicyRegistry, type HoldfastEvent } from '@holdfast/core';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { collect } from '../src/index.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

describe('collect(), names that come and go', () => {
  it('2,000 policies named by URLs with passwords, each registered, emitting and gone, hold no memory', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const registry = new Registry();
    const stop = collect({ bus, policies, registry });
    const pad = 'x'.repeat(4_000);
    const churn = (from: number, to: number) => {
      for (let i = from; i < to; i++) {
        const name = `https://svc:pw${i}@host-${i}.example/${pad}`;
        const unregister = policies.register('breaker', name, { snapshot: () => ({ state: 'closed' }) });
        bus.emit({ type: 'breaker.success', source: name, time: 0, latency: 1 } as HoldfastEvent);
        unregister();
      }
    };
    churn(0, 200);
    gc();
    const before = process.memoryUsage().heapUsed;
    churn(200, 2_200);
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    // Each name is over 4 kB: held, 2,000 of them are 8 MB and more.
    expect(grown).toBeLessThan(5_000_000);
    expect(await registry.metrics()).not.toContain('host-');
    stop();
  }, 30_000);

  it('20,000 values that differ only in their secret (one series once hidden) hold no memory', async () => {
    const bus = createBus();
    const registry = new Registry();
    const stop = collect({ bus, policies: createPolicyRegistry(), registry });
    // A failover set whose endpoints are presigned URLs: a new signature every time, one series.
    const emit = (from: number, to: number) => {
      for (let i = from; i < to; i++) {
        const endpoint = `https://store.example/bucket?X-Amz-Signature=${i}${'f'.repeat(64)}`;
        bus.emit({
          type: 'failover.eject',
          source: 'store',
          time: 0,
          endpoint,
          until: 1,
          ejections: 1,
        } as HoldfastEvent);
      }
    };
    emit(0, 2_000);
    gc();
    const before = process.memoryUsage().heapUsed;
    emit(2_000, 22_000);
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    const lines = (await registry.metrics())
      .split('\n')
      .filter((l) => l.startsWith('holdfast_failover_ejections_total{'));
    expect(lines).toEqual([
      'holdfast_failover_ejections_total{policy="store",endpoint="https://store.example/bucket?X-Amz-Signature=***"} 22000',
    ]);
    // Tracked per raw value (to drop it when the policy leaves), they held 10 MB and more.
    expect(grown).toBeLessThan(3_000_000);
    stop();
  }, 30_000);
});
