import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBus, type HoldfastEvent } from '@holdfast/core';
import { resilientFetch } from '@holdfast/fetch';
import { memoryStore } from '@holdfast/idempotency';
import { idempotency } from '@holdfast/idempotency/express';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';

// resilientFetch with an Idempotency-Key against our own Express middleware: an attempt given up
// at the per-try timeout keeps running on the server; the retry finds its key running (409 with
// Retry-After, as the middleware answers and the IETF draft describes). The caller must get the
// order's response, not the 409, and the order must be made once.

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((resolve) => s.close(resolve));
  }
});

async function orders(ms: number) {
  const app = express();
  let created = 0;
  const seen: number[] = [];
  app.use((_req, res, next) => {
    res.on('finish', () => seen.push(res.statusCode));
    next();
  });
  app.use(idempotency({ store: memoryStore(), scope: 'global' }));
  app.use(express.json());
  app.post('/orders', (req, res) => {
    setTimeout(() => res.status(201).json({ order: ++created, amount: req.body.amount }), ms);
  });
  const server = createServer(app).listen(0, '127.0.0.1');
  servers.push(server);
  await new Promise((resolve) => server.once('listening', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/orders`;
  return { url, seen, created: () => created };
}

describe('resilientFetch: a retry that finds its own key still running', () => {
  it('waits as Retry-After says and gets the order the timed-out attempt made, made once', async () => {
    const s = await orders(700);
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('*', (e) => events.push(e));
    const http = resilientFetch({
      bus,
      idempotencyKey: 'auto',
      timeout: { perTry: 200, total: 10_000 },
      retry: { maxAttempts: 4, backoff: { initialDelay: 50, maxDelay: 5_000 } },
      hedge: false,
    });
    try {
      const res = await http(s.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ amount: 42 }),
      });
      expect(res.status).toBe(201);
      expect(await res.json()).toEqual({ order: 1, amount: 42 });
      expect(s.created()).toBe(1);
      // The server answered a 409 while the timed-out attempt ran, then the replay (the first
      // attempt's own response went to a client that had left: no 'finish' for it).
      expect(s.seen).toContain(409);
      expect(s.seen.at(-1)).toBe(201);
      // The 409 did not count against the host's breaker.
      expect(events.filter((e) => e.type === 'breaker.open')).toHaveLength(0);
    } finally {
      http.dispose();
    }
  });

  it('a 409 without Retry-After on a retry is returned as it is (a conflict, not a key still running)', async () => {
    const app = express();
    let calls = 0;
    app.post('/users', (_req, res) => {
      calls++;
      // The first attempt takes too long (the client gives up); the retry finds the user made.
      if (calls === 1) setTimeout(() => res.status(201).end('made'), 400);
      else res.status(409).end('exists');
    });
    const server = createServer(app).listen(0, '127.0.0.1');
    servers.push(server);
    await new Promise((resolve) => server.once('listening', resolve));
    const http = resilientFetch({
      idempotencyKey: 'auto',
      timeout: { perTry: 150, total: 10_000 },
      retry: { maxAttempts: 3, backoff: { initialDelay: 10, maxDelay: 10 } },
      hedge: false,
    });
    try {
      const res = await http(`http://127.0.0.1:${(server.address() as AddressInfo).port}/users`, { method: 'POST' });
      expect(res.status).toBe(409);
      expect(await res.text()).toBe('exists');
      expect(calls).toBe(2);
    } finally {
      http.dispose();
    }
  });
});
