import { createServer, request } from 'node:http';
import { HoldfastConfigError } from '@holdfast/core';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { memoryStore } from '../src/index.js';
import { closeAll, listenNode } from './http-support/body-apps.js';

afterEach(closeAll);

/**
 * Mounted after a middleware that read the body and kept it where the middleware cannot see it
 * (not `req.body`, no `captureRawBody`): every body looked like none, and a request with the same
 * key and another body was answered with the first one's response (a payment of 5 replayed for
 * one of 5000) instead of 422.
 */
describe('express: a body consumed before the middleware, kept nowhere it can read', () => {
  it('fails the request with a config error naming the fix; the handler does not run, nothing is claimed', async () => {
    const app = express();
    app.use((req, _res, next) => {
      let text = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => {
        text += chunk;
      });
      req.on('end', () => {
        (req as unknown as { payload: string }).payload = text;
        next();
      });
    });
    app.use(idempotency({ store: memoryStore(), scope: 'global' }));
    const paid: string[] = [];
    app.post('/pay', (req, res) => {
      paid.push((req as unknown as { payload: string }).payload);
      res.status(201).json({ paid: paid.at(-1) });
    });
    let seen: unknown;
    app.use((error: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      seen = error;
      res.status(500).end();
    });
    const port = await listenNode(createServer(app));
    const send = (body: string) =>
      fetch(`http://127.0.0.1:${port}/pay`, {
        method: 'POST',
        headers: { 'idempotency-key': 'k', 'content-type': 'text/plain' },
        body,
      });
    const first = await send('amount=5');
    const second = await send('amount=5000');
    expect({ first: first.status, second: second.status, paid }).toEqual({ first: 500, second: 500, paid: [] });
    expect(seen).toBeInstanceOf(HoldfastConfigError);
    expect((seen as Error).message).toContain('captureRawBody');
    // Without a body the middleware has nothing to miss: such a request is served.
    const empty = await fetch(`http://127.0.0.1:${port}/pay`, { method: 'POST', headers: { 'idempotency-key': 'e' } });
    expect(empty.status).toBe(201);
  });

  it('an empty chunked body a first idempotency() read (a global one and a route one) is no body for the second: served, not E_CONFIG', async () => {
    const app = express();
    app.use(idempotency({ store: memoryStore(), scope: 'global' }));
    let runs = 0;
    app.post('/pay', idempotency({ store: memoryStore(), scope: () => 'payments' }), (_req, res) => {
      runs++;
      res.status(201).json({ runs });
    });
    const seen: unknown[] = [];
    app.use((error: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      seen.push(error);
      res.status(500).end();
    });
    const port = await listenNode(createServer(app));
    // Transfer-Encoding: chunked with no chunk: the first middleware reads the stream to its end.
    const send = () =>
      new Promise<number>((resolve, reject) => {
        const req = request(
          { port, host: '127.0.0.1', method: 'POST', path: '/pay', headers: { 'idempotency-key': 'chunked-empty' } },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', reject);
        req.flushHeaders();
        req.end();
      });
    expect([await send(), await send(), runs, seen]).toEqual([201, 201, 1, []]);
  });
});
