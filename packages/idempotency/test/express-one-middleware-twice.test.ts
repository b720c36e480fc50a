import { createServer } from 'node:http';
import express from 'express';
import { afterEach, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { memoryStore } from '../src/index.js';
import { closeAll, listenNode } from './http-support/body-apps.js';

afterEach(closeAll);

/**
 * One middleware, the only one this process made (this file makes no other: Vitest gives each
 * file modules of its own), mounted app-wide and again on the route (`const guard =
 * idempotency(...)`, then `app.use(guard)` and `app.post(path, guard, ...)`). The middleware
 * looked for the keys a request already holds only once a second one had been made: its second
 * pass asked the store for the key its first pass had just claimed for the same request, answered
 * it 409 in-progress, and the first pass stored that 409 as the key's answer. The handler never
 * ran, and every retry got the 409 replayed for the key's whole ttlMs.
 */
it('express: one middleware mounted app-wide and on the route runs the handler once and replays its answer', async () => {
  const store = memoryStore();
  const guard = idempotency({ store, scope: 'global' });
  const app = express();
  app.use(guard);
  let ran = 0;
  app.post('/payments', guard, express.json(), (_req, res) => {
    res.status(201).json({ ran: ++ran });
  });
  const url = `http://127.0.0.1:${await listenNode(createServer(app))}/payments`;
  const send = () =>
    fetch(url, {
      method: 'POST',
      headers: { 'idempotency-key': 'k-1', 'content-type': 'application/json' },
      body: '{"amount":1}',
    });
  const first = await send();
  expect({ status: first.status, body: await first.json() }).toEqual({ status: 201, body: { ran: 1 } });
  const again = await send();
  expect({
    status: again.status,
    body: await again.json(),
    replayed: again.headers.get('idempotent-replayed'),
  }).toEqual({ status: 201, body: { ran: 1 }, replayed: 'true' });
  expect(ran).toBe(1);
  expect(store.snapshot()).toMatchObject({ entries: 1, inProgress: 0 });
});
