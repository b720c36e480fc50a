/**
 * A user's own policy (a Policy of their own emitting on the bus, or a snapshot they registered)
 * named by a URL with a password or an API key: the exporter hides it, as the dashboard does.
 */
import { createBus, createPolicyRegistry, type HoldfastEvent } from '@holdfast/core';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { collect } from '../src/index.js';

const cleanups: (() => unknown)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

const leaked = /hunter2|SEKRET/g;
const ev = (e: Record<string, unknown>) => ({ time: 1_700_000_000_000, ...e }) as unknown as HoldfastEvent;

describe('collect(), secrets in names it did not make', () => {
  it('a source or a registered name with credentials reaches no label value', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const registry = new Registry();
    cleanups.push(collect({ bus, policies, registry }));
    const source = 'https://alice:hunter2@pay.example/v1?api_key=SEKRET';
    bus.emit(ev({ type: 'breaker.success', source, latency: 5 }));
    bus.emit(ev({ type: 'breaker.open', source, reason: 'manual', failureRate: 0, retryAt: undefined }));
    bus.emit(
      ev({ type: 'failover.eject', source: 'api', endpoint: 'redis://default:hunter2@cache:6379', reason: 'failures' }),
    );
    const dsn = 'postgres://app:hunter2@db.internal/orders';
    const breaker = { snapshot: () => ({ name: dsn, state: 'open' }) };
    policies.register('breaker', dsn, breaker);
    const text = await registry.metrics();
    expect(text).toContain('pay.example');
    expect(text).toContain('db.internal');
    // Before the fix: [ 'hunter2', 'SEKRET', ... ] (the names as emitted and registered).
    expect(text.match(leaked)).toBeNull();
  });

  it('a registered name leaving takes its (hidden) series along', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const registry = new Registry();
    cleanups.push(collect({ bus, policies, registry }));
    const dsn = 'postgres://app:hunter2@db.internal/orders';
    const breaker = { snapshot: () => ({ name: dsn, state: 'open' }) };
    const unregister = policies.register('breaker', dsn, breaker);
    bus.emit(ev({ type: 'breaker.success', source: dsn, latency: 5 }));
    expect(await registry.metrics()).toContain('holdfast_breaker_calls_total{policy="postgres://');
    unregister();
    expect(await registry.metrics()).not.toContain('holdfast_breaker_calls_total{policy="postgres://');
  });
});
