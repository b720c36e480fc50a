import { once } from 'node:events';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { createBus } from '@holdfast/core';
import Fastify, { type FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis } from '../../../test/support/redis.js';
import { idempotency } from '../src/fastify.js';
import { fingerprintOf } from '../src/http/fingerprint.js';
import { memoryStore, redisStore } from '../src/index.js';
import type { IdempotencyStore } from '../src/store.js';

/**
 * An outsider's attacks on the Fastify plugin's constraint fingerprint (routes of one method and
 * URL told apart by Host, Accept-Version or a strategy of the app's own). Two things must hold
 * on every path: a request that reaches another route's handler never gets the first route's
 * stored response (it gets the 422 for a reused key), and an honest retry (same route, same
 * headers, same body) still gets its stored response.
 */
const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

const body = '{"amount":1}';

function post(app: FastifyInstance, key: string, headers: Record<string, string>, payload = body) {
  return app.inject({
    method: 'POST',
    url: '/orders',
    headers: { 'content-type': 'application/json', 'idempotency-key': key, ...headers },
    payload,
  });
}

/** A constraint strategy of the app's, named `name`, whose value is the request's `header`. */
function headerStrategy(name: string, header: string) {
  return {
    name,
    storage() {
      const handlers = new Map<unknown, unknown>();
      return {
        get: (value: unknown) => handlers.get(value) ?? null,
        set: (value: unknown, store: unknown) => void handlers.set(value, store),
      };
    },
    deriveConstraint: (request: { headers: Record<string, string | string[] | undefined> }) => request.headers[header],
    mustMatchWhenDerived: true,
    validate: () => true,
  };
}

/** An app with the plugin, then one POST /orders route for each of `routes`; its handlers' runs. */
async function appWith(
  routes: { name: string; constraints?: Record<string, unknown> }[],
  options: { constraints?: Record<string, unknown> } = {},
) {
  const app = Fastify({ constraints: options.constraints as never });
  apps.push(app);
  await app.register(idempotency, { store: memoryStore(), scope: 'global', bus: createBus() });
  const ran: Record<string, number> = {};
  for (const { name, constraints } of routes) {
    ran[name] = 0;
    app.route({
      method: 'POST',
      url: '/orders',
      ...(constraints === undefined ? {} : { constraints }),
      handler: async (_request, reply) => {
        ran[name] = (ran[name] ?? 0) + 1;
        return reply.code(201).send({ route: name, n: ran[name] });
      },
    });
  }
  await app.ready();
  return { app, ran };
}

describe('fastify constraints attack: a strategy of the app that replaces Fastify`s own', () => {
  it('a custom `version` strategy (versions in the Accept header, as in the Fastify docs): a key of v1 sent to v2 gets 422', async () => {
    const version = headerStrategy('version', 'accept');
    const { app, ran } = await appWith(
      [
        { name: 'v1', constraints: { version: 'application/vnd.shop.v1+json' } },
        { name: 'v2', constraints: { version: 'application/vnd.shop.v2+json' } },
      ],
      { constraints: { version } },
    );
    const first = await post(app, 'k1', { accept: 'application/vnd.shop.v1+json' });
    expect(first.json()).toEqual({ route: 'v1', n: 1 });
    const other = await post(app, 'k1', { accept: 'application/vnd.shop.v2+json' });
    expect(other.statusCode).toBe(422);
    const again = await post(app, 'k1', { accept: 'application/vnd.shop.v1+json' });
    expect({ status: again.statusCode, body: again.json() }).toEqual({ status: 201, body: { route: 'v1', n: 1 } });
    expect(ran).toEqual({ v1: 1, v2: 0 });
  });

  it('a custom `host` strategy (the tenant from X-Forwarded-Host behind a proxy): a key of tenant a sent to tenant b gets 422', async () => {
    const host = headerStrategy('host', 'x-forwarded-host');
    const { app, ran } = await appWith(
      [
        { name: 'a', constraints: { host: 'a.test' } },
        { name: 'b', constraints: { host: 'b.test' } },
      ],
      { constraints: { host } },
    );
    // The proxy's Host is the same for every tenant.
    expect((await post(app, 'k2', { host: 'proxy', 'x-forwarded-host': 'a.test' })).statusCode).toBe(201);
    expect((await post(app, 'k2', { host: 'proxy', 'x-forwarded-host': 'b.test' })).statusCode).toBe(422);
    expect((await post(app, 'k2', { host: 'proxy', 'x-forwarded-host': 'a.test' })).json()).toEqual({
      route: 'a',
      n: 1,
    });
    expect(ran).toEqual({ a: 1, b: 0 });
  });
});

