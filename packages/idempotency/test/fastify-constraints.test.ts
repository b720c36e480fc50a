import { createBus } from '@holdfast/core';
import Fastify, { type FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis } from '../../../test/support/redis.js';
import { idempotency } from '../src/fastify.js';
import { memoryStore, redisStore } from '../src/index.js';

/**
 * Routes that share a method and URL and are told apart by a constraint (Accept-Version, Host,
 * a strategy of the app's own) are different routes with different handlers. A key used on one
 * and sent again to another, with the same body, is another request: it must get the 422 for a
 * reused key, never the first route's stored response (its handler never ran for it).
 */
const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

const short = '{"amount":1}';
// Past the 128 bytes memoryStore keeps unhashed: the SHA-256 path.
const long = JSON.stringify({ amount: 1, note: 'x'.repeat(200) });

type When = 'after the plugin loaded' | 'before the plugin loaded (watched late)';
const whens: When[] = ['after the plugin loaded', 'before the plugin loaded (watched late)'];

async function appWith(
  when: When,
  routes: { constraints: Record<string, unknown>; name: string }[],
  options: { constraints?: Record<string, unknown> } = {},
) {
  const app = Fastify({ constraints: options.constraints as never });
  apps.push(app);
  const ran: Record<string, number> = {};
  const registered = app.register(idempotency, { store: memoryStore(), scope: 'global', bus: createBus() });
  if (when === 'after the plugin loaded') await registered;
  for (const { constraints, name } of routes) {
    ran[name] = 0;
    app.post('/orders', { constraints }, async (_request, reply) => {
      ran[name] = (ran[name] ?? 0) + 1;
      return reply.code(201).send({ route: name, n: ran[name] });
    });
  }
  await app.ready();
  return { app, ran };
}

function post(app: FastifyInstance, key: string, headers: Record<string, string>, payload: string) {
  return app.inject({
    method: 'POST',
    url: '/orders',
    headers: { 'content-type': 'application/json', 'idempotency-key': key, ...headers },
    payload,
  });
}

describe.each(whens)('fastify plugin, routes told apart by a constraint, declared %s', (when) => {
  it.each([
    ['a short body', short],
    ['a long body', long],
  ])('Accept-Version: a key of v1 sent to v2 gets 422, %s', async (_, body) => {
    const { app, ran } = await appWith(when, [
      { constraints: { version: '1.0.0' }, name: 'v1' },
      { constraints: { version: '2.0.0' }, name: 'v2' },
    ]);
    const first = await post(app, 'k1', { 'accept-version': '1.x' }, body);
    expect(first.statusCode).toBe(201);
    expect(first.json()).toEqual({ route: 'v1', n: 1 });
    const other = await post(app, 'k1', { 'accept-version': '2.x' }, body);
    expect(other.statusCode).toBe(422);
    // An honest retry of the first still gets its stored response.
    const again = await post(app, 'k1', { 'accept-version': '1.x' }, body);
    expect({ status: again.statusCode, body: again.json() }).toEqual({ status: 201, body: { route: 'v1', n: 1 } });
    expect(ran).toEqual({ v1: 1, v2: 0 });
  });

  it('Host: a key of tenant a sent to tenant b gets 422', async () => {
    const { app, ran } = await appWith(when, [
      { constraints: { host: 'a.test' }, name: 'a' },
      { constraints: { host: 'b.test' }, name: 'b' },
    ]);
    expect((await post(app, 'k2', { host: 'a.test' }, short)).statusCode).toBe(201);
    expect((await post(app, 'k2', { host: 'b.test' }, short)).statusCode).toBe(422);
    expect((await post(app, 'k2', { host: 'a.test' }, short)).json()).toEqual({ route: 'a', n: 1 });
    expect(ran).toEqual({ a: 1, b: 0 });
  });

  it('a route without constraints beside constrained ones keeps replaying its own', async () => {
    const { app, ran } = await appWith(when, [
      { constraints: {}, name: 'plain' },
      { constraints: { version: '2.0.0' }, name: 'v2' },
    ]);
    expect((await post(app, 'k3', {}, short)).statusCode).toBe(201);
    const retry = await post(app, 'k3', {}, short);
    expect({ status: retry.statusCode, body: retry.json() }).toEqual({ status: 201, body: { route: 'plain', n: 1 } });
    expect((await post(app, 'k3', { 'accept-version': '2.x' }, short)).statusCode).toBe(422);
    expect(ran).toEqual({ plain: 1, v2: 0 });
  });
});

describe('fastify plugin, a constraint strategy of the app', () => {
  // A custom strategy: the tenant comes from a header of the app's own.
  const tenant = {
    name: 'tenant',
    storage() {
      const handlers = new Map<string, unknown>();
      return {
        get: (value: string) => handlers.get(value) ?? null,
        set: (value: string, store: unknown) => void handlers.set(value, store),
      };
    },
    deriveConstraint: (request: { headers: Record<string, string | undefined> }) => request.headers['x-tenant'],
    mustMatchWhenDerived: true,
    validate: () => true,
  };

  it('routes declared after the plugin loaded: a key of tenant a sent to tenant b gets 422', async () => {
    const { app, ran } = await appWith(
      'after the plugin loaded',
      [
        { constraints: { tenant: 'a' }, name: 'a' },
        { constraints: { tenant: 'b' }, name: 'b' },
      ],
      { constraints: { tenant } },
    );
    expect((await post(app, 'k4', { 'x-tenant': 'a' }, short)).statusCode).toBe(201);
    expect((await post(app, 'k4', { 'x-tenant': 'b' }, short)).statusCode).toBe(422);
    expect(ran).toEqual({ a: 1, b: 0 });
  });
});

describe.skipIf(!redisAvailable())('fastify plugin, constraints across two processes sharing one Redis store', () => {
  it('two apps with the same routes agree: a retry on the other instance replays, another version gets 422', async () => {
    const [server] = (await startRedis(1)) as [RedisServer];
    const clients = [new Redis(server.url), new Redis(server.url)];
    try {
      const instances: FastifyInstance[] = [];
      const ran = { v1: 0, v2: 0 };
      for (const [i, client] of clients.entries()) {
        const app = Fastify();
        apps.push(app);
        // One declared after the plugin loaded, the other before: both must fingerprint alike.
        const registered = app.register(idempotency, {
          store: redisStore({ client }),
          scope: 'global',
          bus: createBus(),
        });
        if (i === 0) await registered;
        for (const version of ['1.0.0', '2.0.0'] as const) {
          app.post('/orders', { constraints: { version } }, async (_request, reply) => {
            const name = version === '1.0.0' ? 'v1' : 'v2';
            ran[name]++;
            return reply.code(201).send({ route: name });
          });
        }
        await app.ready();
        instances.push(app);
      }
      const [one, two] = instances as [FastifyInstance, FastifyInstance];
      expect((await post(one, 'k5', { 'accept-version': '1.x' }, short)).statusCode).toBe(201);
      const retry = await post(two, 'k5', { 'accept-version': '1.x' }, short);
      expect({ status: retry.statusCode, body: retry.json() }).toEqual({ status: 201, body: { route: 'v1' } });
      expect((await post(two, 'k5', { 'accept-version': '2.x' }, short)).statusCode).toBe(422);
      expect(ran).toEqual({ v1: 1, v2: 0 });
    } finally {
      await Promise.all(apps.splice(0).map((app) => app.close()));
      for (const client of clients) client.disconnect();
      await server.stop();
    }
  });
});
