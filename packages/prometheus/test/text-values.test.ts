/**
 * Label values that are no strings (a URL object as a policy's name or an endpoint) are hidden as
 * the text prom-client makes of them. A score that is text (from an emitter of a user's own) is no value: prom-client threw on it,
 * and the bus told the throw as a warning whose message held the text (a URL with its password).
 */
import { createBus, createPolicyRegistry, type HoldfastEvent } from '@holdfast/core';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { collect } from '../src/index.js';

describe('collect(), text where a score belongs', () => {
  it('throws nothing that tells it, and scrapes none of it', async () => {
    const told: string[] = [];
    const bus = createBus({ onListenerError: (error) => told.push(String((error as Error).message)) });
    const registry = new Registry();
    const stop = collect({ bus, policies: createPolicyRegistry(), registry });
    const secret = 'Zq9hunter2';
    try {
      bus.emit({
        type: 'anomaly.score',
        source: 'watch',
        time: 0,
        key: 'api',
        score: `https://app:${secret}@db.example/`,
        raised: false,
        metrics: [{ name: 'errorRate', value: 1, expected: 1, score: `password=${secret}` }],
      } as unknown as HoldfastEvent);
      expect(told).toEqual([]);
      expect(await registry.metrics()).not.toContain(secret);
    } finally {
      stop();
    }
  });
});

describe('collect(), a URL object where a name belongs', () => {
  it('is scraped hidden, as its text would be', async () => {
    const bus = createBus();
    const registry = new Registry();
    const stop = collect({ bus, policies: createPolicyRegistry(), registry });
    try {
      const url = new URL('https://app:Zq9hunter2@db.example/');
      bus.emit({
        type: 'breaker.reject',
        source: url,
        time: 0,
        state: 'open',
        code: 'E_CIRCUIT_OPEN',
      } as unknown as HoldfastEvent);
      bus.emit({
        type: 'failover.switch',
        source: 'set',
        time: 0,
        from: 'a',
        to: url,
        reason: 'failover',
      } as unknown as HoldfastEvent);
      const lines = (await registry.metrics()).split('\n').filter((l) => l.includes('db.example'));
      expect(lines).toEqual([
        'holdfast_breaker_calls_total{policy="https://***@db.example/",outcome="rejected"} 1',
        'holdfast_failover_switches_total{policy="set",reason="failover",to="https://***@db.example/"} 1',
      ]);
    } finally {
      stop();
    }
  });
});