/** One request over HTTP/2 to `port`: its status and body. */
async function h2(
  port: number,
  key: string,
  headers: Record<string, string>,
): Promise<{ status: number; body: string }> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    const stream = session.request({
      ':method': 'POST',
      ':path': '/orders',
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(body)),
      'idempotency-key': key,
      ...headers,
    });
    stream.end(body);
    const [head] = (await once(stream, 'response')) as [http2.IncomingHttpHeaders];
    let text = '';
    stream.setEncoding('utf8');
    for await (const chunk of stream) text += chunk;
    return { status: Number(head[':status']), body: text };
  } finally {
    session.close();
  }
}

describe('fastify constraints attack: HTTP/2, where the host is `:authority`', () => {
  async function h2App() {
    const app = Fastify({ http2: true });
    apps.push(app as unknown as FastifyInstance);
    await app.register(idempotency, { store: memoryStore(), scope: 'global', bus: createBus() });
    const ran = { a: 0, b: 0 };
    for (const name of ['a', 'b'] as const) {
      app.post('/orders', { constraints: { host: `${name}.test` } }, async (_request, reply) => {
        ran[name]++;
        return reply.code(201).send({ route: name, n: ran[name] });
      });
    }
    await app.listen({ port: 0, host: '127.0.0.1' });
    return { port: (app.server.address() as AddressInfo).port, ran };
  }

  it('a retry to the same authority replays, a key of tenant a sent to tenant b gets 422', async () => {
    const { port, ran } = await h2App();
    expect(await h2(port, 'k-h2', { ':authority': 'a.test' })).toEqual({ status: 201, body: '{"route":"a","n":1}' });
    expect(await h2(port, 'k-h2', { ':authority': 'a.test' })).toEqual({ status: 201, body: '{"route":"a","n":1}' });
    expect((await h2(port, 'k-h2', { ':authority': 'b.test' })).status).toBe(422);
    expect(ran).toEqual({ a: 1, b: 0 });
  });

  it('a Host beside `:authority` that names another tenant (Fastify routes by Host): each fingerprints by the one it routes by', async () => {
    const { port, ran } = await h2App();
    // nghttp2 refuses an empty Host, so Host, when sent, is what both Fastify and the plugin read.
    expect((await h2(port, 'k-h2e', { ':authority': 'b.test', host: 'a.test' })).body).toBe('{"route":"a","n":1}');
    expect((await h2(port, 'k-h2e', { ':authority': 'b.test', host: 'a.test' })).body).toBe('{"route":"a","n":1}');
    const other = await h2(port, 'k-h2e', { ':authority': 'a.test', host: 'b.test' });
    expect({ status: other.status, ran }).toEqual({ status: 422, ran: { a: 1, b: 0 } });
  });
});

/** One HTTP/1.1 request over its own socket with the head lines `lines`: status and body. */
function raw(port: number, key: string, lines: string, payload = body): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let got = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      got += chunk;
    });
    socket.on('error', reject);
    socket.on('close', () => {
      const at = got.indexOf('\r\n\r\n');
      resolve({ status: Number(got.slice(9, 12)), body: got.slice(at + 4) });
    });
    socket.end(
      `POST /orders HTTP/1.1\r\n${lines}Content-Type: application/json\r\nIdempotency-Key: ${key}\r\n` +
        `Content-Length: ${Buffer.byteLength(payload)}\r\nConnection: close\r\n\r\n${payload}`,
    );
  });
}

