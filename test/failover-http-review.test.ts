/**
 * A hostile review of @holdfast/failover over HTTP endpoints (review-fo-http): real node:http
 * servers on loopback, the chaos fault proxy, and a manual clock where timing is the point.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { circuitBreaker } from '@holdfast/breaker';
import { faultProxy } from '@holdfast/chaos';
import { createBus, HoldfastConfigError } from '@holdfast/core';
import { type FailoverOptions, failover, NoHealthyEndpointError } from '@holdfast/failover';
import { retryBudget } from '@holdfast/retry';
import fc from 'fast-check';
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

const getText = async (url: string, signal: AbortSignal) => {
  const res = await fetch(url, { signal });
  const body = await res.text();
  if (!res.ok) throw Object.assign(new Error(`HTTP ${res.status}`), { status: res.status });
  return body;
};

/** Sends `rate` calls a second for `ms`, each on its own; resolves with every outcome. */
async function openLoop(rate: number, ms: number, send: () => Promise<string>) {
  const outcomes: { body?: string; error?: unknown }[] = [];
  const pending: Promise<void>[] = [];
  const start = performance.now();
  for (let i = 0; i < (rate * ms) / 1000; i++) {
    const wait = (i * 1000) / rate - (performance.now() - start);
    if (wait > 0) await sleep(wait);
    pending.push(
      send().then(
        (body) => void outcomes.push({ body }),
        (error: unknown) => void outcomes.push({ error }),
      ),
    );
  }
  await Promise.all(pending);
  return outcomes;
}

