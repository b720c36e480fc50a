import { once } from 'node:events';
import { type AddressInfo, connect } from 'node:net';
import { createBus } from '@holdfast/core';
import Fastify, { type FastifyInstance } from 'fastify';
import { describe, expect, it } from 'vitest';
import { idempotency } from '../src/fastify.js';
import { memoryStore } from '../src/index.js';

describe('fastify plugin: a hijacked reply whose client leaves part way', () => {
  /**
   * Soak: Fastify runs onResponse on 'finish' only, so such a request's claim was never released:
   * its key answered 409 until its lease ran out (60 s by default), and redisStore() kept its
   * token until 100,000 more claims pushed it out (one entry in every 10 requests of the soak).
   */
  it('settles the key once the handler returned: 20 clients that leave, 20 response-lost records, the retry gets one and does not run', async () => {
    const store = memoryStore();
    const app = Fastify();
    let ran = 0;
    await app.register(idempotency, { store, scope: 'global', bus: createBus() });
    app.post('/reports', async (_request, reply) => {
      ran++;
      reply.hijack();
      reply.raw.writeHead(201, { 'content-type': 'text/plain' });
      reply.raw.write('part one ');
      // The rest would come later; the client leaves before.
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    const post = (key: string) =>
      `POST /reports HTTP/1.1\r\nHost: x\r\nIdempotency-Key: ${key}\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi`;
    /** Sends a keyed POST, reads the first part of the answer, and leaves. */
    const leaveAfterFirstPart = async (key: string) => {
      const socket = connect(port, '127.0.0.1');
      await once(socket, 'connect');
      socket.write(post(key));
      const [first] = (await once(socket, 'data')) as [Buffer];
      const closed = once(socket, 'close');
      socket.destroy();
      await closed;
      return first.toString('latin1').slice(0, 12);
    };
    try {
      for (let i = 0; i < 20; i++) expect(await leaveAfterFirstPart(`k-${i}`)).toBe('HTTP/1.1 201');
      for (let turn = 0; turn < 50 && store.snapshot().inProgress > 0; turn++) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      expect(store.snapshot()).toMatchObject({ inProgress: 0, entries: 20 });
      // The same key again gets the response-lost problem: not a 409 for the lease, and not a
      // second run (the key was released, and the retry ran the handler again).
      expect(await leaveAfterFirstPart('k-0')).toBe('HTTP/1.1 500');
      expect(ran).toBe(20);
    } finally {
      await app.close();
    }
  });

  // What the plugin's onResponse hook once covered (it has none now: the response's 'close' frees
  // a claim that never reached the plugin's onSend). Each sends the same key twice.
  async function twice(
    setup: (app: FastifyInstance, ran: () => void) => void,
    before?: (app: FastifyInstance) => void,
  ) {
    const store = memoryStore();
    const app = Fastify();
    let ran = 0;
    before?.(app);
    await app.register(idempotency, { store, scope: 'global', bus: createBus() });
    setup(app, () => ran++);
    const send = () =>
      app.inject({
        method: 'POST',
        url: '/reports',
        headers: { 'idempotency-key': 'k', 'content-type': 'text/plain' },
        payload: 'hi',
      });
    try {
      const first = await send();
      for (let turn = 0; turn < 50 && store.snapshot().inProgress > 0; turn++) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const inProgress = store.snapshot().inProgress;
      const second = await send();
      return { first: first.statusCode, second: second.statusCode, inProgress, ran, entries: store.snapshot().entries };
    } finally {
      await app.close();
    }
  }

  // Its response is taken from the raw response (fastify-hijack-stored.test.ts): it was released, and
  // the retry ran the handler a second time.
  it('a hijacked reply that ends normally is stored: the retry gets the replay, the handler ran once', async () => {
    const result = await twice((app, ran) =>
      app.post('/reports', async (_request, reply) => {
        ran();
        reply.hijack();
        reply.raw.writeHead(201, { 'content-type': 'text/plain' });
        reply.raw.end('whole');
      }),
    );
    expect(result).toEqual({ first: 201, second: 201, inProgress: 0, ran: 1, entries: 1 });
  });

  it('a response sent after an onSend hook ahead of the plugin failed: its key is not held for the lease', async () => {
    let failed = 0;
    const result = await twice(
      (app, ran) =>
        app.post('/reports', async (_request, reply) => {
          ran();
          return reply.code(201).send('made');
        }),
      // Added before the plugin: it runs ahead of the plugin's onSend, and fails once.
      (app) =>
        app.addHook('onSend', async (_request, _reply, payload) => {
          if (failed++ === 0) throw new Error('an onSend hook of the application failed');
          return payload;
        }),
    );
    // The application's 500 reached the client (Fastify sends it through the onSend hooks again);
    // a 5xx is not stored by default (store5xx), so the claim is freed, and the retry runs the
    // route again at once rather than getting 409 for the lease (60 s).
    expect(result).toEqual({ first: 500, second: 201, inProgress: 0, ran: 2, entries: 1 });
  });
});
