import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { start as startExpress } from '../examples/orders-express/main.js';
import { start as startFastify } from '../examples/orders-fastify/main.js';
import { run as runWorker } from '../examples/worker/main.js';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from './support/redis.js';

describe('examples/worker', () => {
  it('processes every message once under at-least-once delivery', async () => {
    const r = await runWorker(undefined, 100);
    expect(r.delivered).toBeGreaterThan(r.messages);
    expect(r.executions).toBe(r.messages);
    expect(r.total).toBe(r.expected);
  });
});

describe.skipIf(!redisAvailable())('examples/orders-*: POST /orders on Redis, payments with failover', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    [redis] = (await startRedis(1)) as [RedisServer];
  });
  afterAll(stopAllRedis);

  it('the two fingerprint a request alike: a key used on the Express service replays on the Fastify one (a move between them, one Redis)', async () => {
    const [onExpress, onFastify] = [
      await startExpress({ redisUrl: redis.url, port: 0 }),
      await startFastify({ redisUrl: redis.url, port: 0 }),
    ];
    try {
      const post = (url: string) =>
        fetch(`${url}/orders`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': 'moved-1', 'x-account': 'acme' },
          body: JSON.stringify({ sku: 'kettle', amount: 4200 }),
        });
      const first = await post(onExpress.url);
      expect(first.status).toBe(201);
      const created = await first.json();
      const again = await post(onFastify.url);
      expect(again.status).toBe(201);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(await again.json()).toEqual(created);
    } finally {
      await onExpress.close();
      await onFastify.close();
    }
  });

  for (const [name, start] of [
    ['express', startExpress],
    ['fastify', startFastify],
  ] as const) {
    it(`${name}: creates an order once per key and account, replays repeats, and survives a payments instance dying`, async () => {
      const orders = await start({ redisUrl: redis.url, port: 0 });
      try {
        // Both examples share the test's Redis: keys are per framework.
        const post = (key: string, account: string, body: object = { sku: 'kettle', amount: 4200 }) =>
          fetch(`${orders.url}/orders`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'idempotency-key': `${name}-${key}`, 'x-account': account },
            body: JSON.stringify(body),
          });

        const first = await post('k-1', 'acme');
        expect(first.status).toBe(201);
        const created = await first.json();
        const again = await post('k-1', 'acme');
        expect(again.status).toBe(201);
        expect(again.headers.get('idempotent-replayed')).toBe('true');
        expect(await again.json()).toEqual(created);

        // Another account's k-1 is another order.
        const other = await post('k-1', 'globex');
        expect(other.status).toBe(201);
        expect(other.headers.get('idempotent-replayed')).toBeNull();

        // Same key, other body: 422.
        expect((await post('k-1', 'acme', { sku: 'toaster', amount: 1 })).status).toBe(422);
        // No key: 400 (no account: 401, tested in examples-hostile-review.test.ts).
        const noKey = await fetch(`${orders.url}/orders`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-account': 'acme' },
          body: '{}',
        });
        expect(noKey.status).toBe(400);

        await orders.payments?.kill(0);
        for (let i = 0; i < 4; i++) expect((await post(`after-kill-${i}`, 'acme')).status).toBe(201);
        expect(orders.payments?.ledger.size).toBe(6);
      } finally {
        await orders.close();
      }
    });
  }
});