describe('fastify constraints attack: over a real socket (the early replay, before the body is parsed)', () => {
  async function listening(routes: { name: string; constraints?: Record<string, unknown> }[]) {
    const app = Fastify();
    apps.push(app);
    // Requests whose body Fastify parsed: a replay answered early has none.
    const counts = { parsed: 0 };
    app.addHook('onResponse', async (request) => {
      if (request.body !== undefined) counts.parsed++;
    });
    await app.register(idempotency, { store: memoryStore(), scope: 'global', bus: createBus() });
    const ran: Record<string, number> = {};
    for (const { name, constraints } of routes) {
      ran[name] = 0;
      app.post('/orders', constraints === undefined ? {} : { constraints }, async (_request, reply) => {
        ran[name] = (ran[name] ?? 0) + 1;
        return reply.code(201).send({ route: name, n: ran[name] });
      });
    }
    await app.listen({ port: 0, host: '127.0.0.1' });
    return { port: (app.server.address() as AddressInfo).port, ran, counts };
  }

  it('Accept-Version: an honest retry is replayed early, a key of v1 sent to v2 gets 422 and v2 never runs', async () => {
    const { port, ran, counts } = await listening([
      { name: 'v1', constraints: { version: '1.0.0' } },
      { name: 'v2', constraints: { version: '2.0.0' } },
    ]);
    const v1 = 'Host: x\r\nAccept-Version: 1.x\r\n';
    expect(await raw(port, 'k-e', v1)).toEqual({ status: 201, body: '{"route":"v1","n":1}' });
    expect(await raw(port, 'k-e', v1)).toEqual({ status: 201, body: '{"route":"v1","n":1}' });
    expect(counts.parsed).toBe(1);
    expect((await raw(port, 'k-e', 'Host: x\r\nAccept-Version: 2.x\r\n')).status).toBe(422);
    // Accept-Version sent twice: Node joins the copies, which no version matches (Fastify's 404).
    expect((await raw(port, 'k-e', 'Host: x\r\nAccept-Version: 1.x\r\nAccept-Version: 1.x\r\n')).status).toBe(404);
    expect(ran).toEqual({ v1: 1, v2: 0 });
  });

  it('Host spelled otherwise (case, a port): Fastify routes it to the route without a host, and it never gets a.test`s response', async () => {
    const { port, ran } = await listening([{ name: 'a', constraints: { host: 'a.test' } }, { name: 'any' }]);
    expect(await raw(port, 'k-h', 'Host: a.test\r\n')).toEqual({ status: 201, body: '{"route":"a","n":1}' });
    expect(await raw(port, 'k-h', 'Host: a.test\r\n')).toEqual({ status: 201, body: '{"route":"a","n":1}' });
    // Fastify's host strategy matches a string exactly: these reach the other route.
    for (const host of ['A.test', 'a.test:80']) expect((await raw(port, 'k-h', `Host: ${host}\r\n`)).status).toBe(422);
    expect(ran).toEqual({ a: 1, any: 0 });
    // Another key, its retry with the same Host spelling: replayed.
    expect(await raw(port, 'k-h2', 'Host: A.test\r\n')).toEqual({ status: 201, body: '{"route":"any","n":1}' });
    expect(await raw(port, 'k-h2', 'Host: A.test\r\n')).toEqual({ status: 201, body: '{"route":"any","n":1}' });
    expect(ran).toEqual({ a: 1, any: 1 });
  });

  it('no Accept-Version on a server with versioned routes: the route without a version replays its own', async () => {
    const { port, ran } = await listening([{ name: 'plain' }, { name: 'v1', constraints: { version: '1.0.0' } }]);
    expect(await raw(port, 'k-n', 'Host: x\r\n')).toEqual({ status: 201, body: '{"route":"plain","n":1}' });
    expect(await raw(port, 'k-n', 'Host: x\r\n')).toEqual({ status: 201, body: '{"route":"plain","n":1}' });
    expect((await raw(port, 'k-n', 'Host: x\r\nAccept-Version: 1.0.0\r\n')).status).toBe(422);
    expect(ran).toEqual({ plain: 1, v1: 0 });
  });
});

