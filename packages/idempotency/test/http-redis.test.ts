import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis } from '../../../test/support/redis.js';
import { problemTypes } from '../src/http/index.js';
import { memoryStore, redisStore } from '../src/index.js';
import { expressFramework, fastifyFramework, type TestApp } from './http-support/apps.js';
import { newKey, send } from './http-support/support.js';

describe.skipIf(!redisAvailable())('HTTP middleware on a real Redis', () => {
  let server: RedisServer;
  const clients: Redis[] = [];
  const apps: TestApp[] = [];
  beforeAll(async () => {
    [server] = (await startRedis(1)) as [RedisServer];
  });
  afterEach(async () => {
    server.resume();
    if (!server.running) await server.restart();
    for (const app of apps.splice(0)) {
      app.gate.open();
      await app.close();
    }
  });
  afterAll(async () => {
    for (const client of clients) client.disconnect();
    await server?.stop();
  });
  const connect = () => {
    const client = new Redis(server.url, { maxRetriesPerRequest: 1 });
    client.on('error', () => {}); // a test stops Redis on purpose: the store reports it, ioredis need not
    clients.push(client);
    return client;
  };
  /** The same client, counting the commands (round trips) the store sends through it. */
  const counting = (client: Redis) => {
    const counter = { commands: 0 };
    const wrapped = new Proxy(client, {
      get(target, prop) {
        const value = Reflect.get(target, prop, target);
        if (prop === 'callBuffer') {
          return (...args: unknown[]) => {
            counter.commands++;
            return (value as (...a: unknown[]) => unknown).apply(target, args);
          };
        }
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    return { counter, client: wrapped };
  };

  it('runs the handler once for one key sent to two app instances (Express and Fastify) sharing Redis', async () => {
    const a = await expressFramework.start({ store: redisStore({ client: connect() }) });
    const b = await fastifyFramework.start({ store: redisStore({ client: connect() }) });
    apps.push(a, b);
    const key = newKey();
    const responses = await Promise.all(
      Array.from({ length: 60 }, (_, i) => send(`${(i % 2 ? a : b).url}/orders`, { key, body: { amount: 1 } })),
    );
    expect((a.calls.get('orders') ?? 0) + (b.calls.get('orders') ?? 0)).toBe(1);
    for (const r of responses) expect([201, 409]).toContain(r.status);
    const after = await send(`${a.url}/orders`, { key, body: { amount: 1 } });
    const afterB = await send(`${b.url}/orders`, { key, body: { amount: 1 } });
    expect(after.headers.get('idempotent-replayed')).toBe('true');
    expect(afterB.json()).toEqual(after.json());
  }, 30_000);

  it('takes two round trips for a first request and one for a replay', async () => {
    const { counter, client } = counting(connect());
    const app = await fastifyFramework.start({ store: redisStore({ client }) });
    apps.push(app);
    const key = newKey();
    await send(`${app.url}/orders`, { key, body: {} });
    expect(counter.commands).toBe(2);
    await send(`${app.url}/orders`, { key, body: {} });
    expect(counter.commands).toBe(3);
  });

  it('gives every record an expiry: unique keys do not pile up in Redis', async () => {
    const client = connect();
    const app = await expressFramework.start({ store: redisStore({ client, prefix: 'ttl-test:' }), ttlMs: 60_000 });
    apps.push(app);
    await Promise.all(Array.from({ length: 50 }, () => send(`${app.url}/orders`, { key: newKey(), body: {} })));
    const keys = await client.keys('ttl-test:*');
    expect(keys.length).toBeGreaterThan(0);
    for (const key of keys) {
      const ttl = await client.pttl(key);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(60_000);
    }
  });

  for (const framework of [expressFramework, fastifyFramework]) {
    it(`${framework.name}: answers 503 within storeTimeoutMs when Redis hangs, and recovers`, async () => {
      const app = await framework.start({ store: redisStore({ client: connect() }), storeTimeoutMs: 200 });
      apps.push(app);
      server.pause();
      const res = await send(`${app.url}/orders`, { key: newKey(), body: {} });
      expect(res.status).toBe(503);
      expect(res.json()).toMatchObject({ type: problemTypes.storeUnavailable });
      expect(app.calls.get('orders')).toBeUndefined();
      server.resume();
      const key = newKey();
      let ok: Awaited<ReturnType<typeof send>> | undefined;
      for (let i = 0; i < 50 && ok?.status !== 201; i++) ok = await send(`${app.url}/orders`, { key, body: {} });
      expect(ok?.status).toBe(201);
    });

    it(`${framework.name}: answers 503 when Redis is gone, or lets requests through when fail-open`, async () => {
      const closed = await framework.start({ store: redisStore({ client: connect() }), storeTimeoutMs: 500 });
      const open = await framework.start({
        store: redisStore({ client: connect(), onStoreError: 'fail-open' }),
        storeTimeoutMs: 500,
      });
      apps.push(closed, open);
      await server.kill();
      const refused = await send(`${closed.url}/orders`, { key: newKey(), body: {} });
      expect(refused.status).toBe(503);
      expect(closed.calls.get('orders')).toBeUndefined();
      const passed = await send(`${open.url}/orders`, { key: newKey(), body: {} });
      expect(passed.status).toBe(201);
      expect(open.calls.get('orders')).toBe(1);
    });
  }
});

describe('memory store under unique keys', () => {
  it('stays within maxEntries however many keys arrive', async () => {
    const store = memoryStore({ maxEntries: 100 });
    const app = await fastifyFramework.start({ store });
    try {
      for (let batch = 0; batch < 6; batch++) {
        await Promise.all(Array.from({ length: 50 }, () => send(`${app.url}/orders`, { key: newKey(), body: {} })));
      }
      expect(app.calls.get('orders')).toBe(300);
      expect(store.size).toBeLessThanOrEqual(100);
    } finally {
      await app.close();
      store.dispose();
    }
  });
});
