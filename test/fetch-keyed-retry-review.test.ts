import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBus, type HoldfastEvent } from '@holdfast/core';
import { resilientFetch } from '@holdfast/fetch';
import { afterEach, describe, expect, it } from 'vitest';

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((resolve) => s.close(resolve));
  }
});

async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer(handler).listen(0, '127.0.0.1');
  servers.push(server);
  await new Promise((resolve) => server.once('listening', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A key store shared by hosts: the first request for a key runs `ms`; others meanwhile get 409 + Retry-After. */
function keyed(ms: number, retryAfter = '0') {
  const keys = new Map<string, { done?: { status: number; body: string } }>();
  let made = 0;
  const log: number[] = [];
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const key = String(req.headers['idempotency-key']);
    const entry = keys.get(key);
    const send = (status: number, body: string, headers: Record<string, string> = {}) => {
      log.push(status);
      res.writeHead(status, headers).end(body);
    };
    if (entry?.done) return send(entry.done.status, entry.done.body);
    if (entry) return send(409, 'key running', { 'retry-after': retryAfter });
    const mine: { done?: { status: number; body: string } } = {};
    keys.set(key, mine);
    setTimeout(() => {
      mine.done = { status: 201, body: `order ${++made}` };
      if (!res.destroyed) send(201, mine.done.body);
    }, ms);
  };
  return { handler, made: () => made, log };
}

describe('resilientFetch: keyed 409 + Retry-After (review)', () => {
  it('on the first attempt it is returned as it is, no retry', async () => {
    let calls = 0;
    const url = await serve((_req, res) => {
      calls++;
      res.writeHead(409, { 'retry-after': '0' }).end('someone else runs this key');
    });
    const http = resilientFetch({ idempotencyKey: 'auto', retry: { maxAttempts: 3 }, hedge: false });
    try {
      const res = await http(`${url}/orders`, { method: 'POST' });
      expect(res.status).toBe(409);
      expect(await res.text()).toBe('someone else runs this key');
      expect(calls).toBe(1);
    } finally {
      http.dispose();
    }
  });

  it('a server that answers 409 + Retry-After for good: maxAttempts attempts, the last 409 returned, body readable, the breaker stays closed', async () => {
    const k = keyed(60_000);
    const url = await serve(k.handler);
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('*', (e) => events.push(e));
    const http = resilientFetch({
      bus,
      idempotencyKey: 'auto',
      timeout: { perTry: 100, total: 5_000 },
      retry: { maxAttempts: 5, backoff: { initialDelay: 10, maxDelay: 10 } },
      breaker: { defaults: { consecutiveFailures: 2 } },
      budget: false,
      hedge: false,
    });
    try {
      const res = await http(`${url}/orders`, { method: 'POST' });
      expect(res.status).toBe(409);
      expect(await res.text()).toBe('key running');
      expect(k.log).toEqual([409, 409, 409, 409]);
      expect(events.filter((e) => e.type === 'breaker.open')).toHaveLength(0);
    } finally {
      http.dispose();
    }
  });

  it('a Retry-After past the total deadline: the 409 is returned at once, not a TimeoutError later', async () => {
    const k = keyed(60_000, '3600');
    const url = await serve(k.handler);
    const http = resilientFetch({
      idempotencyKey: 'auto',
      timeout: { perTry: 100, total: 20_000 },
      retry: { maxAttempts: 5, backoff: { initialDelay: 10, maxDelay: 60_000 } },
      hedge: false,
    });
    try {
      const t0 = Date.now();
      const res = await http(`${url}/orders`, { method: 'POST' });
      expect(res.status).toBe(409);
      // Waiting for the deadline would take 20 s; half of that leaves a loaded machine its room.
      expect(Date.now() - t0).toBeLessThan(10_000);
      expect(k.log).toEqual([409]);
    } finally {
      http.dispose();
    }
  });

  it('with baseUrls (two hosts sharing the key store): the caller gets the order, made once, not the 409', async () => {
    const k = keyed(700, '1');
    const a = await serve(k.handler);
    const b = await serve(k.handler);
    const http = resilientFetch({
      baseUrls: [a, b],
      idempotencyKey: 'auto',
      timeout: { perTry: 200, total: 10_000 },
      retry: { maxAttempts: 4 },
      hedge: false,
    });
    try {
      const res = await http('/orders', { method: 'POST' });
      expect(res.status).toBe(201);
      expect(await res.text()).toBe('order 1');
      expect(k.made()).toBe(1);
    } finally {
      http.dispose();
    }
  });

  it('with hedging on: the caller gets the order, made once', async () => {
    const k = keyed(700, '1');
    const url = await serve(k.handler);
    const http = resilientFetch({
      idempotencyKey: 'auto',
      timeout: { perTry: 200, total: 10_000 },
      retry: { maxAttempts: 4, backoff: { initialDelay: 50, maxDelay: 5_000 } },
      hedge: { delay: 50, maxHedges: 1 } as never,
    });
    try {
      const res = await http(`${url}/orders`, { method: 'POST' });
      expect(res.status).toBe(201);
      expect(await res.text()).toBe('order 1');
      expect(k.made()).toBe(1);
    } finally {
      http.dispose();
    }
  });
  it('with baseUrls, a key running for good: bounded (maxAttempts tries in all, over every run of the hosts), the last 409 returned, body readable', async () => {
    const k = keyed(60_000);
    const a = await serve(k.handler);
    const b = await serve(k.handler);
    const http = resilientFetch({
      baseUrls: [a, b],
      idempotencyKey: 'auto',
      // A's try is given up at perTry. 1 s, not less: under load a 409 that took longer than
      // perTry to come back was counted by the host and timed out at the client (4 logged, then
      // a TimeoutError, in loaded full runs).
      timeout: { perTry: 1_000, total: 30_000 },
      retry: { maxAttempts: 3 },
      budget: false,
      hedge: false,
    });
    try {
      const res = await http('/orders', { method: 'POST' });
      expect(res.status).toBe(409);
      expect(await res.text()).toBe('key running');
      // Failover's run: A (given up at perTry), B's 409; then one more run, ended by its first
      // 409 (the other host shares the key store: asking it at once would only repeat it): three
      // tries, maxAttempts, whatever the runs (A never answers, so two 409s are logged).
      expect(k.log).toHaveLength(2);
      expect(k.log.every((s) => s === 409)).toBe(true);
    } finally {
      http.dispose();
    }
  });
});
