import type { ServerResponse } from 'node:http';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { memoryStore } from '../src/index.js';
import { closeServers, listen, newKey, send, spy } from './http-support/support.js';

// The Express middleware watches a response through Express's root response prototype (set once)
// instead of methods set on each response. These cases are where a prototype could be lost or
// bypassed: Express swapping the prototype for a mounted sub-app, a layer before the middleware
// that replaced the response's methods itself, two middlewares on one response, and apps in the
// same process that do not use the middleware at all.

afterEach(closeServers);

/** A handler that answers in three writes, with a header only writeHead() knows. */
function chunked(counter: { calls: number }) {
  return (_req: express.Request, res: express.Response) => {
    const n = ++counter.calls;
    res.writeHead(201, { 'Content-Type': 'text/plain', ETag: `"v${n}"` });
    res.write('one,');
    res.write(Buffer.from('two,'));
    res.end(`three:${n}`);
  };
}

async function firstAndReplay(url: string) {
  const key = newKey();
  const first = await send(url, { key, body: { a: 1 } });
  const again = await send(url, { key, body: { a: 1 } });
  return { first, again };
}

describe('express middleware: where the response is watched', () => {
  it('the route is in a mounted sub-app (Express swaps the prototype): stored once, replayed byte for byte', async () => {
    const app = express();
    const store = spy(memoryStore());
    app.use(idempotency({ scope: 'global', store }));
    const sub = express();
    const counter = { calls: 0 };
    sub.post('/orders', chunked(counter));
    app.use('/shop', sub);
    const { first, again } = await firstAndReplay(`${await listen(app)}/shop/orders`);
    expect(first.status).toBe(201);
    expect(first.text).toBe('one,two,three:1');
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.bytes.equals(first.bytes)).toBe(true);
    expect(again.headers.get('etag')).toBe('"v1"');
    expect(counter.calls).toBe(1);
    expect(store.counts).toEqual({ claim: 2, complete: 1, release: 0 });
  });

  it('the middleware is in a sub-app and the route in the parent (the prototype is swapped back): stored', async () => {
    const app = express();
    const store = spy(memoryStore());
    const sub = express();
    sub.use(idempotency({ scope: 'global', store }));
    app.use(sub);
    const counter = { calls: 0 };
    app.post('/orders', chunked(counter));
    const { first, again } = await firstAndReplay(`${await listen(app)}/orders`);
    expect(first.text).toBe('one,two,three:1');
    expect(again.bytes.equals(first.bytes)).toBe(true);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(counter.calls).toBe(1);
    expect(store.counts.complete).toBe(1);
  });

  it('a layer before the middleware replaced write() and end() on the response: both see every byte', async () => {
    const app = express();
    const seen: string[] = [];
    // What compression and loggers do: keep the methods they found, set their own on the response.
    app.use((_req, res, next) => {
      const write = res.write;
      const end = res.end;
      res.write = function (this: ServerResponse, chunk: unknown, ...rest: unknown[]) {
        seen.push(String(chunk));
        return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
      } as typeof res.write;
      res.end = function (this: ServerResponse, chunk?: unknown, ...rest: unknown[]) {
        if (chunk !== undefined && typeof chunk !== 'function') seen.push(String(chunk));
        return (end as (...a: unknown[]) => ServerResponse).call(this, chunk, ...rest);
      } as typeof res.end;
      next();
    });
    const store = spy(memoryStore());
    app.use(idempotency({ scope: 'global', store }));
    const counter = { calls: 0 };
    app.post('/orders', chunked(counter));
    const { first, again } = await firstAndReplay(`${await listen(app)}/orders`);
    expect(first.text).toBe('one,two,three:1');
    expect(again.bytes.equals(first.bytes)).toBe(true);
    expect(counter.calls).toBe(1);
    expect(store.counts.complete).toBe(1);
    // The layer saw the handler's writes once, and the replay's body once.
    expect(seen).toEqual(['one,', 'two,', 'three:1', 'one,two,three:1']);
  });

  it('two middlewares on one response (two stores): each stores it, the handler runs once', async () => {
    const app = express();
    const outer = spy(memoryStore());
    const inner = spy(memoryStore());
    app.use(idempotency({ scope: 'global', store: outer }));
    app.use(idempotency({ scope: 'global', store: inner, header: 'x-request-key' }));
    const counter = { calls: 0 };
    app.post('/orders', chunked(counter));
    const url = `${await listen(app)}/orders`;
    const key = newKey();
    const headers = { 'x-request-key': key };
    const first = await send(url, { key, body: {}, headers });
    const again = await send(url, { key, body: {}, headers });
    expect(first.text).toBe('one,two,three:1');
    expect(again.bytes.equals(first.bytes)).toBe(true);
    expect(counter.calls).toBe(1);
    expect(outer.counts.complete).toBe(1);
    expect(inner.counts.complete).toBe(1);
    // The inner key alone (a new outer key) replays what the inner store kept.
    const inner2 = await send(url, { key: newKey(), body: {}, headers });
    expect(inner2.headers.get('idempotent-replayed')).toBe('true');
    expect(inner2.text).toBe('one,two,three:1');
    expect(counter.calls).toBe(1);
  });

  it('apps without the middleware, and requests without a key, are answered untouched in the same process', async () => {
    const guarded = express();
    const store = spy(memoryStore());
    guarded.use(idempotency({ scope: 'global', store }));
    const counter = { calls: 0 };
    guarded.post('/orders', chunked(counter));
    const plain = express();
    const plainCounter = { calls: 0 };
    plain.post('/orders', chunked(plainCounter));
    const [guardedUrl, plainUrl] = [await listen(guarded), await listen(plain)];
    // The guarded app has watched a response: the prototype they share has the watching methods.
    await firstAndReplay(`${guardedUrl}/orders`);
    for (const url of [`${plainUrl}/orders`, `${guardedUrl}/orders`]) {
      const a = await send(url, { body: {} });
      const b = await send(url, { body: {} });
      expect(a.status).toBe(201);
      expect(a.headers.get('idempotent-replayed')).toBeNull();
      expect(b.text).not.toBe(a.text);
    }
    expect(plainCounter.calls).toBe(2);
    expect(counter.calls).toBe(3);
    expect(store.counts).toEqual({ claim: 2, complete: 1, release: 0 });
  });
});
