import { createBus } from '@holdfast/core';
import Fastify from 'fastify';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { idempotency } from '../src/fastify.js';
import { memoryStore } from '../src/index.js';

/**
 * A route declared before the plugin loaded is watched late through Fastify's own route context
 * (under its symbol 'fastify.context'). A Fastify that keeps it elsewhere leaves such a route
 * unwatched: whether its handler was called cannot be known, so it is taken as called. Here the
 * symbol is hidden on the first claimed request, when the plugin looks for it (once a process):
 * the fallback must stay safe, never run a handler twice for one key.
 */
const apps: ReturnType<typeof Fastify>[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function withoutRouteContext<T>(send: () => Promise<T>): Promise<T> {
  const own = Object.getOwnPropertySymbols;
  const spy = vi
    .spyOn(Object, 'getOwnPropertySymbols')
    .mockImplementation((o) => own(o).filter((key) => key.description !== 'fastify.context'));
  try {
    return await send();
  } finally {
    spy.mockRestore();
  }
}

async function declaredFirst(server: { handlerTimeout?: number }, gate: Promise<void>, ran: { count: number }) {
  const app = Fastify(server);
  apps.push(app);
  void app.register(idempotency, { store: memoryStore(), scope: 'global', bus: createBus() });
  app.post('/orders', async (_request, reply) => {
    ran.count++;
    await gate;
    reply.code(201);
    return { order: ran.count };
  });
  await app.ready();
  return (key: string) =>
    app.inject({
      method: 'POST',
      url: '/orders',
      headers: { 'content-type': 'application/json', 'idempotency-key': key },
      payload: '{"amount":1}',
    });
}

describe("fastify plugin: a late route whose context can't be found", () => {
  it('under handlerTimeout: the 503 is stored at once (the handler may run), a retry gets it, the handler ran once', async () => {
    const ran = { count: 0 };
    let finish: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const send = await declaredFirst({ handlerTimeout: 150 }, gate, ran);
    expect((await withoutRouteContext(() => send('k'))).statusCode).toBe(503);
    const retry = await send('k');
    finish();
    await tick(20);
    const late = await send('k');
    expect(ran.count).toBe(1);
    expect([retry.statusCode, retry.headers['idempotent-replayed']]).toEqual([503, 'true']);
    expect([late.statusCode, late.headers['idempotent-replayed']]).toEqual([503, 'true']);
  });

  it('without a timeout: the response is stored and replayed, the handler ran once', async () => {
    const ran = { count: 0 };
    const send = await declaredFirst({}, Promise.resolve(), ran);
    const first = await withoutRouteContext(() => send('k'));
    const again = await send('k');
    expect(first.statusCode).toBe(201);
    expect([again.statusCode, again.headers['idempotent-replayed'], again.json()]).toEqual([201, 'true', { order: 1 }]);
    expect(ran.count).toBe(1);
  });
});
