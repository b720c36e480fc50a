import { createBus } from '@holdfast/core';
import Fastify, { type RouteHandlerMethod } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/fastify.js';
import { memoryStore } from '../src/index.js';

/**
 * `app.register(plugin)` not awaited, then `app.post(...)`: a common way to write a Fastify app.
 * The route is declared before the plugin has loaded, so the plugin's onRoute hook never sees it
 * (Fastify applies the plugin's request hooks to it all the same). Its `config.idempotency`
 * options were looked up among those onRoute had seen: none, so the route was left unguarded.
 */
const apps: ReturnType<typeof Fastify>[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

async function declaredFirst(config: unknown, handler: RouteHandlerMethod, server: { handlerTimeout?: number } = {}) {
  const app = Fastify(server);
  apps.push(app);
  void app.register(idempotency, { store: memoryStore(), scope: 'global', bus: createBus() });
  app.post('/orders', { config: { idempotency: config as never } }, handler);
  await app.ready();
  return (headers: Record<string, string> = {}) =>
    app.inject({
      method: 'POST',
      url: '/orders',
      headers: { 'content-type': 'application/json', ...headers },
      payload: '{"amount":1}',
    });
}

describe('fastify plugin: a route declared before the plugin loaded', () => {
  it('keeps its own options: required answers 400 without a key, a repeat is replayed, the handler ran once', async () => {
    let ran = 0;
    const send = await declaredFirst({ required: true }, async (_request, reply) => {
      reply.code(201);
      return { order: ++ran };
    });
    expect((await send()).statusCode).toBe(400);
    const first = await send({ 'idempotency-key': 'k' });
    const again = await send({ 'idempotency-key': 'k' });
    expect(first.statusCode).toBe(201);
    expect(again.statusCode).toBe(201);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(ran).toBe(1);
  });

  it('with a bad option fails its requests with the option named, never runs unguarded', async () => {
    let ran = 0;
    const send = await declaredFirst({ required: 'yes' }, async () => ({ order: ++ran }));
    const response = await send({ 'idempotency-key': 'k' });
    expect(response.statusCode).toBe(500);
    expect(response.json().message).toContain('required');
    expect(ran).toBe(0);
  });

  it('under handlerTimeout: its handler is watched from its first claimed request, so the key waits for it (409), then the 503 is its answer; the handler ran once', async () => {
    let ran = 0;
    let finish: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const send = await declaredFirst(
      true,
      async () => {
        ran++;
        await gate;
        return { ok: true };
      },
      { handlerTimeout: 150 },
    );
    expect((await send({ 'idempotency-key': 'k' })).statusCode).toBe(503);
    expect((await send({ 'idempotency-key': 'k' })).statusCode).toBe(409);
    finish();
    await new Promise((resolve) => setTimeout(resolve, 20));
    const retry = await send({ 'idempotency-key': 'k' });
    expect(retry.statusCode).toBe(503);
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(ran).toBe(1);
  });
});
