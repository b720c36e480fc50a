import { once } from 'node:events';
import { Agent, createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type DrillResult, drill, type FaultProxy, faultProxy } from '@holdfast/chaos';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { start } from '../examples/orders-express/main.js';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from './support/redis.js';

/**
 * Three payment upstreams sharing one ledger (as replicas share a database), each behind a fault
 * proxy the drill kills and restores. `applied` counts how many times each charge was applied.
 */
async function paymentsBehindProxies() {
  const ledger = new Map<string, number>();
  const applied = new Map<string, number>();
  const servers: Server[] = [];
  const proxies: FaultProxy[] = [];
  for (let i = 0; i < 3; i++) {
    const server = createServer((req, res) => {
      req.resume();
      req.once('end', () => {
        const key = req.headers['idempotency-key'];
        if (req.method !== 'POST' || typeof key !== 'string') {
          res.writeHead(400).end();
          return;
        }
        if (!ledger.has(key)) {
          ledger.set(key, i);
          applied.set(key, (applied.get(key) ?? 0) + 1);
        }
        res
          .writeHead(201, { 'content-type': 'application/json' })
          .end(JSON.stringify({ id: key, by: ledger.get(key) }));
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    servers.push(server);
    proxies.push(
      await faultProxy({ target: { port: (server.address() as AddressInfo).port }, name: `payments-${i + 1}` }),
    );
  }
  return {
    proxies,
    applied,
    duplicates: () => [...applied.values()].filter((n) => n > 1).length,
    async close() {
      await Promise.all(proxies.map((p) => p.close()));
      for (const s of servers) s.closeAllConnections();
      await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
    },
  };
}

const agent = new Agent({ keepAlive: true, maxSockets: 32 });

/** POST /orders with its own Idempotency-Key; true for a 201. */
function order(url: string, key: string, signal: AbortSignal): Promise<boolean> {
  const body = JSON.stringify({ sku: 'kettle', amount: 4200 });
  return new Promise((resolve, reject) => {
    const { hostname, port } = new URL(url);
    request(
      {
        host: hostname,
        port,
        path: '/orders',
        method: 'POST',
        agent,
        signal,
        headers: { 'content-type': 'application/json', 'idempotency-key': key, 'x-account': 'drill' },
      },
      (res) => {
        res.resume();
        res.once('end', () => resolve(res.statusCode === 201));
        res.once('error', reject);
      },
    )
      .once('error', reject)
      .end(body);
  });
}

describe.skipIf(!redisAvailable())('a drill against examples/orders-express', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    [redis] = (await startRedis(1)) as [RedisServer];
  });
  afterAll(async () => {
    agent.destroy();
    await stopAllRedis();
  });

  async function withOrders(
    run: (url: string, payments: Awaited<ReturnType<typeof paymentsBehindProxies>>) => Promise<void>,
  ) {
    const payments = await paymentsBehindProxies();
    const orders = await start({ redisUrl: redis.url, port: 0, paymentsUrls: payments.proxies.map((p) => p.url) });
    try {
      await run(orders.url, payments);
    } finally {
      await orders.close();
      await payments.close();
    }
  }

  it('kill one of three payment upstreams and bring it back: the objectives hold', async () => {
    let result: DrillResult | undefined;
    await withOrders(async (url, payments) => {
      const victim = payments.proxies[1] as FaultProxy;
      result = await drill({
        name: 'kill payments-2, then restore it',
        // Light and bounded: the machine it runs on is shared; what counts is what fails, not speed.
        load: { request: (i, signal) => order(url, `kill-${i}`, signal), rate: 10, duration: 3_000, timeout: 10_000 },
        steps: [
          { at: 800, name: 'kill payments-2', run: () => victim.kill() },
          { at: 1_800, name: 'restore payments-2', run: () => victim.restore() },
        ],
        objectives: { maxFailedShare: 0.05, maxDuplicates: 0, maxRecovery: 3_000 },
        duplicates: payments.duplicates,
        print: false,
      });
      // Every order that succeeded was charged exactly once; the killed upstream was really out.
      expect(payments.applied.size).toBeGreaterThanOrEqual(result.load.succeeded);
      expect(victim.snapshot().listening).toBe(true);
    });
    const r = result as DrillResult;
    expect(r.report).toContain('PASSED');
    expect(r.passed).toBe(true);
    expect(r.load.sent).toBeGreaterThan(25);
    expect(r.duplicates).toBe(0);
    expect(r.steps.map((s) => s.error)).toEqual([undefined, undefined]);
  });

  it('a drill whose objectives the service cannot meet fails, and its report says which and by how much', async () => {
    let result: DrillResult | undefined;
    await withOrders(async (url, payments) => {
      result = await drill({
        name: 'every payment upstream down for a moment',
        load: { request: (i, signal) => order(url, `down-${i}`, signal), rate: 10, duration: 2_000, timeout: 10_000 },
        steps: [
          { at: 500, name: 'kill all payments', run: () => Promise.all(payments.proxies.map((p) => p.kill())) },
          { at: 1_100, name: 'restore all payments', run: () => Promise.all(payments.proxies.map((p) => p.restore())) },
        ],
        objectives: { maxFailedShare: 0, maxRecovery: 0, maxDuplicates: 0 },
        duplicates: payments.duplicates,
        print: false,
      });
    });
    const r = result as DrillResult;
    expect(r.passed).toBe(false);
    expect(r.load.failed).toBeGreaterThan(0);
    const missed = r.objectives.filter((o) => !o.passed).map((o) => o.objective);
    expect(missed).toEqual(['maxFailedShare', 'maxRecovery']);
    expect(r.objectives.find((o) => o.objective === 'maxRecovery')?.by).toBe(r.recovery.window);
    expect(r.report).toContain('FAILED (2 of 3 objectives missed)');
    expect(r.report).toMatch(/MISS {2}failed share [\d.]+% > 0\.00%: over by [\d.]+%/);
    expect(r.report).toMatch(/MISS {2}time to recover [\d.]+ ms > 0\.0 ms: over by [\d.]+ ms/);
    expect(r.report).toMatch(/ok {4}duplicate executions 0 <= 0/);
  });
});
