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

  /**
   * An app whose pages are HTML and whose policy is `default-src 'none'` (helmet's, on a server
   * of HTML forms) sends its own 404s just as finalhandler does: `text/html; charset=utf-8` with
   * that policy. Told apart by the headers alone, such a 404 from a handler that ran was released,
   * and the retry ran the handler again.
   */
  it('a 404 page in HTML the handler sends is stored too: the router reached a route (req.route), so it is not the router own', async () => {
    const app = apiWithPolicy();
    let ran = 0;
    app.post('/orders/:id/refund', (_req, res) => {
      ran++;
      res.status(404).type('html').send('<p>No such order</p>');
    });
    const url = `http://127.0.0.1:${await listenNode(createServer(app))}/orders/7/refund`;
    const send = () => fetch(url, { method: 'POST', headers: { 'idempotency-key': 'k' }, body: 'x' });
    const first = await send();
    expect(first.status).toBe(404);
    expect(first.headers.get('content-type')).toBe('text/html; charset=utf-8');
    await first.text();
    const retry = await send();
    expect(retry.status).toBe(404);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    expect(await retry.text()).toBe('<p>No such order</p>');
    expect(ran).toBe(1);
  });

  it('so is one an app.use() handler sends (no route is reached): its page is not the router own, which says "Cannot POST /path"', async () => {
    const app = apiWithPolicy();
    let ran = 0;
    app.use('/orders', (_req, res) => {
      ran++;
      res.status(404).type('html').send('<p>No such order</p>');
    });
    const url = `http://127.0.0.1:${await listenNode(createServer(app))}/orders/7/refund`;
    const send = () => fetch(url, { method: 'POST', headers: { 'idempotency-key': 'k' }, body: 'x' });
    await (await send()).text();
    const retry = await send();
    expect(retry.status).toBe(404);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    expect(ran).toBe(1);
  });

  it('a handler that ran, then passed the request on (next()) to the router own 404: stored, as a route was reached', async () => {
    const app = apiWithPolicy();
    let ran = 0;
    app.post('/orders', (_req, _res, next) => {
      ran++;
      next();
    });
    const url = `http://127.0.0.1:${await listenNode(createServer(app))}/orders`;
    const send = () => fetch(url, { method: 'POST', headers: { 'idempotency-key': 'k' }, body: 'x' });
    const first = await send();
    expect(await first.text()).toContain('<pre>Cannot POST /orders</pre>');
    const retry = await send();
    expect(retry.status).toBe(404);
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
