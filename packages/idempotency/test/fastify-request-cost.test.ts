import { spawnSync } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/fastify.js';
import { memoryStore } from '../src/index.js';

// What the plugin costs every request of an app, measured by what it leaves on the objects
// Fastify and Node make per request: load-independent, unlike a timing. Each one here was found
// costing instructions under callgrind (issue #19); the plugin's guarantees are tested elsewhere.

const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

/** `POST /orders` with a JSON body and the key `k-1`, injected. */
function postOrder(app: FastifyInstance) {
  return app.inject({
    method: 'POST',
    url: '/orders',
    headers: { 'content-type': 'application/json', 'idempotency-key': 'k-1' },
    payload: '{"amount":1}',
  });
}

/** An app with one JSON route (`register` first), and the reply.getHeader calls of each request it serves. */
async function headerReads(register?: (app: FastifyInstance) => Promise<void>): Promise<number> {
  const app = Fastify();
  apps.push(app);
  if (register) await register(app);
  let reads = 0;
  app.addHook('onRequest', (_request, reply, done) => {
    const own = reply.getHeader;
    reply.getHeader = function (this: typeof reply, name: string) {
      reads++;
      return own.call(this, name);
    };
    done();
  });
  app.post('/orders', async (_request, reply) => reply.code(201).send({ id: 1 }));
  const response = await postOrder(app);
  expect(response.statusCode).toBe(201);
  return reads;
}

/** The own property keys (names and symbols) a request of `app` has in its handler. */
async function requestKeys(register?: (app: FastifyInstance) => Promise<void>): Promise<(string | symbol)[]> {
  const app = Fastify();
  apps.push(app);
  if (register) await register(app);
  let keys: (string | symbol)[] = [];
  app.post('/orders', async (request: FastifyRequest) => {
    keys = Reflect.ownKeys(request);
    return { ok: true };
  });
  const response = await postOrder(app);
  expect(response.statusCode).toBe(200);
  return keys;
}

