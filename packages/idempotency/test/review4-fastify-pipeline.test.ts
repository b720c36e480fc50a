import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { createBus } from '@holdfast/core';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/fastify.js';
import { memoryStore } from '../src/index.js';
import { closeAll, closers } from './http-support/body-apps.js';
import { gate, keyedPost, pipelinedAndLeft, rawClient, settledRetry, tick } from './http-support/leave.js';

afterEach(closeAll);

async function app(
  handler: (request: FastifyRequest, reply: FastifyReply, ran: Map<string, number>) => unknown,
  leaseMs = 2_000,
) {
  const fastify = Fastify();
  await fastify.register(idempotency, { store: memoryStore(), scope: 'global', bus: createBus(), leaseMs });
  const ran = new Map<string, number>();
  fastify.addContentTypeParser('text/plain', { parseAs: 'string' }, (_r, body, done) => done(null, body));
  fastify.post('/orders', (request, reply) => {
    const key = String(request.headers['idempotency-key']);
    ran.set(key, (ran.get(key) ?? 0) + 1);
    return handler(request, reply, ran);
  });
  await fastify.listen({ port: 0, host: '127.0.0.1' });
  closers.push(() => fastify.close());
  return { port: (fastify.server.address() as AddressInfo).port, ran };
}

const settled = async (port: number, key: string) => {
  const { status, body, type } = await settledRetry(port, key);
  return { status, body, type };
};

describe('fastify, pipelined keyed requests on one socket, no hijack', () => {
  it('client leaves while both run; the handlers answer after: stored, each ran once', async () => {
    const both = gate();
    const release = gate();
    const { port, ran } = await app(async (request, reply, ran) => {
      if (ran.size === 2) both.open();
      await release.opened;
      return reply.code(201).send(`made ${request.headers['idempotency-key']}`);
    });
    const [a, b] = await pipelinedAndLeft(port, both.opened, release.open);
    expect(Object.fromEntries(ran)).toEqual({ a: 1, b: 1 });
    expect([a.status, a.body, b.status, b.body]).toEqual([201, 'made a', 201, 'made b']);
  });

  it('client leaves while both run; the handlers resolve with nothing (status set): stored, each ran once', async () => {
    const both = gate();
    const release = gate();
    const { port, ran } = await app(async (_request, reply, ran) => {
      if (ran.size === 2) both.open();
      await release.opened;
      reply.code(201);
    });
    const [a, b] = await pipelinedAndLeft(port, both.opened, release.open);
    expect(Object.fromEntries(ran)).toEqual({ a: 1, b: 1 });
    expect([a.status, b.status]).toEqual([201, 201]);
  }, 10_000);

  it('same key twice in one pipeline: runs once, the second gets 409, no deadlock', async () => {
    const { port, ran } = await app(async (request, reply) => {
      await tick(30);
      return reply.code(201).send(`made ${request.headers['idempotency-key']}`);
    });
    const { socket, read } = await rawClient(port);
    socket.write(keyedPost('/orders', 'k') + keyedPost('/orders', 'k') + keyedPost('/orders', 'k'));
    for (let i = 0; i < 100 && (read().match(/HTTP\/1\.1 /g) ?? []).length < 3; i++) await tick(10);
    socket.destroy();
    const statuses = [...read().matchAll(/HTTP\/1\.1 (\d+)/g)].map((m) => m[1]);
    expect(statuses).toEqual(['201', '409', '409']);
    expect(Object.fromEntries(ran)).toEqual({ k: 1 });
  });
  it('client leaves after the first response, while the second runs (it got the socket): stored, each ran once', async () => {
    const bRuns = gate();
    const release = gate();
    const { port, ran } = await app(async (request, reply) => {
      if (request.headers['idempotency-key'] === 'a') return reply.code(201).send('made a');
      bRuns.open();
      await release.opened;
      reply.code(201);
    });
    const { socket, read } = await rawClient(port);
    socket.write(keyedPost('/orders', 'a') + keyedPost('/orders', 'b'));
    await bRuns.opened;
    for (let i = 0; i < 100 && !read().includes('made a'); i++) await tick(10);
    socket.destroy();
    await tick(50);
    release.open();
    const b = await settled(port, 'b');
    expect(Object.fromEntries(ran)).toEqual({ a: 1, b: 1 });
    expect(b.status).toBe(201);
  });

  it('client leaves mid-second (a streamed reply): the response-lost problem, never a second run', async () => {
    const { port, ran } = await app(async (request, reply) => {
      if (request.headers['idempotency-key'] === 'a') return reply.code(201).send('made a');
      let n = 0;
      const source = new Readable({
        read() {
          setTimeout(() => this.push(n++ < 50 ? `part ${n}\n` : null), 20);
        },
      });
      return reply.code(201).type('text/plain').send(source);
    });
    const { socket, read } = await rawClient(port);
    socket.write(keyedPost('/orders', 'a') + keyedPost('/orders', 'b'));
    for (let i = 0; i < 100 && !read().includes('part 2'); i++) await tick(10);
    expect(read()).toContain('made a');
    socket.destroy();
    await tick(50);
    const b = await settled(port, 'b');
    expect(Object.fromEntries(ran)).toEqual({ a: 1, b: 1 });
    expect([b.status, b.type]).toEqual([500, 'application/problem+json']);
  });
  for (const ends of [true, false]) {
    it(`hijacked, client leaves while both run, handler ${ends ? 'ends' : 'never ends'} the raw response: ${ends ? 'stored' : 'response-lost'}, each ran once`, async () => {
      const both = gate();
      const release = gate();
      const { port, ran } = await app(async (request, reply, ran) => {
        reply.hijack();
        if (ran.size === 2) both.open();
        await release.opened;
        if (!ends) return;
        reply.raw.writeHead(201, { 'content-type': 'text/plain' });
        reply.raw.end(`made ${request.headers['idempotency-key']}`);
      });
      const [a, b] = await pipelinedAndLeft(port, both.opened, release.open);
      expect(Object.fromEntries(ran)).toEqual({ a: 1, b: 1 });
      expect([a.status, b.status]).toEqual(ends ? [201, 201] : [500, 500]);
    }, 10_000);
  }
});
