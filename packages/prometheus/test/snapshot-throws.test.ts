/**
 * One policy of a user's own whose snapshot throws when read (a getter on a closed pool) must not
 * take /metrics down: its gauges are left out, every other policy's are served.
 */
import { createBus, createPolicyRegistry } from '@holdfast/core';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { collect } from '../src/index.js';

/** What a class with a getter on a pool closed meanwhile returns from snapshot(). */
const closedPool = () => ({
  name: 'bad',
  get state(): string {
    throw new TypeError("Cannot read properties of null (reading 'totalCount')");
  },
  get balance(): number {
    throw new TypeError('pool closed');
  },
  get endpoints(): string[] {
    throw new TypeError('pool closed');
  },
  get limit(): number {
    throw new TypeError('pool closed');
  },
});

describe('collect(), a snapshot that throws when read', () => {
  for (const kind of ['breaker', 'failover', 'budget', 'concurrency', 'bulkhead', 'throttle']) {
    it(`a ${kind} whose snapshot's fields throw: the scrape still serves the others`, async () => {
      const registry = new Registry();
      const policies = createPolicyRegistry();
      const stop = collect({ bus: createBus(), registry, policies });
      try {
        const ok = { snapshot: () => ({ name: 'ok', state: 'open' }) };
        const bad = { snapshot: closedPool };
        policies.register('breaker', 'ok', ok);
        policies.register(kind, 'bad', bad);
        // Before the fix: the scrape rejected (TypeError from the getter): a 500 for every metric.
        const text = await registry.metrics().catch((e: Error) => `rejected: ${e.message}`);
        expect(text).toContain('holdfast_breaker_state{policy="ok",state="open"} 1');
      } finally {
        stop();
      }
    });
  }
});
