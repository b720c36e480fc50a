import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBus, createPolicyRegistry, fallback, hedge } from '@holdfast/core';
import { adaptiveConcurrency, adaptiveThrottle, bulkhead, slidingWindow, tokenBucket } from '@holdfast/limit';
import { afterEach, describe, expect, it } from 'vitest';
import { type DashboardSnapshot, dashboard } from '../src/index.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function serve(server: Server): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('the dashboard shows bulkheads, rate limiters, adaptive limiters, throttles and hedges', () => {
  it('lists each from its real snapshot, counts refusals from the bus, and serves the section', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const dash = dashboard({ bus, policies, path: '/ops', interval: 100 });
    cleanups.push(() => dash.close());
    const url = await serve(createServer(dash));
    const snapshot = async () => (await (await fetch(`${url}/ops/snapshot`)).json()) as DashboardSnapshot;

    expect((await snapshot()).limits).toEqual({
      bulkheads: [],
      rateLimiters: [],
      adaptive: [],
      throttles: [],
      hedges: [],
      events: [],
    });

    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const pool = bulkhead({ maxConcurrent: 2, maxQueue: 1, bus, policies, name: 'db-pool' });
    const calls = Array.from({ length: 5 }, () => pool.execute(() => held).catch((e: unknown) => e));
    const api = tokenBucket({ limit: 2, interval: 60_000, bus, policies, name: 'api' });
    const window = slidingWindow({ limit: 10, interval: 60_000, bus, policies, name: 'per-user' });
    for (let i = 0; i < 4; i++) await api.execute(() => 1).catch(() => {});
    await window.execute(() => 1);
    const search = adaptiveConcurrency({
      algorithm: 'aimd',
      initialLimit: 3,
      window: { minTime: 0, minSamples: 1 },
      bus,
      policies,
      name: 'search',
    });
    // Failures are drops: AIMD backs off 3 -> 2.7 -> 2.43 -> 2.19 -> 1.97: the limit moves 3 -> 2 -> 1.
    for (let i = 0; i < 4; i++) await search.execute(() => Promise.reject(new Error('overloaded'))).catch(() => {});
    const backend = adaptiveThrottle({ bus, policies, random: () => 0, name: 'backend' });
    for (let i = 0; i < 10; i++) await backend.execute(() => Promise.reject(new Error('503'))).catch(() => {});
    const reads = hedge({ delay: 1000, safe: true, bus, policies, name: 'reads' });
    await reads.execute(() => 'fast');
    const cached = fallback({ value: 0, bus, name: 'prices' });
    await cached.execute(() => Promise.reject(new Error('down')));

    const during = await snapshot();
    const limits = during.limits;
    expect(limits.bulkheads).toEqual([
      { name: 'db-pool', maxConcurrent: 2, maxQueue: 1, running: 2, queued: 1, rejected: 2 },
    ]);
    expect(limits.rateLimiters).toEqual([
      {
        name: 'api',
        algorithm: 'tokenBucket',
        limit: 2,
        interval: 60_000,
        keys: 1,
        allowed: 2,
        rejected: 2,
        storeErrors: null,
      },
      {
        name: 'per-user',
        algorithm: 'slidingWindow',
        limit: 10,
        interval: 60_000,
        keys: 1,
        allowed: 1,
        rejected: 0,
        storeErrors: null,
      },
    ]);
    const learned = search.snapshot().limit;
    expect(learned).toBeLessThan(3);
    expect(limits.adaptive).toEqual([
      { name: 'search', algorithm: 'aimd', limit: learned, inFlight: 0, rejected: 0, recent: expect.any(Array) },
    ]);
    const recent = limits.adaptive[0]?.recent ?? [];
    expect(recent[0]).toBe(3);
    expect(recent.at(-1)).toBe(learned);
    const throttle = limits.throttles[0];
    expect(throttle?.name).toBe('backend');
    expect(throttle?.probability).toBeGreaterThan(0);
    expect(throttle?.rejected).toBe(backend.snapshot().rejected);
    expect(throttle?.rejected).toBeGreaterThan(0);
    expect(limits.hedges).toEqual([{ name: 'reads', calls: 1, hedges: 0, hedgeWins: 0, refused: 0, delay: 1000 }]);
    const counts = Object.fromEntries(limits.events.map((e) => [`${e.source} ${e.event}`, e.count]));
    expect(counts).toEqual({
      'db-pool bulkhead.reject': 2,
      'api rateLimit.reject': 2,
      'backend throttle.reject': throttle?.rejected,
      'prices fallback': 1,
    });
    // These kinds are shown in their own section, not among the other policies; healthReport still checks them.
    expect(during.others).toEqual([]);
    expect(during.health.checks.map((c) => c.name).sort()).toEqual(
      ['api', 'backend', 'db-pool', 'per-user', 'reads', 'search'].sort(),
    );

    release();
    await Promise.all(calls);
    const after = (await snapshot()).limits;
    expect(after.bulkheads[0]).toMatchObject({ running: 0, queued: 0, rejected: 2 });
    pool.dispose();
    expect((await snapshot()).limits.bulkheads).toEqual([]);

    const html = await (await fetch(`${url}/ops`)).text();
    expect(html).toContain('id="limits-section"');
    expect(html).toContain('Limits: bulkheads, rate limits, adaptive concurrency');
    expect(html).toContain('function renderLimits(l)');
    expect(html).toContain('renderLimits(s.limits)');
    for (const p of [api, window, search, backend, reads]) p.dispose();
  });

  it('leaves a registered entry of these kinds with an unexpected snapshot among the others', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const dash = dashboard({ bus, policies, path: '/ops', interval: 100 });
    cleanups.push(() => dash.close());
    // Held to the end: the registry holds what it lists weakly.
    const homeMade = { snapshot: () => ({ running: 'many' }) };
    policies.register('bulkhead', 'home-made', homeMade);
    const url = await serve(createServer(dash));
    const s = (await (await fetch(`${url}/ops/snapshot`)).json()) as DashboardSnapshot;
    expect(s.limits.bulkheads).toEqual([]);
    expect(s.others).toEqual([{ kind: 'bulkhead', name: 'home-made', snapshot: homeMade.snapshot() }]);
  });
});
