import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/fastify.js';
import { memoryStore } from '../src/index.js';

const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

const post = (app: FastifyInstance, url: string, key: string | undefined) =>
  app.inject({
    method: 'POST',
    url,
    payload: '{"amount":1}',
    headers: { ...(key === undefined ? {} : { 'idempotency-key': key }), 'content-type': 'application/json' },
  });

describe('fastify plugin registered again in a child context, on the same store', () => {
  /**
   * Registered at the root, and again in a child to make its routes require a key (same store,
   * same scope): the child's registration asked the store for the key the root's had just
   * claimed for the same request, answered it 409 in-progress, and the root's stored that 409
   * as the key's answer. The handler never ran, and every retry got the 409 replayed.
   */
  it('the handler runs once, its answer is stored and replayed; the child still requires a key', async () => {
    const store = memoryStore();
    const app = Fastify();
    apps.push(app);
    await app.register(idempotency, { scope: 'global', store });
    let ran = 0;
    await app.register(async (payments) => {
      await payments.register(idempotency, { scope: 'global', store, required: true });
      payments.post('/payments', async (_request, reply) => reply.code(201).send({ ran: ++ran }));
    });
    const first = await post(app, '/payments', 'k-1');
    expect({ status: first.statusCode, body: first.json() }).toEqual({ status: 201, body: { ran: 1 } });
    const again = await post(app, '/payments', 'k-1');
    expect({ status: again.statusCode, body: again.json(), replayed: again.headers['idempotent-replayed'] }).toEqual({
      status: 201,
      body: { ran: 1 },
      replayed: 'true',
    });
    expect((await post(app, '/payments', undefined)).statusCode).toBe(400);
    expect(ran).toBe(1);
    expect(store.snapshot()).toMatchObject({ entries: 1, inProgress: 0 });
  });

  it('a scope that differs keeps its own record beside the root one', async () => {
    const store = memoryStore();
    const app = Fastify();
    apps.push(app);
    await app.register(idempotency, { scope: 'global', store });
    let ran = 0;
    await app.register(async (child) => {
      await child.register(idempotency, { scope: () => 'tenant-1', store });
      child.post('/payments', async () => ({ ran: ++ran }));
    });
    const first = await post(app, '/payments', 'k-2');
    const again = await post(app, '/payments', 'k-2');
    expect([first.statusCode, again.statusCode, again.headers['idempotent-replayed'], ran]).toEqual([
      200,
      200,
      'true',
      1,
    ]);
    expect(store.snapshot()).toMatchObject({ entries: 2, inProgress: 0 });
  });
});
