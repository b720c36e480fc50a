import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/fastify.js';
import { memoryStore } from '../src/index.js';

const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

const post = (app: FastifyInstance, key: string) =>
  app.inject({
    method: 'POST',
    url: '/orders/7/refund',
    payload: '{"amount":1}',
    headers: { 'idempotency-key': key, 'content-type': 'application/json' },
  });

describe('fastify plugin: reply.callNotFound() from a guarded handler', () => {
  /**
   * Fastify runs the 404 context's preHandler hooks for it, the plugin's among them. The plugin
   * asked the store again for the key its own request holds: it answered its own request with
   * the 409 in-progress problem, stored that 409 as the key's answer, and every retry got it
   * replayed (a key "in progress" forever), never the handler's 404.
   */
  it('sends the not-found answer, stores it for the key, and a retry gets it replayed', async () => {
    const store = memoryStore();
    const app = Fastify();
    apps.push(app);
    await app.register(idempotency, { scope: 'global', store });
    app.setNotFoundHandler((_request, reply) => reply.code(404).send({ missing: true }));
    let ran = 0;
    app.post('/orders/:id/refund', async (_request, reply) => {
      ran++;
      return reply.callNotFound();
    });
    const first = await post(app, 'k-1');
    expect({ status: first.statusCode, body: first.json() }).toEqual({ status: 404, body: { missing: true } });
    const again = await post(app, 'k-1');
    expect({ status: again.statusCode, body: again.json(), replayed: again.headers['idempotent-replayed'] }).toEqual({
      status: 404,
      body: { missing: true },
      replayed: 'true',
    });
    expect(ran).toBe(1);
    expect(store.snapshot().inProgress).toBe(0);
  });

  it('nested registrations: each lets the request it claimed through the 404 hooks', async () => {
    const outer = memoryStore();
    const inner = memoryStore();
    const app = Fastify();
    apps.push(app);
    await app.register(idempotency, { scope: 'global', store: outer });
    await app.register(idempotency, { scope: 'global', store: inner });
    let ran = 0;
    app.post('/orders/:id/refund', async (_request, reply) => {
      ran++;
      return reply.callNotFound();
    });
    const first = await post(app, 'k-2');
    expect(first.statusCode).toBe(404);
    const again = await post(app, 'k-2');
    expect({ status: again.statusCode, replayed: again.headers['idempotent-replayed'] }).toEqual({
      status: 404,
      replayed: 'true',
    });
    expect(ran).toBe(1);
    expect([outer.snapshot().inProgress, inner.snapshot().inProgress]).toEqual([0, 0]);
  });
});
