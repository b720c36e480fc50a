import { HoldfastConfigError } from '@holdfast/core';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { idempotency } from '../src/fastify.js';
import { problemTypes } from '../src/http/index.js';
import { memoryStore } from '../src/index.js';
import { newKey, spy } from './http-support/support.js';

function counter() {
  let n = 0;
  return { handler: async () => ({ n: ++n }), count: () => n };
}

const post = (app: ReturnType<typeof Fastify>, url: string, key: string | undefined, payload: unknown = {}) =>
  app.inject({ method: 'POST', url, payload: payload as object, headers: key ? { 'idempotency-key': key } : {} });

describe('fastify plugin', () => {
  it('replays through fastify.inject', async () => {
    const app = Fastify();
    await app.register(idempotency, { scope: 'global', store: memoryStore() });
    const orders = counter();
    app.post('/orders', orders.handler);
    const key = newKey();
    const first = await post(app, '/orders', key, { amount: 1 });
    const again = await post(app, '/orders', key, { amount: 1 });
    expect(first.json()).toEqual({ n: 1 });
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.body).toBe(first.body);
    expect(orders.count()).toBe(1);
    await app.close();
  });

  it('guards only the context it is registered in and its children', async () => {
    const app = Fastify();
    const inside = counter();
    const child = counter();
    const sibling = counter();
    const root = counter();
    await app.register(async (scope) => {
      await scope.register(idempotency, { scope: 'global', store: memoryStore() });
      scope.post('/inside', inside.handler);
      await scope.register(async (nested) => {
        nested.post('/child', child.handler);
      });
    });
    await app.register(async (scope) => {
      scope.post('/sibling', sibling.handler);
    });
    app.post('/root', root.handler);
    for (const url of ['/inside', '/child', '/sibling', '/root']) {
      const key = newKey();
      await post(app, url, key);
      await post(app, url, key);
    }
    expect(inside.count()).toBe(1);
    expect(child.count()).toBe(1);
    expect(sibling.count()).toBe(2);
    expect(root.count()).toBe(2);
    await app.close();
  });

  it('lets a route opt out with config.idempotency = false, or override options', async () => {
    const app = Fastify();
    const store = spy(memoryStore());
    await app.register(idempotency, { scope: 'global', store });
    const off = counter();
    const strict = counter();
    const put = counter();
    app.post('/off', { config: { idempotency: false } }, off.handler);
    app.post('/strict', { config: { idempotency: { required: true } } }, strict.handler);
    app.put('/put', { config: { idempotency: { methods: ['PUT'] } } }, put.handler);

    const key = newKey();
    await post(app, '/off', key);
    await post(app, '/off', key);
    expect(off.count()).toBe(2);
    expect(store.counts.claim).toBe(0);

    const missing = await post(app, '/strict', undefined);
    expect(missing.statusCode).toBe(400);
    expect(missing.json()).toMatchObject({ type: problemTypes.missingKey });
    expect(strict.count()).toBe(0);

    const putKey = newKey();
    await app.inject({ method: 'PUT', url: '/put', payload: {}, headers: { 'idempotency-key': putKey } });
    const replay = await app.inject({
      method: 'PUT',
      url: '/put',
      payload: {},
      headers: { 'idempotency-key': putKey },
    });
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(put.count()).toBe(1);
    await app.close();
  });

  it('stores nothing for a request that fails schema validation before the handler', async () => {
    const app = Fastify();
    const store = spy(memoryStore());
    await app.register(idempotency, { scope: 'global', store });
    const orders = counter();
    const schema = {
      body: {
        type: 'object',
        required: ['amount'],
        properties: { amount: { type: 'integer', minimum: 1 } },
      },
    };
    app.post('/orders', { schema }, orders.handler);
    const key = newKey();
    const invalid = await post(app, '/orders', key, { amount: 'lots' });
    expect(invalid.statusCode).toBe(400);
    expect(invalid.headers['idempotent-replayed']).toBeUndefined();
    expect(store.counts).toEqual({ claim: 0, complete: 0, release: 0 });
    // The corrected request with the same key runs: no 422, no replayed validation error.
    const valid = await post(app, '/orders', key, { amount: 5 });
    expect(valid.statusCode).toBe(200);
    expect(valid.json()).toEqual({ n: 1 });
    await app.close();
  });

  it("never stores its own 409, 422 or replay over the first request's record", async () => {
    const app = Fastify();
    const store = spy(memoryStore());
    await app.register(idempotency, { scope: 'global', store });
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let calls = 0;
    app.post('/slow', async (req) => {
      calls++;
      await gate;
      return { body: req.body };
    });
    const key = newKey();
    const first = post(app, '/slow', key, { a: 1 });
    await new Promise((r) => setTimeout(r, 50));
    const conflict = await post(app, '/slow', key, { a: 1 });
    expect(conflict.statusCode).toBe(409);
    const mismatchDuring = await post(app, '/slow', key, { a: 2 });
    expect([409, 422]).toContain(mismatchDuring.statusCode);
    release();
    const original = await first;
    const mismatch = await post(app, '/slow', key, { a: 2 });
    expect(mismatch.statusCode).toBe(422);
    const replay = await post(app, '/slow', key, { a: 1 });
    expect(replay.statusCode).toBe(200);
    expect(replay.body).toBe(original.body);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(store.counts.complete).toBe(1);
    expect(store.counts.release).toBe(0);
    expect(calls).toBe(1);
    await app.close();
  });

  it('replays a Buffer and a web ReadableStream payload byte for byte', async () => {
    const app = Fastify();
    await app.register(idempotency, { scope: 'global', store: memoryStore() });
    const bytes = Buffer.from([1, 2, 3, 0, 255, 254]);
    app.post('/buffer', async (_req, reply) => reply.type('application/octet-stream').send(bytes));
    app.post('/web', async (_req, reply) => {
      const stream = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new Uint8Array([9, 8, 7]));
          controller.enqueue(new Uint8Array([0, 200]));
          controller.close();
        },
      });
      return reply.type('application/octet-stream').send(stream);
    });
    for (const [url, expected] of [
      ['/buffer', bytes],
      ['/web', Buffer.from([9, 8, 7, 0, 200])],
    ] as const) {
      const key = newKey();
      const first = await post(app, url, key);
      const again = await post(app, url, key);
      expect(first.rawPayload.equals(expected)).toBe(true);
      expect(again.rawPayload.equals(expected)).toBe(true);
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.headers['content-length']).toBe(String(expected.length));
    }
    await app.close();
  });

  it('leaves unknown routes (404) alone', async () => {
    const app = Fastify();
    const store = spy(memoryStore());
    await app.register(idempotency, { scope: 'global', store, required: true });
    const res = await post(app, '/nowhere', newKey());
    expect(res.statusCode).toBe(404);
    expect(store.counts.claim).toBe(0);
    await app.close();
  });

  it('accepts register options (prefix) beside its own', async () => {
    const app = Fastify();
    const orders = counter();
    await app.register(
      async (scope) => {
        await scope.register(idempotency, { scope: 'global', store: memoryStore() });
        scope.post('/orders', orders.handler);
      },
      { prefix: '/v1' },
    );
    const key = newKey();
    await post(app, '/v1/orders', key);
    expect((await post(app, '/v1/orders', key)).headers['idempotent-replayed']).toBe('true');
    await app.close();
  });

  it('refuses bad options when registered, naming the option', async () => {
    const app = Fastify();
    app.register(idempotency, { scope: 'global', store: memoryStore(), maxResponseBytes: -1 });
    const error = await app.ready().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(HoldfastConfigError);
    expect((error as Error).message).toContain('maxResponseBytes');
    await app.close().catch(() => {});
  });
});

describe('fastify plugin: route options', () => {
  it('checks a route override when the route is declared', async () => {
    const app = Fastify();
    await app.register(idempotency, { scope: 'global', store: memoryStore() });
    expect(() => app.post('/bad', { config: { idempotency: { maxResponseBytes: 0 } } }, async () => ({}))).toThrow(
      /route POST \/bad.*maxResponseBytes/,
    );
    await app.close();
  });
});
