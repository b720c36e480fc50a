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

/** An HTTP server on a free loopback port that answers its name, and counts what it served. */
async function upstream(name: string, handler?: (path: string) => number) {
  let served = 0;
  const server: Server = createServer((req, res) => {
    served++;
    req.resume();
    res.statusCode = handler?.(req.url ?? '/') ?? 200;
    res.end(name);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    get served() {
      return served;
    },
  };
}

async function proxied(name: string, handler?: (path: string) => number) {
  const up = await upstream(name, handler);
  const proxy = await faultProxy({ target: { port: up.port }, bus: createBus() });
  cleanups.push(() => proxy.close());
  return { up, proxy };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('health checks against a frozen server', () => {
  it('a check that ignores its signal (fetch without it) never has two in flight on one endpoint', async () => {
    const { proxy } = await proxied('a');
    let running = 0;
    let most = 0;
    const set = failover({
      policies: false,
      bus: createBus(),
      endpoints: [proxy.url],
      health: {
        interval: 50,
        timeout: 50,
        jitter: 0,
        unhealthyAfter: 2,
        check: async (e) => {
          running++;
          most = Math.max(most, running);
          try {
            // A common slip: the signal is not passed on, so a frozen server holds the check.
            return (await fetch(`${e.target}/health`)).ok;
          } finally {
            running--;
          }
        },
      },
    });
    cleanups.push(() => set.dispose());
    await sleep(300);
    proxy.freeze();
    await sleep(1_500);
    expect(set.snapshot().endpoints[0]?.health).toBe('unhealthy');
    const connections = proxy.snapshot().connections;
    expect({ most, connections }).toEqual({ most: 1, connections: 1 });
    // The server thaws: the held check answers, the next ones pass, the endpoint is back.
    await proxy.restore();
    const deadline = Date.now() + 5_000;
    while (set.snapshot().endpoints[0]?.health !== 'healthy' && Date.now() < deadline) await sleep(20);
    expect(set.snapshot().endpoints[0]?.health).toBe('healthy');
    expect(most).toBe(1);
  });
});

describe('a breaker around a set that refuses every call', () => {
  // An operator drains every endpoint of a set for a deploy; calls meanwhile are refused by the set
  // with E_NO_HEALTHY_ENDPOINT, nothing sent. A breaker around the set counted those refusals as the
  // downstream's failures: it opened, and after undrain it refused calls for `openFor` (30 s) to
  // servers that were back. An inner breaker's E_CIRCUIT_OPEN, refused the same way, is not counted.
  it('does not count E_NO_HEALTHY_ENDPOINT: it sent nothing; calls go through at once after undrain', async () => {
    const { api, clock, bus } = hostileSet({ endpoints: ['a', 'b'] });
    const guard = circuitBreaker({ name: 'orders', consecutiveFailures: 3, clock, bus, policies: false });
    await Promise.all([api.drain('a'), api.drain('b')]);
    const refused: unknown[] = [];
    for (let i = 0; i < 5; i++)
      refused.push(await guard.execute(() => api.execute((e) => e.name)).catch((e: unknown) => e));
    expect(refused.map((e) => (e as { code?: string }).code)).toEqual(Array(5).fill('E_NO_HEALTHY_ENDPOINT'));
    expect(refused[0]).toBeInstanceOf(NoHealthyEndpointError);
    api.undrain('a');
    api.undrain('b');
    expect(guard.state).toBe('closed');
    expect(await guard.execute(() => api.execute((e) => e.name))).toBe('a');
  });

  it('panic fail-fast: refusals are not counted either, only the failures that led to them', async () => {
    const { api, clock, bus } = hostileSet({
      endpoints: ['a', 'b'],
      panic: 'fail-fast',
      retry: false,
      ejection: { consecutiveFailures: 1, baseTime: 1_000, maxShare: 1 },
    });
    const guard = circuitBreaker({ name: 'orders', consecutiveFailures: 3, clock, bus, policies: false });
    const down = () =>
      guard.execute(() => api.execute(() => Promise.reject(new Error('HTTP 503')))).catch((e: unknown) => e);
    // Two real failures eject both endpoints (b's ejection panics the set); the next calls are refused.
    const outcomes = [await down(), await down(), await down(), await down()];
    expect(outcomes.map((e) => (e as { code?: string }).code ?? (e as Error).message)).toEqual([
      'HTTP 503',
      'HTTP 503',
      'E_NO_HEALTHY_ENDPOINT',
      'E_NO_HEALTHY_ENDPOINT',
    ]);
    expect(guard.state).toBe('closed');
  });
});

describe('a retry whose last endpoint goes away', () => {
  it('fails with the error the endpoint gave, not a refusal, when a listener drains the rest', async () => {
    const { api, bus } = hostileSet({ endpoints: ['a', 'b'], retry: { idempotent: true } });
    bus.on('retry.attempt', () => void api.drain('b'));
    const error = await api
      .execute((e) => Promise.reject(Object.assign(new Error(`HTTP 503 from ${e.name}`), { status: 503 })))
      .catch((e: unknown) => e);
    expect((error as Error).message).toBe('HTTP 503 from a');
  });
});
