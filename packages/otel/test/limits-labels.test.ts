/**
 * A limiter's limit gauge is labelled once, like every other series: its name (a URL with a
 * password) shows hidden and holds one place under maxPolicies, not a second for its shown name.
 * And a field typed as a number or a boolean that a user's own emitter fills with text never
 * reaches an attribute or a value as that text.
 */
import { createBus, createPolicyRegistry, type HoldfastEvent } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { RecordingMeterProvider, RecordingTracerProvider } from '../../../test/support/otel-recorder.js';
import { instrument } from '../src/index.js';

function setup(maxPolicies?: number) {
  const bus = createBus();
  const policies = createPolicyRegistry();
  const meterProvider = new RecordingMeterProvider();
  const stop = instrument({ bus, policies, meterProvider, tracerProvider: new RecordingTracerProvider(), maxPolicies });
  return { bus, policies, meterProvider, stop };
}

const limitEvent = (source: string, to: unknown) =>
  ({ type: 'concurrency.limit', source, time: 0, algorithm: 'gradient2', from: 1, to, latency: 1 }) as HoldfastEvent;

describe('instrument(), a limit seen only on the bus', () => {
  it('is reported under its shown name, and its shown name takes no place of its own', async () => {
    const { bus, meterProvider, stop } = setup(2);
    try {
      bus.emit(limitEvent('https://svc:pw@limits.example/', 5));
      // Collected twice: each collection labelled the shown name again.
      await meterProvider.collect();
      await meterProvider.collect();
      bus.emit({ type: 'breaker.slow', source: 'plain', time: 0, latency: 9, threshold: 1 } as HoldfastEvent);
      const rows = await meterProvider.collect();
      const policyOf = (instrument: string) =>
        rows.find((r) => r.instrument === instrument)?.attributes['holdfast.policy.name'];
      expect(policyOf('holdfast.concurrency.limit')).toBe('https://***@limits.example/');
      // Two policies, two places: the second is no `_other`.
      expect(policyOf('holdfast.breaker.slow_calls')).toBe('plain');
    } finally {
      stop();
    }
  });

  it('with one place, the limiter that holds it is reported by name', async () => {
    const { bus, meterProvider, stop } = setup(1);
    try {
      bus.emit(limitEvent('https://svc:pw@limits.example/', 5));
      const rows = await meterProvider.collect();
      expect(rows.find((r) => r.instrument === 'holdfast.concurrency.limit')?.attributes).toEqual({
        'holdfast.policy.name': 'https://***@limits.example/',
      });
    } finally {
      stop();
    }
  });
});

describe('instrument(), text where a number or a boolean belongs', () => {
  it('is never exported as that text', async () => {
    const { bus, meterProvider, stop } = setup();
    const secret = 'Zq9hunter2';
    try {
      bus.emit({
        type: 'rateLimit.storeError',
        source: 'limiter',
        time: 0,
        code: 'ECONNRESET',
        failOpen: `password=${secret}`,
      } as unknown as HoldfastEvent);
      bus.emit(limitEvent('limiter', `password=${secret}`));
      bus.emit({
        type: 'anomaly.score',
        source: 'watch',
        time: 0,
        key: 'api',
        score: `password=${secret}`,
        raised: false,
        metrics: [{ name: 'errorRate', value: 1, expected: 1, score: `token=${secret}` }],
      } as unknown as HoldfastEvent);
      const exported = JSON.stringify(await meterProvider.collect());
      expect(exported).not.toContain(secret);
    } finally {
      stop();
    }
  });
});

describe('instrument(), a URL object where a name belongs', () => {
  it('is exported hidden, one policy however many copies of it', async () => {
    const { bus, meterProvider, stop } = setup();
    try {
      for (let i = 0; i < 2; i++) {
        const url = new URL('https://app:Zq9hunter2@db.example/');
        bus.emit({
          type: 'breaker.reject',
          source: url,
          time: 0,
          state: 'open',
          code: 'E_CIRCUIT_OPEN',
        } as unknown as HoldfastEvent);
        bus.emit({
          type: 'failover.eject',
          source: 'set',
          time: 0,
          endpoint: url,
          until: 1,
          ejections: 1,
          reason: 'failures',
        } as unknown as HoldfastEvent);
      }
      const rows = await meterProvider.collect();
      expect(JSON.stringify(rows)).not.toContain('Zq9hunter2');
      expect(rows.find((r) => r.instrument === 'holdfast.breaker.calls')).toEqual({
        instrument: 'holdfast.breaker.calls',
        value: 2,
        attributes: { 'holdfast.policy.name': 'https://***@db.example/', 'holdfast.outcome': 'rejected' },
      });
    } finally {
      stop();
    }
  });
});
