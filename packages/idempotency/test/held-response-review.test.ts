import { createServer } from 'node:http';
import { createBus, type HoldfastEvent } from '@holdfast/core';
import compression from 'compression';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import type { IdempotencyStore } from '../src/index.js';
import { closeAll, listenNode } from './http-support/body-apps.js';
import { slowStore } from './http-support/slow-store.js';

/**
 * A response held while a store outside the process keeps it (ed357cd): what happens when the
 * store's completion fails, hangs, or the handler misbehaves while it is held.
 */
const unhandled: unknown[] = [];
const record = (error: unknown) => unhandled.push(error);
process.on('unhandledRejection', record);
process.on('uncaughtException', record);
afterEach(async () => {
  await closeAll();
  unhandled.length = 0;
});

const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function serve(store: IdempotencyStore, handler: express.RequestHandler, between: express.RequestHandler[] = []) {
  const events: HoldfastEvent[] = [];
  const bus = createBus();
  bus.on('*', (event) => events.push(event));
  const app = express();
  let ran = 0;
  app.use(idempotency({ store, scope: 'global', bus, storeTimeoutMs: 50, completeTimeoutMs: 300 }));
  for (const mw of between) app.use(mw);
  app.post('/orders', (req, res, next) => {
    ran++;
    handler(req, res, next);
  });
  const port = await listenNode(createServer(app));
  const post = async () => {
    const started = Date.now();
    const response = await fetch(`http://127.0.0.1:${port}/orders`, {
      method: 'POST',
      headers: { 'idempotency-key': 'k', 'content-type': 'text/plain' },
      body: 'hi',
      signal: AbortSignal.timeout(3_000),
    });
    return {
      status: response.status,
      replayed: response.headers.get('idempotent-replayed'),
      body: await response.text(),
      ms: Date.now() - started,
    };
  };
  return { post, ran: () => ran, events };
}

describe('a held response whose store fails', () => {
  it.each([
    ['rejects', () => Promise.reject(new Error('READONLY You cannot write against a read only replica.'))],
    ['never answers', () => new Promise<boolean>(() => {})],
  ])(
    'its completion %s: the client gets its answer, the key stays claimed (409), nothing unhandled',
    async (_, complete) => {
      const store = slowStore({ complete });
      const { post, ran, events } = await serve(store, (_req, res) => {
        res.status(201).setHeader('x-order', '1');
        res.end('made');
      });
      const first = await post();
      expect({ status: first.status, body: first.body }).toEqual({ status: 201, body: 'made' });
      expect(first.ms).toBeLessThan(2_000);
      const second = await post();
      expect(second.status).toBe(409);
      expect(ran()).toBe(1);
      expect(events.some((e) => e.type === 'idempotency.storeError')).toBe(true);
      // No secret or store message in the events: only a code.
      expect(JSON.stringify(events)).not.toContain('READONLY');
      await tick(50);
      expect(unhandled).toEqual([]);
    },
  );
});

describe('a held response and a handler that misbehaves', () => {
  it('res.end twice and res.write after end: one answer, nothing unhandled, the first is stored', async () => {
    const { post, ran } = await serve(slowStore({ completeMs: 60 }), (_req, res) => {
      res.status(201);
      res.end('first');
      res.write('late');
      res.end('second');
      setTimeout(() => {
        res.write('later');
        res.end('third');
      }, 100);
    });
    const first = await post();
    expect({ status: first.status, body: first.body }).toEqual({ status: 201, body: 'first' });
    await tick(150);
    const second = await post();
    expect(second).toMatchObject({ status: 201, body: 'first', replayed: 'true' });
    expect(ran()).toBe(1);
    expect(unhandled.map(String)).toEqual([]);
  });

  it('compression between the middleware and the handler: the client and the replay both read the body', async () => {
    const big = 'order made '.repeat(500);
    const { post, ran } = await serve(
      slowStore({ completeMs: 60 }),
      (_req, res) => {
        res.status(201).type('text/plain');
        res.write(big.slice(0, 1000));
        res.end(big.slice(1000));
      },
      [compression({ threshold: 0 })],
    );
    const first = await post();
    expect({ status: first.status, body: first.body }).toEqual({ status: 201, body: big });
    const second = await post();
    expect({ status: second.status, body: second.body, replayed: second.replayed }).toEqual({
      status: 201,
      body: big,
      replayed: 'true',
    });
    expect(ran()).toBe(1);
    expect(unhandled).toEqual([]);
  });

  it.each([204, 304])('a %i with a body: one answer, nothing unhandled', async (status) => {
    const { post, ran } = await serve(slowStore({ completeMs: 60 }), (_req, res) => {
      res.status(status).end('ignored');
    });
    const first = await post();
    expect(first.status).toBe(status);
    const second = await post();
    expect(second.status).toBe(status);
    expect(ran()).toBe(1);
    expect(unhandled).toEqual([]);
  });
});
