import type { AddressInfo } from 'node:net';
import { createBus } from '@holdfast/core';
import Fastify, { type FastifyReply } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/fastify.js';
import { type IdempotencyStore, memoryStore } from '../src/index.js';
import { sendKeyed } from './http-support/leave.js';
import { slowStore } from './http-support/slow-store.js';

/**
 * A handler that hijacks its reply (`reply.hijack()`) and answers on the raw response (a proxy,
 * a report written by hand) made its effect, and its client got a whole response; but no onSend
 * sees it, and its key was released: a retry ran the handler a second time. Its response is
 * taken from the raw response instead, as the Express middleware takes one.
 */
const apps: ReturnType<typeof Fastify>[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

async function hijacking(answer: (reply: FastifyReply) => void, store: IdempotencyStore = memoryStore()) {
  const app = Fastify();
  apps.push(app);
  await app.register(idempotency, { store, scope: 'global', bus: createBus() });
  const ran = { count: 0 };
  app.post('/reports', async (_request, reply) => {
    ran.count++;
    reply.hijack();
    answer(reply);
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/reports`;
  const send = () => sendKeyed(url);
  return { send, ran };
}

describe('fastify plugin: a hijacked reply that ends', () => {
  it.each([
    ['memoryStore()', memoryStore],
    ['a store in another process', () => slowStore({ completeMs: 20 })],
  ])('is stored (%s): the retry gets the replay, the handler ran once', async (_, store) => {
    const { send, ran } = await hijacking((reply) => {
      reply.raw.writeHead(201, { 'content-type': 'text/plain' });
      reply.raw.write('report ');
      reply.raw.end('made');
    }, store());
    expect(await send()).toEqual({ status: 201, type: 'text/plain', replayed: null, body: 'report made' });
    expect(await send()).toEqual({ status: 201, type: 'text/plain', replayed: 'true', body: 'report made' });
    expect(ran.count).toBe(1);
  });

  it('with a 5xx is not stored (store5xx off): the key is released, the retry runs', async () => {
    const { send, ran } = await hijacking((reply) => {
      reply.raw.statusCode = 502;
      reply.raw.end('upstream failed');
    });
    expect((await send()).status).toBe(502);
    expect((await send()).replayed).toBe(null);
    expect(ran.count).toBe(2);
  });
});
