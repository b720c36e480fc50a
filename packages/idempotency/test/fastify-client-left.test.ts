import { once } from 'node:events';
import { type AddressInfo, connect } from 'node:net';
import { createBus } from '@holdfast/core';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import { describe, expect, it } from 'vitest';
import { idempotency } from '../src/fastify.js';
import { memoryStore } from '../src/index.js';

describe('fastify plugin: a client that leaves while an async handler runs', () => {
  /**
   * Fastify sends nothing for an async handler that resolves with undefined once its client has
   * gone (wrap-thenable checks the socket): no onSend, and the response closed before, unsent.
   * The handler ran to its end: the key must not stay claimed for its lease (60 s), after which a
   * retry runs the handler a second time.
   */
  it('stores what the handler made: the retry gets the replay, the handler ran once', async () => {
    const { retry, ran, inProgress } = await leaveThenRetry(async (_request, reply) => {
      reply.code(201).header('location', '/orders/1');
    });
    expect(inProgress).toBe(0);
    expect(retry.statusCode).toBe(201);
    expect(retry.headers.location).toBe('/orders/1');
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(ran).toBe(1);
  });

  // A hijacked reply is taken from the raw response: what the handler wrote on it once its client
  // left is stored, as any response the handler ends. (It was released, and the retry ran again.)
  it('stores what a handler that hijacks its reply after its client left wrote: the retry gets the replay, the handler ran once', async () => {
    const { retry, ran, inProgress } = await leaveThenRetry(async (_request, reply) => {
      reply.hijack();
      reply.raw.writeHead(201, { 'content-type': 'text/plain' });
      reply.raw.end('made');
    });
    expect(inProgress).toBe(0);
    expect(retry.statusCode).toBe(201);
    expect(retry.body).toBe('made');
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(ran).toBe(1);
  });

  /**
   * `app.register()` not awaited, then `app.post()`: the plugin's onRoute never sees the route, so
   * its handler's promise was not watched, and the key stayed claimed for its lease (a retry then
   * ran the handler again). Its handler is watched from its first claimed request instead.
   */
  it('on a route declared before the plugin loaded: the same, the retry gets the replay, the handler ran once', async () => {
    const { retry, ran, inProgress } = await leaveThenRetry(async (_request, reply) => {
      reply.code(201).header('location', '/orders/1');
    }, true);
    expect(inProgress).toBe(0);
    expect(retry.statusCode).toBe(201);
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(ran).toBe(1);
  });
});

/**
 * A keyed POST whose client leaves while `after` waits; then `after` runs, and the same key is sent again.
 * `declaredFirst`: the route is declared before the plugin has loaded (its register() not awaited).
 */
async function leaveThenRetry(
  after: (request: FastifyRequest, reply: FastifyReply) => Promise<void>,
  declaredFirst = false,
) {
  const store = memoryStore();
  const app = Fastify();
  let ran = 0;
  let finish: () => void = () => {};
  const gate = new Promise<void>((resolve) => {
    finish = resolve;
  });
  let started: () => void = () => {};
  const running = new Promise<void>((resolve) => {
    started = resolve;
  });
  const registered = app.register(idempotency, { store, scope: 'global', bus: createBus() });
  if (!declaredFirst) await registered;
  app.post('/orders', async (request, reply) => {
    ran++;
    started();
    await gate; // the order is made here
    if (ran === 1) await after(request, reply);
    else reply.code(201).send('again');
  });
  await app.ready();
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  try {
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    socket.write(
      'POST /orders HTTP/1.1\r\nHost: x\r\nIdempotency-Key: k\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi',
    );
    await running;
    const closed = once(socket, 'close');
    socket.destroy(); // the client gives up before the handler is done
    await closed;
    await new Promise((resolve) => setTimeout(resolve, 20));
    finish();
    for (let turn = 0; turn < 50 && store.snapshot().inProgress > 0; turn++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const inProgress = store.snapshot().inProgress;
    const retry = await app.inject({
      method: 'POST',
      url: '/orders',
      headers: { 'idempotency-key': 'k', 'content-type': 'text/plain' },
      payload: 'hi',
    });
    return { retry, ran, inProgress };
  } finally {
    await app.close();
  }
}
