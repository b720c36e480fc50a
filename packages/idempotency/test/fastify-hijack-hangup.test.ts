import { once } from 'node:events';
import { type AddressInfo, connect } from 'node:net';
import { createBus } from '@holdfast/core';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { idempotency } from '../src/fastify.js';
import { memoryStore } from '../src/index.js';

describe('fastify plugin: a hijacked reply whose client leaves part way', () => {
  /**
   * Soak: Fastify runs onResponse on 'finish' only, so such a request's claim was never released:
   * its key answered 409 until its lease ran out (60 s by default), and redisStore() kept its
   * token until 100,000 more claims pushed it out (one entry in every 10 requests of the soak).
   */
  it('frees the key at once: 20 clients that leave, 20 claims released, the retry runs', async () => {
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
      expect(store.snapshot().inProgress).toBe(0);
      // The same key again runs the handler again, instead of a 409 for the lease.
      expect(await leaveAfterFirstPart('k-0')).toBe('HTTP/1.1 201');
      expect(ran).toBe(21);
    } finally {
      await app.close();
    }
  });
});
