import { createServer } from 'node:http';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { memoryStore } from '../src/index.js';
import { closeAll, listenNode } from './http-support/body-apps.js';

afterEach(closeAll);

describe('express: the middleware mounted twice on one request path, on the same store', () => {
  /**
   * Mounted app-wide, and again on a router to require a key there (same store, same scope):
   * the router's instance asked the store for the key the app's had just claimed for the same
   * request, answered it 409 in-progress, and the app's instance stored that 409 as the key's
   * answer. The handler never ran, and every retry got the 409 replayed.
   */
  it('the handler runs once, its answer is stored and replayed; the router still requires a key', async () => {
    const store = memoryStore();
    const app = express();
    app.use(idempotency({ store, scope: 'global' }));
    const payments = express.Router();
    payments.use(idempotency({ store, scope: 'global', required: true }));
    let ran = 0;
    payments.post('/payments', express.json(), (_req, res) => {
      res.status(201).json({ ran: ++ran });
    });
    app.use(payments);
    const url = `http://127.0.0.1:${await listenNode(createServer(app))}/payments`;
    const send = (key?: string) =>
      fetch(url, {
        method: 'POST',
        headers: { ...(key === undefined ? {} : { 'idempotency-key': key }), 'content-type': 'application/json' },
        body: '{"amount":1}',
      });
    const first = await send('k-1');
    expect({ status: first.status, body: await first.json() }).toEqual({ status: 201, body: { ran: 1 } });
    const again = await send('k-1');
    expect({
      status: again.status,
      body: await again.json(),
      replayed: again.headers.get('idempotent-replayed'),
    }).toEqual({ status: 201, body: { ran: 1 }, replayed: 'true' });
    expect((await send()).status).toBe(400);
    expect(ran).toBe(1);
    expect(store.snapshot()).toMatchObject({ entries: 1, inProgress: 0 });
  });
});