describe('fastify plugin: what every request pays for it', () => {
  /**
   * Fastify's request constructor sets each request decorator in one loop: with two names that
   * store goes megamorphic (V8's generic keyed store, on every request the app serves, guarded
   * or not). One registration gives a request one property.
   */
  it('one registration gives a request one property of its own, one per nested registration', async () => {
    const bare = await requestKeys();
    const once = await requestKeys(async (app) => {
      await app.register(idempotency, { store: memoryStore(), scope: 'global' });
    });
    const nested = await requestKeys(async (app) => {
      await app.register(idempotency, { store: memoryStore(), scope: 'global' });
      await app.register(idempotency, { store: memoryStore(), scope: 'global' });
    });
    expect(once.length - bare.length).toBe(1);
    expect(nested.length - bare.length).toBe(2);
  });

  /**
   * A stored response's headers are read from the reply at once (`getHeaders()`), not name by
   * name: Fastify's getHeader lower-cases each name twice (its own and Node's), and reading
   * several names through it made its keyed lookup megamorphic, Fastify's own `content-type`
   * read in send() included.
   */
  it('storing a response reads no header of the reply by name', async () => {
    const bare = await headerReads();
    const guarded = await headerReads(async (app) => {
      await app.register(idempotency, { store: memoryStore(), scope: 'global' });
    });
    expect(guarded - bare).toBe(0);
  });

  /**
   * `request.routeOptions` is a new object of a dozen fields at each read, and asks the server
   * for its constraint strategies: the plugin reads a route's config from its route context.
   */
  it('a guarded request builds no routeOptions', async () => {
    const builds = async (register?: (app: FastifyInstance) => Promise<void>) => {
      const app = Fastify();
      apps.push(app);
      if (register) await register(app);
      app.post('/orders', async () => ({ ok: true }));
      await app.ready();
      // The plugin asks once, at its first request, which constraint strategies the server uses.
      await app.inject({
        method: 'POST',
        url: '/orders',
        headers: { 'content-type': 'application/json', 'idempotency-key': 'k-0' },
        payload: '{"amount":1}',
      });
      let reads = 0;
      const own = app.hasConstraintStrategy;
      // The routeOptions getter asks it at each read (for the route's version).
      app.hasConstraintStrategy = function (this: FastifyInstance, name: string) {
        reads++;
        return own.call(this, name);
      };
      for (const key of ['k-1', 'k-2', 'k-1']) {
        const response = await app.inject({
          method: 'POST',
          url: '/orders',
          headers: { 'content-type': 'application/json', 'idempotency-key': key },
          payload: '{"amount":1}',
        });
        expect(response.statusCode).toBe(200);
      }
      return reads;
    };
    const bare = await builds();
    const guarded = await builds(async (app) => {
      await app.register(idempotency, { store: memoryStore(), scope: 'global' });
    });
    expect(guarded - bare).toBe(0);
  });

  /**
   * Node's `IncomingMessage.headers` is a getter whose keyed load of its private symbol is
   * megamorphic on a server (every request's IncomingMessage map, ~400 instructions a read under
   * callgrind): the plugin reads it once per guarded request, as Fastify's own reads do not
   * change. Over a real socket: an injected request's headers are a plain property.
   */
  it('a guarded request reads the headers getter of its IncomingMessage once', async () => {
    const reads = async (register?: (app: FastifyInstance) => Promise<void>, key?: string) => {
      const app = Fastify();
      apps.push(app);
      if (register) await register(app);
      app.post('/orders', async (_request, reply) => reply.code(201).send({ id: 1 }));
      let count = 0;
      app.addHook('onRequest', (request, _reply, done) => {
        // Read through from here on: an own getter over the prototype's, on this request only.
        const raw = request.raw;
        const headers = raw.headers;
        Object.defineProperty(raw, 'headers', {
          configurable: true,
          get() {
            count++;
            return headers;
          },
        });
        done();
      });
      await app.listen({ port: 0, host: '127.0.0.1' });
      const { port } = app.server.address() as { port: number };
      try {
        const status = await new Promise<number>((resolve, reject) => {
          const body = '{"amount":1}';
          const headers: Record<string, string | number> = {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
          };
          if (key !== undefined) headers['idempotency-key'] = key;
          const req = httpRequest({ port, host: '127.0.0.1', path: '/orders', method: 'POST', headers }, (res) => {
            res.resume();
            res.once('end', () => resolve(res.statusCode ?? 0));
          });
          req.once('error', reject);
          req.end(body);
        });
        expect(status).toBe(201);
      } finally {
        await app.close();
      }
      return count;
    };
    const bare = await reads(undefined, 'k-1');
    const guarded = await reads(async (app) => {
      await app.register(idempotency, { store: memoryStore(), scope: 'global' });
    }, 'k-1');
    expect(guarded - bare).toBe(1);
  });

  /**
   * A claimed request's response is watched until it closes (a hijacked reply, a client that
   * leaves): a 'close' listener and its closure, about 700 instructions under callgrind. A
   * handler that answers before its first await has been stored by the time the plugin's
   * preHandler gets control back: its response is not watched. One that answers later is.
   */
  it("watches a claimed request's response for its close only while its handler has not answered", async () => {
    const listeners = async (late: boolean, register?: (app: FastifyInstance) => Promise<void>) => {
      const app = Fastify();
      apps.push(app);
      if (register) await register(app);
      let count = -1;
      app.addHook('onResponse', (_request, reply, done) => {
        count = reply.raw.listenerCount('close');
        done();
      });
      app.post('/orders', async (_request, reply) => {
        if (late) await new Promise((resolve) => setImmediate(resolve));
        return reply.code(201).send({ id: 1 });
      });
      const response = await postOrder(app);
      expect(response.statusCode).toBe(201);
      return count;
    };
    const guard = async (app: FastifyInstance) => {
      await app.register(idempotency, { store: memoryStore(), scope: 'global' });
    };
    expect((await listeners(false, guard)) - (await listeners(false))).toBe(0);
    expect((await listeners(true, guard)) - (await listeners(true))).toBe(1);
  });
});

describe('the reply prototype the plugin patches', () => {
  it("keeps fast properties and hijack's attributes: a redefined attribute made it a dictionary, every reply load generic", () => {
    const fixture = new URL('./fixtures/fastify-reply-proto.ts', import.meta.url).pathname;
    const child = spawnSync(
      process.execPath,
      ['--allow-natives-syntax', '--conditions=@holdfast/source', '--import', 'tsx', fixture],
      { encoding: 'utf8', timeout: 60_000, cwd: new URL('..', import.meta.url).pathname },
    );
    expect(child.status, child.stderr).toBe(0);
    const out = JSON.parse(child.stdout) as {
      before: { fast: boolean; enumerable: boolean };
      after: { fast: boolean; enumerable: boolean };
      statuses: number[];
      replaced: boolean;
    };
    // Patched (the hijack watch is in place), on claimed requests that ran and replayed.
    expect(out.statuses).toEqual([201, 201, 201]);
    expect(out.replaced).toBe(true);
    expect(out.after).toEqual(out.before);
    expect(out.after.fast).toBe(true);
  });
});
