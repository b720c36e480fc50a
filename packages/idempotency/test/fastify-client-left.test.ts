import { once } from 'node:events';
import { type AddressInfo, connect } from 'node:net';
import { createBus } from '@holdfast/core';
import Fastify from 'fastify';
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
    await app.register(idempotency, { store, scope: 'global', bus: createBus() });
    app.post('/orders', async (_request, reply) => {
      ran++;
      started();
      await gate; // the order is made here
      reply.code(201).header('location', '/orders/1');
    });
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
      expect(store.snapshot().inProgress).toBe(0);
      const retry = await app.inject({
        method: 'POST',
        url: '/orders',
        headers: { 'idempotency-key': 'k', 'content-type': 'text/plain' },
        payload: 'hi',
      });
      expect(retry.statusCode).toBe(201);
      expect(retry.headers.location).toBe('/orders/1');
      expect(retry.headers['idempotent-replayed']).toBe('true');
      expect(ran).toBe(1);
    } finally {
      await app.close();
    }
  });
});
