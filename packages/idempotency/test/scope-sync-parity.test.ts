import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { createBus } from '@holdfast/core';
import express5 from 'express';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency as expressIdempotency } from '../src/express.js';
import { idempotency as fastifyIdempotency } from '../src/fastify.js';
import { memoryStore } from '../src/index.js';
import { newKey, send } from './http-support/support.js';

// A scope function's string is taken at once (no promise, no tick); its promise is awaited as
// before. Whichever way a scope answers, and when an app's scope answers one way for some
// requests and the other for the rest (a cached account, a lookup on a miss), a user sees the same
// thing: statuses, bodies, Idempotent-Replayed, bus events, handler runs, one scope call a
// request, a synchronous throw at the app's error handler with no unhandled rejection. The same
// app runs each scenario with a scope that answers at once, later, or either, on Express 5 and 4
// and Fastify 5.

const express4 = createRequire(import.meta.url)('express4') as typeof express5;

type Kind = 'sync' | 'async' | 'mixed';
type Scope = (req: { headers: Record<string, unknown> }) => string | Promise<string>;

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

function scopeOf(kind: Kind, calls: { n: number }): Scope {
  return (req) => {
    calls.n++;
    const user = req.headers['x-user'];
    if (user === 'throw') throw new Error('no session');
    const id = user as string;
    if (kind === 'sync') return id;
    if (kind === 'async') return Promise.resolve(id);
    return req.headers['x-sync'] === '1' ? id : new Promise((r) => setTimeout(() => r(id), 5));
  };
}

async function start(framework: string, kind: Kind, options: Record<string, unknown> = {}) {
  const calls = { n: 0 };
  const runs = { n: 0 };
  const events: string[] = [];
  const errors: string[] = [];
  const bus = createBus();
  bus.on('*', (e) => events.push(e.type));
  const store = memoryStore();
  let gate: Promise<void> = Promise.resolve();
  const setGate = (g: Promise<void>) => {
    gate = g;
  };
  const opts = { store, bus, scope: scopeOf(kind, calls), ...options };
  let port: number;
  if (framework === 'fastify') {
    const app = Fastify(options.handlerTimeout ? { handlerTimeout: options.handlerTimeout as number } : {});
    delete (opts as Record<string, unknown>).handlerTimeout;
    app.setErrorHandler((error, _req, reply) => {
      errors.push((error as Error).message);
      reply.code(401).send({ error: (error as Error).message });
    });
    await app.register(fastifyIdempotency, opts as never);
    app.post('/orders', async (req) => {
      const n = ++runs.n;
      await gate;
      return { n, user: req.headers['x-user'], body: req.body };
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    port = (app.server.address() as AddressInfo).port;
    closers.push(() => app.close());
  } else {
    const express = framework === 'express4' ? express4 : express5;
    const app = express();
    app.use(expressIdempotency(opts as never));
    app.use(express.json());
    app.post('/orders', async (req, res) => {
      const n = ++runs.n;
      await gate;
      res.json({ n, user: req.headers['x-user'], body: req.body });
    });
    app.use((err: Error, _req: express5.Request, res: express5.Response, _next: express5.NextFunction) => {
      errors.push(err.message);
      res.status(401).json({ error: err.message });
    });
    const server = createServer(app);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
    closers.push(
      () =>
        new Promise((r) => {
          server.closeAllConnections();
          server.close(r);
        }),
    );
  }
  const post = async (key: string, user: string, body: unknown = { a: 1 }, sync = false) => {
    const r = await send(`http://127.0.0.1:${port}/orders`, {
      key,
      body,
      headers: { 'x-user': user, ...(sync ? { 'x-sync': '1' } : {}) },
    });
    return { status: r.status, replayed: r.headers.get('idempotent-replayed'), text: r.text };
  };
  return { post, calls, runs, events, errors, store, setGate };
}

async function scenario(framework: string, kind: Kind) {
  const app = await start(framework, kind);
  const out: unknown[] = [];
  const k = newKey();
  out.push(await app.post(k, 'ann', { a: 1 }, true));
  out.push(await app.post(k, 'ann', { a: 1 }, false));
  out.push(await app.post(k, 'bob', { a: 1 }, false));
  out.push(await app.post(k, 'ann', { a: 2 }, true));
  out.push(await app.post(k, 'throw', { a: 1 }, true));
  // Concurrent: one held while a retry comes.
  let open!: () => void;
  app.setGate(new Promise<void>((r) => (open = r)));
  const first = app.post('k2', 'ann', { a: 1 }, false);
  // The first has claimed the key once its handler runs.
  for (let i = 0; i < 400 && app.runs.n < 3; i++) await new Promise((r) => setTimeout(r, 5));
  // A retry that ran (not a 409) waits on the gate too: it is opened after a while all the same.
  const retry = app.post('k2', 'ann', { a: 1 }, true);
  await Promise.race([retry, new Promise((r) => setTimeout(r, 1_000))]);
  open();
  out.push(await retry, await first);
  out.push(await app.post('k2', 'ann', { a: 1 }, true));
  return { out, calls: app.calls.n, runs: app.runs.n, events: app.events, errors: app.errors };
}

describe.each(['express5', 'express4', 'fastify'])(
  '%s: a scope function that answers at once, later, or either',
  (framework) => {
    it('gives the same statuses, bodies, events, runs and scope calls', async () => {
      let unhandled = 0;
      const onUnhandled = () => unhandled++;
      process.on('unhandledRejection', onUnhandled);
      try {
        const sync = await scenario(framework, 'sync');
        const async = await scenario(framework, 'async');
        const mixed = await scenario(framework, 'mixed');
        expect(sync).toEqual(async);
        expect(mixed).toEqual(async);
        expect(sync.errors).toEqual(['no session']);
        expect(unhandled).toBe(0);
      } finally {
        process.off('unhandledRejection', onUnhandled);
      }
    });
  },
);