const codes = (outcomes: { error?: unknown }[]) => {
  const out: Record<string, number> = {};
  for (const o of outcomes) {
    const k = o.error === undefined ? 'ok' : ((o.error as { code?: string }).code ?? (o.error as Error).message);
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
};

describe('real HTTP upstreams behind the fault proxy', () => {
  it('one of three flaps (killed and restored every 200 ms): idempotent GETs all succeed', async () => {
    const servers = await Promise.all(['a', 'b', 'c'].map((n) => proxied(n)));
    const bus = createBus();
    const set = failover({
      bus,
      policies: false,
      endpoints: servers.map((s, i) => ({ name: 'abc'[i] as string, target: s.proxy.url })),
      timeout: 2_000,
      // The default budget (20% of the last second's calls) let 2 of 100 fail in one run of four:
      // each kill resets c's calls in flight at once. Failover is under test here, not the budget.
      retry: { idempotent: true, maxAttempts: 3, budget: retryBudget({ ratio: 0.5, minPerSecond: 10, ttl: 10_000 }) },
      ejection: { consecutiveFailures: 3, baseTime: 300, maxTime: 2_000 },
    });
    cleanups.push(() => set.dispose());
    const flapper = servers[2]?.proxy;
    let up = true;
    const flap = setInterval(() => {
      up = !up;
      void (up ? flapper?.restore() : flapper?.kill());
    }, 200);
    cleanups.push(() => clearInterval(flap));
    const outcomes = await openLoop(25, 4_000, () => set.execute((e, { signal }) => getText(`${e.target}/`, signal)));
    clearInterval(flap);
    expect(codes(outcomes)).toEqual({ ok: 100 });
  }, 30_000);
});

describe('thousands of calls when no endpoint can take them', () => {
  it('fail-fast: 5,000 concurrent calls are refused at once with a clear error, none reaches a server, nothing waits', async () => {
    const [a, b] = await Promise.all([proxied('a'), proxied('b')]);
    if (!a || !b) throw new Error('no upstreams');
    const set = failover({
      bus: createBus(),
      policies: false,
      endpoints: [a.proxy.url, b.proxy.url],
      panic: 'fail-fast',
      health: {
        interval: 50,
        timeout: 200,
        jitter: 0,
        unhealthyAfter: 1,
        check: (e, signal) => getText(`${e.target}/`, signal),
      },
    });
    cleanups.push(() => set.dispose());
    await Promise.all([a.proxy.kill(), b.proxy.kill()]);
    const deadline = Date.now() + 5_000;
    while (!set.snapshot().panic && Date.now() < deadline) await sleep(20);
    const served = a.up.served + b.up.served;
    let ran = 0;
    const outcomes = await Promise.all(
      Array.from({ length: 5_000 }, () =>
        set
          .execute((e, { signal }) => {
            ran++;
            return getText(`${e.target}/`, signal);
          })
          .then(
            () => 'ok',
            (e: unknown) => (e as Error).message,
          ),
      ),
    );
    expect(ran).toBe(0);
    expect(new Set(outcomes)).toEqual(new Set(['failover: no healthy endpoint can take the call (0 of 2 available)']));
    expect(a.up.served + b.up.served).toBe(served);
    expect(set.snapshot().endpoints.map((e) => e.inFlight)).toEqual([0, 0]);
  }, 30_000);

  it("panic 'all', every server dead: 2,000 concurrent calls each settle, at most two tries each, none in flight after", async () => {
    const [a, b] = await Promise.all([proxied('a'), proxied('b')]);
    if (!a || !b) throw new Error('no upstreams');
    const set = failover({
      bus: createBus(),
      policies: false,
      endpoints: [a.proxy.url, b.proxy.url],
      timeout: 5_000,
      retry: { idempotent: true },
      ejection: { consecutiveFailures: 2, baseTime: 60_000 },
    });
    cleanups.push(() => set.dispose());
    await Promise.all([a.proxy.kill(), b.proxy.kill()]);
    let tries = 0;
    const outcomes = await Promise.all(
      Array.from({ length: 2_000 }, () =>
        set
          .execute((e, { signal }) => {
            tries++;
            return getText(`${e.target}/`, signal);
          })
          .then(
            () => 'ok',
            (e: unknown) => (e as { code?: string }).code ?? (e as Error).message,
          ),
      ),
    );
    expect(outcomes.filter((o) => o === 'ok')).toEqual([]);
    expect(tries).toBeLessThanOrEqual(2 * 2_000);
    // A try cut by its timeout settles its fetch a moment later: nothing stays in flight.
    const deadline = Date.now() + 5_000;
    while (set.snapshot().endpoints.some((e) => e.inFlight > 0) && Date.now() < deadline) await sleep(20);
    expect(set.snapshot().endpoints.map((e) => e.inFlight)).toEqual([0, 0]);
  }, 60_000);
});

describe('hostile weights and keys', () => {
  it('weights of 0, NaN, Infinity, negative or past 1e6 are refused naming the endpoint; accepted ones share by weight', () => {
    for (const weight of [0, Number.NaN, Number.POSITIVE_INFINITY, -1, 1_000_001]) {
      const make = () => failover({ policies: false, endpoints: [{ name: 'a', target: 1, weight }] });
      expect(make).toThrow(HoldfastConfigError);
      expect(make).toThrow(/endpoints\.0\.weight/);
    }
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.integer({ min: 1, max: 1_000_000 }), fc.constantFrom(1e-9, 0.5, 999_999.5)), {
          minLength: 1,
          maxLength: 5,
        }),
        (weights) => {
          const set = failover({
            policies: false,
            bus: createBus(),
            endpoints: weights.map((weight, i) => ({ name: `e${i}`, target: i, weight })),
          });
          const picks = new Map<string, number>();
          const rounds = 200;
          for (let i = 0; i < rounds; i++) {
            void set.execute((e) => {
              picks.set(e.name, (picks.get(e.name) ?? 0) + 1);
              return e.name;
            });
          }
          set.dispose();
          // The heaviest endpoint gets at least its share, rounded down.
          const total = weights.reduce((s, w) => s + w, 0);
          const top = weights.indexOf(Math.max(...weights));
          expect(picks.get(`e${top}`) ?? 0).toBeGreaterThanOrEqual(
            Math.floor((rounds * (weights[top] as number)) / total) - 1,
          );
          expect([...picks.values()].reduce((s, n) => s + n, 0)).toBe(rounds);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('consistent-hash: any key (empty, unicode, lone surrogates, 1 MB) goes to one endpoint, the same every time', async () => {
    const set = failover({
      policies: false,
      bus: createBus(),
      balancer: 'consistent-hash',
      endpoints: ['a', 'b', 'c', 'd'].map((name, i) => ({ name, target: i, weight: i + 1 })),
    });
    cleanups.push(() => set.dispose());
    const where = (key: string | number) => set.execute((e) => e.name, { key });
    const special = ['', '\u0000', '\uD800', '🦀'.repeat(1000), 'x'.repeat(1 << 20), -0, 0, Number.NaN, 2 ** 60];
    for (const key of special) expect(await where(key)).toBe(await where(key));
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme' }), fc.double()),
        async (key) => {
          const first = await where(key);
          expect(['a', 'b', 'c', 'd']).toContain(first);
          expect(await where(key)).toBe(first);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('active-passive over real servers: all down, then one back, then the primary', () => {
  it('panics while both are down, takes the standby when it is back, fails back to the primary after the hold-down', async () => {
    const [p, s] = await Promise.all([proxied('primary'), proxied('standby')]);
    if (!p || !s) throw new Error('no upstreams');
    const bus = createBus();
    const seen: string[] = [];
    bus.on('failover.switch', (e) => seen.push(`switch ${e.from}->${e.to} ${e.reason}`));
    bus.on('failover.panic', (e) => seen.push(`panic ${e.active}`));
    const set = failover({
      bus,
      policies: false,
      mode: 'active-passive',
      holdDown: 500,
      timeout: 2_000,
      retry: { idempotent: true },
      endpoints: [
        { name: 'primary', target: p.proxy.url },
        { name: 'standby', target: s.proxy.url, priority: 1 },
      ],
      health: {
        interval: 50,
        timeout: 1_000,
        jitter: 0,
        unhealthyAfter: 1,
        healthyAfter: 2,
        check: (e, signal) => getText(`${e.target}/`, signal),
      },
    });
    cleanups.push(() => set.dispose());
    const get = () =>
      set
        .execute((e, { signal }) => getText(`${e.target}/`, signal))
        .catch((e: unknown) => `failed: ${(e as Error).message}`);
    const until = async (ok: () => boolean) => {
      const deadline = Date.now() + 10_000;
      while (!ok() && Date.now() < deadline) await sleep(20);
      return ok();
    };
    expect(await get()).toBe('primary');
    await Promise.all([p.proxy.kill(), s.proxy.kill()]);
    expect(await until(() => set.snapshot().panic)).toBe(true);
    expect(await get()).toMatch(/^failed: /); // both dead: the call fails, it does not hang
    await s.proxy.restore();
    expect(await until(() => set.active?.name === 'standby')).toBe(true);
    expect(await get()).toBe('standby');
    await p.proxy.restore();
    expect(await until(() => set.active?.name === 'primary')).toBe(true);
    expect(await get()).toBe('primary');
    // In panic no endpoint is active (calls go to the best in service): the standby is taken from none.
    expect(seen).toEqual([
      'switch primary->standby failover',
      'panic true',
      'panic false',
      'switch undefined->standby failover',
      'switch standby->primary failback',
    ]);
  }, 30_000);
});
