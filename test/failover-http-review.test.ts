/**
 * A hostile review of @holdfast/failover over HTTP endpoints (review-fo-http): real node:http
 * servers on loopback, the chaos fault proxy, and a manual clock where timing is the point.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { circuitBreaker } from '@holdfast/breaker';
import { faultProxy } from '@holdfast/chaos';
import { createBus, type EventOf, type EventType, HoldfastConfigError, pipeline } from '@holdfast/core';
import { type FailoverOptions, failover, NoHealthyEndpointError } from '@holdfast/failover';
import { afterEach, describe, expect, it } from 'vitest';
import { hostileHarness } from './support/hostile.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
const noop = () => {};

function hostileSet<T>(options: Omit<FailoverOptions<T>, 'clock' | 'bus' | 'policies'>, start?: number) {
  const h = hostileHarness(start);
  const api = failover<T>({ clock: h.clock, bus: h.bus, policies: false, ...options });
  cleanups.push(() => api.dispose());
  return { ...h, api };
}

describe('secrets in object-form endpoint names', () => {
  it('a name that is a URL with credentials never shows in snapshots, events or errors', async () => {
    const secret = 'hunter2-S3CRET';
    const { api, clock, events } = hostileSet({
      endpoints: [
        { name: `https://svc:${secret}@orders-1.internal`, target: 1 },
        { name: `https://orders-2.internal/?token=${secret}`, target: 2 },
      ],
      timeout: 100,
      retry: { idempotent: true },
      ejection: { consecutiveFailures: 1, baseTime: 1_000 },
      health: { check: () => new Promise(noop), interval: 1_000, timeout: 50, unhealthyAfter: 1 },
    });
    const call = api.execute(() => new Promise<never>(noop)).catch((e: unknown) => e);
    await clock.advance(100);
    await clock.advance(100);
    await clock.advance(2_000);
    const error = (await call) as Error;
    expect(String(error.message)).not.toContain(secret);
    expect(JSON.stringify(api.snapshot())).not.toContain(secret);
    expect(events.map((e) => e.type)).toContain('failover.eject');
    expect(events.map((e) => e.type)).toContain('health.change');
    expect(JSON.stringify(events)).not.toContain(secret);
  });

  it('operator calls find such an endpoint by the name given or shown; names alike once hidden are refused', async () => {
    const secret = 'hunter2-S3CRET';
    const given = `https://svc:${secret}@orders-1.internal`;
    const { api } = hostileSet({
      endpoints: [
        { name: given, target: 1 },
        { name: 'b', target: 2 },
      ],
    });
    expect(api.endpoints[0]?.name).toBe('https://***@orders-1.internal/');
    await api.drain(given);
    expect(api.snapshot().endpoints[0]?.role).toBe('drained');
    api.undrain('https://***@orders-1.internal/');
    expect(api.snapshot().endpoints[0]?.role).toBe('member');
    const twins = () =>
      failover({
        policies: false,
        endpoints: [
          { name: `https://svc:one-${secret}@orders.internal`, target: 1 },
          { name: `https://svc:two-${secret}@orders.internal`, target: 2 },
        ],
      });
    expect(twins).toThrow(HoldfastConfigError);
    expect(twins).toThrow(
      'endpoints.1.name is not unique once its secrets are hidden as ***: endpoint 0 has the same name',
    );
    expect(() => twins()).not.toThrow(secret);
  });
});