describe('fastify constraints attack: values and configs of an app`s own strategy', () => {
  /** A strategy whose routes each take a pattern of tenants, the request's from X-Tenant. */
  const pattern = {
    name: 'pattern',
    storage() {
      const handlers: [RegExp, unknown][] = [];
      return {
        get: (tenant: string) => handlers.find(([re]) => re.test(tenant))?.[1] ?? null,
        set: (re: RegExp, store: unknown) => void handlers.push([re, store]),
      };
    },
    deriveConstraint: (request: { headers: Record<string, string | undefined> }) => request.headers['x-tenant'],
    mustMatchWhenDerived: true,
    validate: () => true,
  };

  it('constraint values that are patterns: a key of /^a/ sent to /^b/ gets 422, a retry on /^a/ replays', async () => {
    const { app, ran } = await appWith(
      [
        { name: 'a', constraints: { pattern: /^a/ } },
        { name: 'b', constraints: { pattern: /^b/ } },
      ],
      { constraints: { pattern } },
    );
    expect((await post(app, 'k-s', { 'x-tenant': 'a1' })).json()).toEqual({ route: 'a', n: 1 });
    expect((await post(app, 'k-s', { 'x-tenant': 'b1' })).statusCode).toBe(422);
    // Another tenant of the same route, the same key and body: the same handler, replayed.
    expect((await post(app, 'k-s', { 'x-tenant': 'a2' })).json()).toEqual({ route: 'a', n: 1 });
    expect(ran).toEqual({ a: 1, b: 0 });
  });

  it('a config object shared by two routes, frozen: each route keeps its own constraints, the app reads its config, the object is untouched', async () => {
    const tenant = headerStrategy('tenant', 'x-tenant');
    const app = Fastify({ constraints: { tenant } as never });
    apps.push(app);
    await app.register(idempotency, { store: memoryStore(), scope: 'global', bus: createBus() });
    const config = Object.freeze({ tag: 'orders' });
    const seen: unknown[] = [];
    for (const name of ['a', 'b']) {
      app.post('/orders', { config, constraints: { tenant: name } }, async (request, reply) => {
        seen.push(request.routeOptions.config.tag);
        return reply.code(201).send({ route: name });
      });
    }
    await app.ready();
    expect((await post(app, 'k-c', { 'x-tenant': 'a' })).json()).toEqual({ route: 'a' });
    expect((await post(app, 'k-c', { 'x-tenant': 'b' })).statusCode).toBe(422);
    expect((await post(app, 'k-c2', { 'x-tenant': 'b' })).json()).toEqual({ route: 'b' });
    expect(seen).toEqual(['orders', 'orders']);
    expect(Object.getOwnPropertySymbols(config)).toEqual([]);
  });

  it('an async strategy (its deriveConstraint takes a callback): a key of tenant a sent to tenant b gets 422', async () => {
    const tenant = {
      ...headerStrategy('tenant', 'x-tenant'),
      deriveConstraint: (
        request: { headers: Record<string, string | undefined> },
        _ctx: unknown,
        done: (error: Error | null, value?: string) => void,
      ) => setImmediate(() => done(null, request.headers['x-tenant'])),
    };
    const { app, ran } = await appWith(
      [
        { name: 'a', constraints: { tenant: 'a' } },
        { name: 'b', constraints: { tenant: 'b' } },
      ],
      { constraints: { tenant } },
    );
    expect((await post(app, 'k-as', { 'x-tenant': 'a' })).statusCode).toBe(201);
    expect((await post(app, 'k-as', { 'x-tenant': 'a' })).json()).toEqual({ route: 'a', n: 1 });
    expect((await post(app, 'k-as', { 'x-tenant': 'b' })).statusCode).toBe(422);
    expect(ran).toEqual({ a: 1, b: 0 });
  });
});

describe('fastify constraints attack: registrations, and servers without constraints', () => {
  it('a versioned route declared before the plugin loaded, another after: each replays its own, a key of one sent to the other gets 422', async () => {
    const app = Fastify();
    apps.push(app);
    const ran = { v1: 0, v2: 0 };
    // v1 before the plugin: Fastify's version strategy is in use when onRoute sees v2.
    app.post('/orders', { constraints: { version: '1.0.0' } }, async (_request, reply) =>
      reply.code(201).send({ route: 'v1', n: ++ran.v1 }),
    );
    await app.register(idempotency, { store: memoryStore(), scope: 'global', bus: createBus() });
    app.post('/orders', { constraints: { version: '2.0.0' } }, async (_request, reply) =>
      reply.code(201).send({ route: 'v2', n: ++ran.v2 }),
    );
    await app.ready();
    for (const [key, version, other] of [
      ['k-b1', '1.x', '2.x'],
      ['k-b2', '2.x', '1.x'],
    ] as const) {
      const first = await post(app, key, { 'accept-version': version });
      expect(first.statusCode).toBe(201);
      expect((await post(app, key, { 'accept-version': version })).json()).toEqual(first.json());
      expect((await post(app, key, { 'accept-version': other })).statusCode).toBe(422);
    }
    expect(ran).toEqual({ v1: 1, v2: 1 });
  });

  it('the plugin registered twice (outer and in an encapsulated context): v1`s key sent to v2 gets 422 from each, a retry replays', async () => {
    const app = Fastify();
    apps.push(app);
    const ran = { v1: 0, v2: 0 };
    await app.register(idempotency, { store: memoryStore(), scope: 'global', bus: createBus() });
    await app.register(async (child) => {
      await child.register(idempotency, { store: memoryStore(), scope: 'global', bus: createBus() });
      for (const name of ['v1', 'v2'] as const) {
        child.route({
          method: 'POST',
          url: '/orders',
          constraints: { version: name === 'v1' ? '1.0.0' : '2.0.0' },
          handler: async (_request, reply) => reply.code(201).send({ route: name, n: ++ran[name] }),
        });
      }
    });
    await app.ready();
    expect((await post(app, 'k-n', { 'accept-version': '1.x' })).json()).toEqual({ route: 'v1', n: 1 });
    expect((await post(app, 'k-n', { 'accept-version': '1.x' })).json()).toEqual({ route: 'v1', n: 1 });
    expect((await post(app, 'k-n', { 'accept-version': '2.x' })).statusCode).toBe(422);
    expect(ran).toEqual({ v1: 1, v2: 0 });
  });

  it('a server without constraints fingerprints exactly as before (a record of the previous build still replays)', async () => {
    const fingerprints: string[] = [];
    const inner = memoryStore();
    // Not the in-process store (the general path, which hands the store the fingerprint itself).
    const store: IdempotencyStore = {
      claim: (key, fingerprint, leaseMs) => {
        fingerprints.push(fingerprint);
        return inner.claim(key, fingerprint, leaseMs);
      },
      complete: (key, token, outcome, ttlMs) => inner.complete(key, token, outcome, ttlMs),
      release: (key, token) => inner.release(key, token),
    };
    // A strategy of the app's that no route uses changes nothing either.
    const app = Fastify({ constraints: { tenant: headerStrategy('tenant', 'x-tenant') } as never });
    apps.push(app);
    await app.register(idempotency, { store, scope: 'global', bus: createBus(), fingerprint: ['x-client'] });
    app.post('/orders', async (_request, reply) => reply.code(201).send({ ok: true }));
    await app.ready();
    const long = JSON.stringify({ amount: 1, note: 'x'.repeat(200) });
    for (const payload of [body, long]) {
      await post(app, `k-${payload.length}`, { 'x-client': 'c1' }, payload);
    }
    expect(fingerprints).toEqual(
      [body, long].map((payload) =>
        fingerprintOf('POST', '/orders', 'application/json', undefined, Buffer.from(payload), ['c1']),
      ),
    );
  });
});

