import type { AddressInfo } from 'node:net';
import { createBus } from '@holdfast/core';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/fastify.js';
import { type IdempotencyStore, memoryStore } from '../src/index.js';
import { gate, keyedPost, leaveWhile as leave } from './http-support/leave.js';

const apps: ReturnType<typeof Fastify>[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

/** A keyed POST whose client leaves once `running` resolves; then a moment for the server to see it. */
async function leaveWhile(port: number, running: Promise<void>) {
  await leave(port, keyedPost('/reports'), running);
  await new Promise((resolve) => setTimeout(resolve, 20));
}

const retry = (app: ReturnType<typeof Fastify>) =>
  app.inject({
    method: 'POST',
    url: '/reports',
    headers: { 'idempotency-key': 'k', 'content-type': 'text/plain' },
    payload: 'hi',
  });

describe('fastify plugin: hostile review of hijacked replies', () => {
  /**
   * The handler hijacks its reply, then does its work; its client leaves before a byte is
   * written; then the handler answers on the raw response. The work was done: the key was
   * released when the response closed (the reply counts as sent once hijacked), and the retry ran
   * the handler a second time.
   */
  it('hijacked, then its client leaves before anything is written: what the handler then writes is stored, the handler ran once', async () => {
    const store = memoryStore();
    const app = Fastify();
    apps.push(app);
    await app.register(idempotency, { store, scope: 'global', bus: createBus() });
    let ran = 0;
    const started = gate();
    const work = gate();
    app.post('/reports', async (_request, reply) => {
      ran++;
      reply.hijack();
      if (ran > 1) {
        reply.raw.end('again');
        return;
      }
      started.open();
      await work.opened; // the order is made here
      reply.raw.writeHead(201, { 'content-type': 'text/plain' });
      reply.raw.end('made');
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    await leaveWhile((app.server.address() as AddressInfo).port, started.opened);
    work.open();
    for (let turn = 0; turn < 50 && store.snapshot().inProgress > 0; turn++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const second = await retry(app);
    expect({ status: second.statusCode, body: second.body, replayed: second.headers['idempotent-replayed'] }).toEqual({
      status: 201,
      body: 'made',
      replayed: 'true',
    });
    expect(ran).toBe(1);
  });

  // Fastify leaves a hijacked reply whose handler then threw to the handler: nothing ends it.
  it('hijacked, then the handler throws and its client leaves: the key is freed, the retry runs', async () => {
    const store = memoryStore();
    const app = Fastify({ logger: false });
    apps.push(app);
    await app.register(idempotency, { store, scope: 'global', bus: createBus() });
    let ran = 0;
    const started = gate();
    app.post('/reports', async (_request, reply) => {
      ran++;
      if (ran > 1) return reply.code(201).send('again');
      reply.hijack();
      started.open();
      throw new Error('upstream refused');
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    await leaveWhile((app.server.address() as AddressInfo).port, started.opened);
    for (let turn = 0; turn < 50 && store.snapshot().inProgress > 0; turn++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(store.snapshot().inProgress).toBe(0);
    const second = await retry(app);
    expect({ status: second.statusCode, body: second.body }).toEqual({ status: 201, body: 'again' });
    expect(ran).toBe(2);
  });

  /**
   * Two registrations of the plugin on one route (an outer one, and one in the route's own
   * context), each with its own store: each must be told of the hijack, and store the answer.
   */
  it('two nested registrations: a hijacked reply that ends is stored by each', async () => {
    const outer = memoryStore();
    const inner = memoryStore();
    const app = Fastify();
    apps.push(app);
    await app.register(idempotency, { store: outer, scope: 'global', bus: createBus() });
    let ran = 0;
    await app.register(async (child) => {
      await child.register(idempotency, { store: inner, scope: 'global', bus: createBus() });
      child.post('/reports', async (_request, reply) => {
        ran++;
        reply.hijack();
        reply.raw.writeHead(201, { 'content-type': 'text/plain' });
        reply.raw.end('made');
      });
    });
    const first = await retry(app);
    expect(first.statusCode).toBe(201);
    expect({ outer: outer.snapshot(), inner: inner.snapshot() }).toMatchObject({
      outer: { inProgress: 0, entries: 1 },
      inner: { inProgress: 0, entries: 1 },
    });
    expect(ran).toBe(1);
  });
});

export type { IdempotencyStore };
