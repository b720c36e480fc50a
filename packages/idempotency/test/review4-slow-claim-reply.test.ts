import { createServer } from 'node:http';
import { createBus } from '@holdfast/core';
import express from 'express';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { idempotency as fastifyIdempotency } from '../src/fastify.js';
import { type IdempotencyStore, memoryStore } from '../src/index.js';
import { closeAll, closers, listenNode } from './http-support/body-apps.js';
import { gate, keyedPost, leaveWhile, sendKeyed, tick } from './http-support/leave.js';

afterEach(closeAll);

/**
 * A store whose claim takes effect at once but whose answer comes `replyMs` later (a Redis that
 * ran the script, then was slow to reply: a failover, a busy network). The lease began when
 * the claim took effect, not when its answer came.
 */
function slowReplyStore(replyMs: number): IdempotencyStore {
  const inner = memoryStore();
  return {
    claim: async (key, fingerprint, leaseMs) => {
      const result = await inner.claim(key, fingerprint, leaseMs);
      if (result.status === 'claimed') await tick(replyMs);
      return result;
    },
    complete: (key, token, outcome, ttlMs) => inner.complete(key, token, outcome, ttlMs),
    release: (key, token) => inner.release(key, token),
  };
}

describe('a claim whose answer came late, its client gone, its handler never ending the response', () => {
  it('gets the response-lost problem before its lease runs out at the store: a retry never runs the handler again', async () => {
    const app = express();
    // leaseMs 1 s: the response-lost margin is 100 ms; the claim's answer takes 300 ms.
    app.use(idempotency({ store: slowReplyStore(300), scope: 'global', bus: createBus(), leaseMs: 1_000 }));
    let ran = 0;
    const running = gate();
    const release = gate();
    app.post('/orders', async (req, res) => {
      ran++;
      running.open();
      await release.opened;
      if (req.socket.destroyed) return; // stops once its client has gone: never ends the response
      res.status(201).send('made');
    });
    const port = await listenNode(createServer(app));
    await leaveWhile(port, keyedPost('/orders'), running.opened);
    release.open();
    let answer = await sendKeyed(`http://127.0.0.1:${port}/orders`);
    for (let turn = 0; turn < 150 && answer.status === 409; turn++) {
      await tick(10);
      answer = await sendKeyed(`http://127.0.0.1:${port}/orders`);
    }
    expect({ ran, status: answer.status, type: answer.type }).toEqual({
      ran: 1,
      status: 500,
      type: 'application/problem+json',
    });
  });
  it('Fastify, a handler that returns no promise and never sends: the same', async () => {
    const app = Fastify();
    await app.register(fastifyIdempotency, {
      store: slowReplyStore(300),
      scope: 'global',
      bus: createBus(),
      leaseMs: 1_000,
    });
    app.addContentTypeParser('text/plain', { parseAs: 'string' }, (_r, body, done) => done(null, body));
    let ran = 0;
    const running = gate();
    app.post('/orders', (_request, _reply) => {
      ran++;
      running.open();
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    closers.push(() => app.close());
    const port = (app.server.address() as import('node:net').AddressInfo).port;
    await leaveWhile(port, keyedPost('/orders'), running.opened);
    let answer = await sendKeyed(`http://127.0.0.1:${port}/orders`);
    for (let turn = 0; turn < 150 && answer.status === 409; turn++) {
      await tick(10);
      answer = await sendKeyed(`http://127.0.0.1:${port}/orders`);
    }
    expect({ ran, status: answer.status, type: answer.type }).toEqual({
      ran: 1,
      status: 500,
      type: 'application/problem+json',
    });
  });
});