describe('fastify constraints attack: a hook of the app that changes a routing header after Fastify routed', () => {
  it('Accept-Version defaulted in onRequest (after routing): the route without a version never gets v2`s response', async () => {
    const app = Fastify();
    apps.push(app);
    const ran = { plain: 0, v2: 0 };
    // An app that records the version it served, the newest when none was asked for.
    app.addHook('onRequest', async (request) => {
      request.headers['accept-version'] ??= '2.x';
    });
    await app.register(idempotency, { store: memoryStore(), scope: 'global', bus: createBus() });
    app.post('/orders', async (_request, reply) => reply.code(201).send({ route: 'plain', n: ++ran.plain }));
    app.post('/orders', { constraints: { version: '2.0.0' } }, async (_request, reply) =>
      reply.code(201).send({ route: 'v2', n: ++ran.v2 }),
    );
    await app.ready();
    expect((await post(app, 'k-d', { 'accept-version': '2.x' })).json()).toEqual({ route: 'v2', n: 1 });
    const plain = await post(app, 'k-d', {});
    expect({ status: plain.statusCode, ran }).toEqual({ status: 422, ran: { plain: 0, v2: 1 } });
  });
});

describe.skipIf(!redisAvailable())(
  'fastify constraints attack: an app`s own version strategy, two processes sharing one Redis store',
  () => {
    it('a retry on the other instance replays, a key of v1 sent to v2 on either gets 422', async () => {
      const [server] = (await startRedis(1)) as [RedisServer];
      const clients = [new Redis(server.url), new Redis(server.url)];
      try {
        const ran = { v1: 0, v2: 0 };
        const instances: FastifyInstance[] = [];
        for (const client of clients) {
          const app = Fastify({ constraints: { version: headerStrategy('version', 'accept') } as never });
          apps.push(app);
          await app.register(idempotency, { store: redisStore({ client }), scope: 'global', bus: createBus() });
          for (const name of ['v1', 'v2'] as const) {
            app.post('/orders', { constraints: { version: `application/vnd.shop.${name}+json` } }, async (_r, reply) =>
              reply.code(201).send({ route: name, n: ++ran[name] }),
            );
          }
          await app.ready();
          instances.push(app);
        }
        const [one, two] = instances as [FastifyInstance, FastifyInstance];
        const v1 = { accept: 'application/vnd.shop.v1+json' };
        const v2 = { accept: 'application/vnd.shop.v2+json' };
        expect((await post(one, 'k-r', v1)).json()).toEqual({ route: 'v1', n: 1 });
        expect((await post(two, 'k-r', v1)).json()).toEqual({ route: 'v1', n: 1 });
        expect((await post(two, 'k-r', v2)).statusCode).toBe(422);
        expect((await post(one, 'k-r', v2)).statusCode).toBe(422);
        expect(ran).toEqual({ v1: 1, v2: 0 });
      } finally {
        await Promise.all(apps.splice(0).map((app) => app.close()));
        for (const client of clients) client.disconnect();
        await server.stop();
      }
    });
  },
);
