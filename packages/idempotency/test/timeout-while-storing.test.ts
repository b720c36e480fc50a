import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBus } from '@holdfast/core';
import timeout from 'connect-timeout';
import express from 'express';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency as expressIdempotency } from '../src/express.js';
import { idempotency as fastifyIdempotency } from '../src/fastify.js';
import { closeAll, closers, listenNode } from './http-support/body-apps.js';
import { slowStore } from './http-support/slow-store.js';

/**
 * The handler answered, and its response waits for the store to keep it (a Redis that is slow or
 * failing over: completions are retried for `completeTimeoutMs`, 10 s). A timeout (Fastify's
 * handlerTimeout, connect-timeout) that fires meanwhile sees a response not yet sent, and answers
 * it too. Both answers went out on one response: an error no one listens to (Express: write after
 * end; Fastify: headers already sent, thrown in a promise), which ends a Node process, and every
 * request it had accepted with it. Express's client got the handler's body under the timeout's
 * status and Content-Length, and hung.
 */
const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// Errors nobody handled: each would end a real server's process.
const unhandled: unknown[] = [];
const record = (error: unknown) => unhandled.push(error);
process.on('unhandledRejection', record);
process.on('uncaughtException', record);
afterEach(async () => {
  await closeAll();
  unhandled.length = 0;
});

/** A keyed POST; `body`: false for none (Fastify 5.12's handlerTimeout does not fire with one, fastify#6725). */
async function post(url: string, body = true) {
  const response = await fetch(url, {
    method: 'POST',
    headers: body ? { 'idempotency-key': 'k', 'content-type': 'application/json' } : { 'idempotency-key': 'k' },
    body: body ? '{"amount":1}' : null,
    signal: AbortSignal.timeout(3_000),
  });
  return {
    status: response.status,
    replayed: response.headers.get('idempotent-replayed'),
    body: await response.text(),
  };
}

describe('a timeout that fires while the response is being stored', () => {
  it('express + connect-timeout: the handler answer goes whole, no error is left unhandled; the retry replays it; one run', async () => {
    const app = express();
    app.use(timeout('150ms'));
    app.use(expressIdempotency({ store: slowStore({ completeMs: 400 }), scope: 'global', bus: createBus() }));
    let ran = 0;
    app.post('/orders', async (_req, res) => {
      ran++;
      await tick(50);
      res.status(201).json({ order: ran });
    });
    const url = `http://127.0.0.1:${await listenNode(createServer(app))}/orders`;
    const first = await post(url);
    await tick(500);
    const retry = await post(url);
    await tick(50);
    expect(unhandled).toEqual([]);
    expect(first).toEqual({ status: 201, replayed: null, body: '{"order":1}' });
    expect(retry).toEqual({ status: 201, replayed: 'true', body: '{"order":1}' });
    expect(ran).toBe(1);
  });

  it('fastify handlerTimeout: one answer goes, no error is left unhandled; the retry replays what the handler made; one run', async () => {
    const app = Fastify({ handlerTimeout: 150 });
    closers.push(() => app.close());
    await app.register(fastifyIdempotency, {
      store: slowStore({ completeMs: 400 }),
      scope: 'global',
      bus: createBus(),
    });
    let ran = 0;
    app.post('/orders', async (_request, reply) => {
      ran++;
      await tick(50);
      reply.code(201);
      return { order: ran };
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/orders`;
    const first = await post(url, false);
    await tick(500);
    const retry = await post(url, false);
    await tick(50);
    expect(unhandled).toEqual([]);
    // The timeout answered first (the handler's answer was not sent yet): a 503 that says to retry.
    expect(first.status).toBe(503);
    expect(retry).toEqual({ status: 201, replayed: 'true', body: '{"order":1}' });
    expect(ran).toBe(1);
  });
});
