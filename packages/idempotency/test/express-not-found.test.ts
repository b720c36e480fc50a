import { createServer } from 'node:http';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { memoryStore } from '../src/index.js';
import { closeAll, listenNode } from './http-support/body-apps.js';

afterEach(closeAll);

/** An API that sends `Content-Security-Policy: default-src 'none'` on every response, then the middleware. */
function apiWithPolicy() {
  const app = express();
  app.use((_req, res, next) => {
    res.setHeader('Content-Security-Policy', "default-src 'none'");
    next();
  });
  app.use(idempotency({ store: memoryStore(), scope: 'global' }));
  return app;
}

describe('express: a 404 the handler sends, on an API that sends Content-Security-Policy: default-src none', () => {
  /**
   * JSON APIs often send `Content-Security-Policy: default-src 'none'` on every response (GitHub's
   * does; helmet for an API). The router's own 404 (finalhandler) was told apart by that header
   * alone: every 404 such an app's handlers sent was released, not stored, and the retry ran the
   * handler again and could answer otherwise for the same key.
   */
  it('is stored like any other response: the retry gets the replay, the handler ran once', async () => {
    const app = apiWithPolicy();
    let ran = 0;
    app.post('/orders/:id/refund', (_req, res) => {
      ran++;
      res.status(404).json({ error: 'no such order' });
    });
    const url = `http://127.0.0.1:${await listenNode(createServer(app))}/orders/7/refund`;
    const send = () =>
      fetch(url, {
        method: 'POST',
        headers: { 'idempotency-key': 'k', 'content-type': 'application/json' },
        body: '{}',
      });
    const first = await send();
    expect(first.status).toBe(404);
    await first.text();
    const retry = await send();
    expect(await retry.json()).toEqual({ error: 'no such order' });
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    expect(ran).toBe(1);
  });

  it('the router own 404 (no route for the path) is still not stored, on such an API too', async () => {
    const app = apiWithPolicy();
    const url = `http://127.0.0.1:${await listenNode(createServer(app))}/nowhere`;
    const send = () => fetch(url, { method: 'POST', headers: { 'idempotency-key': 'k' }, body: 'x' });
    const first = await send();
    expect(first.status).toBe(404);
    await first.text();
    const retry = await send();
    expect(retry.status).toBe(404);
    expect(retry.headers.get('idempotent-replayed')).toBeNull();
  });
});
