import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { HoldfastConfigError } from '@holdfast/core';
import compression from 'compression';
import express from 'express';
import fc from 'fast-check';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { captureRawBody, idempotency } from '../src/express.js';
import { idempotency as fastifyIdempotency } from '../src/fastify.js';
import { problemTypes } from '../src/http/index.js';
import { memoryStore } from '../src/index.js';
import { closeServers, eventually, listen, newKey, send, spy } from './http-support/support.js';

afterEach(closeServers);

/** A raw request: repeated headers stay repeated, the body goes as given. */
function raw(
  url: string,
  headers: string[],
  body?: Buffer,
): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'POST', headers: ['Host', new URL(url).host, ...headers] }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('scope: no configuration serves one caller another caller’s response', () => {
  it('refuses to start without a scope, and names the opt-in', () => {
    expect(() => idempotency({ store: memoryStore() } as never)).toThrow(HoldfastConfigError);
    expect(() => idempotency({ store: memoryStore() } as never)).toThrow(/scope/);
    expect(() => idempotency({ store: memoryStore(), scope: 'everyone' as never })).toThrow(/scope/);
    // Left out, the required scope was told only "scope Invalid input (got undefined)".
    expect(() => idempotency({ store: memoryStore() } as never)).toThrow(
      /scope must be a function of the request naming the caller, or 'global' \(got undefined\)/,
    );
  });

  it('a scope returning an object, undefined or an empty string fails the request; it never collapses callers', async () => {
    for (const bad of [{ id: 1 }, undefined, '', 42]) {
      const app = express();
      const store = spy(memoryStore());
      let calls = 0;
      app.post('/orders', idempotency({ store, scope: () => bad as never }), (_req, res) => {
        res.json({ n: ++calls });
      });
      let seen: unknown;
      app.use((err: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
        seen = err;
        res.status(500).end();
      });
      const url = await listen(app);
      expect((await send(`${url}/orders`, { key: newKey(), body: {} })).status).toBe(500);
      expect(seen).toBeInstanceOf(HoldfastConfigError);
      expect((seen as Error).message).toContain('scope');
      expect((seen as Error).message).not.toContain('"id"'); // the value itself never reaches a message
      expect(calls).toBe(0);
      expect(store.counts.claim).toBe(0);
    }
  });

  it('property: random requests from two users never see each other’s responses; same bytes replay, other bytes 422', async () => {
    const app = express();
    let calls = 0;
    app.post(
      '/orders',
      idempotency({ store: memoryStore(), scope: (req) => req.get('x-user') }),
      express.text({ type: '*/*' }),
      (req, res) => {
        res.status(201).json({ n: ++calls, user: req.get('x-user'), body: req.body });
      },
    );
    const url = await listen(app);
    let run = 0;
    const request = fc.record({
      user: fc.constantFrom('alice', 'bob'),
      key: fc.constantFrom('k1', 'k2', 'k3'),
      body: fc.constantFrom('a', 'b', '{"x":1}', '{ "x": 1 }'),
      type: fc.constantFrom('text/plain', 'application/json', 'application/octet-stream'),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(request, { minLength: 1, maxLength: 12 }), async (requests) => {
        const ns = `run${++run}-`;
        const first = new Map<string, { body: string; type: string; response: string }>();
        for (const r of requests) {
          const res = await send(`${url}/orders`, {
            key: ns + r.key,
            raw: r.body,
            contentType: r.type,
            headers: { 'x-user': r.user },
          });
          const seen = first.get(`${r.user}/${r.key}`);
          if (seen === undefined) {
            expect(res.status).toBe(201);
            expect(res.json()).toMatchObject({ user: r.user, body: r.body });
            first.set(`${r.user}/${r.key}`, { body: r.body, type: r.type, response: res.text });
          } else if (seen.body === r.body && seen.type === r.type) {
            expect(res.headers.get('idempotent-replayed')).toBe('true');
            expect(res.text).toBe(seen.response);
          } else {
            expect(res.status).toBe(422);
          }
          if (res.status === 201) expect((res.json() as { user: string }).user).toBe(r.user);
        }
      }),
      { numRuns: 20 },
    );
  }, 60_000);
});

describe('Express: the HTTP edge never breaks the app', () => {
  const bodies: [string, Buffer][] = [
    ['text/plain', Buffer.from('hello')],
    ['application/x-www-form-urlencoded', Buffer.from('a=1&b=2')],
    [
      'multipart/form-data; boundary=XyZ',
      Buffer.from('--XyZ\r\nContent-Disposition: form-data; name="f"\r\n\r\nv\r\n--XyZ--\r\n'),
    ],
    ['application/octet-stream', Buffer.from([0, 255, 1, 254])],
    ['application/json', Buffer.from('{"a":1}')],
  ];

  it('with express.json() before it, never 500s on text, form, multipart or octet bodies, key or not', async () => {
    const app = express();
    app.use(express.json(), idempotency({ store: memoryStore(), scope: 'global' }));
    let calls = 0;
    app.post('/any', (req, res) => {
      const chunks: Buffer[] = [];
      if (req.body !== undefined) return void res.status(201).json({ n: ++calls, parsed: req.body });
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => res.status(201).json({ n: ++calls, raw: Buffer.concat(chunks).toString('base64') }));
    });
    const url = await listen(app);
    for (const [type, body] of bodies) {
      for (const key of [undefined, newKey()]) {
        const headers = ['Content-Type', type, ...(key === undefined ? [] : ['Idempotency-Key', key])];
        const first = await raw(`${url}/any`, headers, body);
        expect(first.status, type).toBe(201);
        const parsed = JSON.parse(first.body.toString());
        // The handler reads the body as if the middleware had not: the bytes were put back.
        if (type !== 'application/json') expect(Buffer.from(parsed.raw, 'base64').equals(body), type).toBe(true);
        if (key === undefined) continue;
        const again = await raw(`${url}/any`, headers, body);
        expect(again.headers['idempotent-replayed'], type).toBe('true');
        expect(again.body.equals(first.body)).toBe(true);
        // (A JSON body express.json() consumed is compared by its parsed value: change the value.)
        const other = type === 'application/json' ? Buffer.from('{"a":2}') : Buffer.concat([body, Buffer.from(' ')]);
        const changed = await raw(`${url}/any`, headers, other);
        expect(changed.status, type).toBe(422);
      }
    }
  });

  it('fingerprints the bytes a parser read when given verify: captureRawBody', async () => {
    const app = express();
    app.use(express.json({ verify: captureRawBody }), idempotency({ store: memoryStore(), scope: 'global' }));
    app.post('/orders', (req, res) => void res.status(201).json(req.body));
    const url = await listen(app);
    const key = newKey();
    await send(`${url}/orders`, { key, raw: '{"a":1,"b":2}', contentType: 'application/json' });
    const reordered = await send(`${url}/orders`, { key, raw: '{"b":2,"a":1}', contentType: 'application/json' });
    expect(reordered.status).toBe(422);
  });

  it('answers 400 problem+json to a key sent twice or malformed, 413 to a body over maxRequestBytes', async () => {
    const app = express();
    const store = spy(memoryStore());
    app.use(idempotency({ store, scope: 'global', maxRequestBytes: 16 }));
    app.post('/orders', (_req, res) => void res.status(201).end());
    const url = await listen(app);
    const twice = await raw(`${url}/orders`, ['Idempotency-Key', 'a', 'Idempotency-Key', 'b']);
    expect(twice.status).toBe(400);
    expect(twice.headers['content-type']).toBe('application/problem+json');
    const bad = await raw(`${url}/orders`, ['Idempotency-Key', '"unterminated']);
    expect(bad.status).toBe(400);
    const big = await raw(`${url}/orders`, ['Idempotency-Key', 'k', 'Content-Type', 'text/plain'], Buffer.alloc(64));
    expect(big.status).toBe(413);
    expect(JSON.parse(big.body.toString()).type).toBe('urn:holdfast:problem:idempotency-request-too-large');
    expect(store.counts.claim).toBe(0);
  });

  it('stores the response-lost problem when the handler throws after the headers (Express destroys the socket): the retry does not run it again', async () => {
    const app = express();
    const store = memoryStore();
    app.use(idempotency({ store, scope: 'global' }));
    let calls = 0;
    app.post('/half', (_req, res, next) => {
      calls++;
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('partial');
      next(new Error('failed after the headers'));
    });
    const url = await listen(app);
    const key = newKey();
    await expect(send(`${url}/half`, { key, body: {} })).rejects.toThrow();
    // Its 200 went: the effect may have happened, and the response can never complete.
    const retry = await send(`${url}/half`, { key, body: {} });
    expect([retry.status, retry.headers.get('idempotent-replayed'), (retry.json() as { type: string }).type]).toEqual([
      500,
      'true',
      problemTypes.responseLost,
    ]);
    expect(calls).toBe(1);
  });

  it('replays correctly behind compression(): stored before encoding, encoded per request', async () => {
    const app = express();
    app.use(compression({ threshold: 0 }), idempotency({ store: memoryStore(), scope: 'global' }));
    let calls = 0;
    const payload = 'order '.repeat(200);
    app.post('/orders', (_req, res) => {
      calls++;
      res.type('text/plain');
      res.write(payload.slice(0, 100)); // headers go out here, before the rest
      res.end(payload.slice(100));
    });
    const url = await listen(app);
    const key = newKey();
    const gz = await raw(`${url}/orders`, ['Idempotency-Key', key, 'Accept-Encoding', 'gzip']);
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gunzipSync(gz.body).toString()).toBe(payload);
    const plain = await raw(`${url}/orders`, ['Idempotency-Key', key, 'Accept-Encoding', 'identity']);
    expect(plain.headers['idempotent-replayed']).toBe('true');
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(plain.body.toString()).toBe(payload);
    const gzAgain = await raw(`${url}/orders`, ['Idempotency-Key', key, 'Accept-Encoding', 'gzip']);
    expect(gunzipSync(gzAgain.body).toString()).toBe(payload);
    expect(calls).toBe(1);
  });
});

describe('Fastify: per-route config and streams', () => {
  it('config: { idempotency: true } turns protection on; false turns it off', async () => {
    const app = Fastify();
    await app.register(fastifyIdempotency, { store: memoryStore(), scope: 'global' });
    let on = 0;
    let off = 0;
    app.post('/on', { config: { idempotency: true } }, async () => ({ n: ++on }));
    app.post('/off', { config: { idempotency: false } }, async () => ({ n: ++off }));
    const headers = { 'idempotency-key': 'k', 'content-type': 'text/plain' };
    for (let i = 0; i < 2; i++) {
      await app.inject({ method: 'POST', url: '/on', headers, payload: 'x' });
      await app.inject({ method: 'POST', url: '/off', headers, payload: 'x' });
    }
    expect([on, off]).toEqual([1, 2]);
    await app.close();
  });

  it('fingerprints the bytes Fastify parsed: the same JSON with other whitespace is a 422', async () => {
    const app = Fastify();
    await app.register(fastifyIdempotency, { store: memoryStore(), scope: 'global' });
    app.post('/orders', async (req) => ({ body: req.body }));
    const headers = { 'idempotency-key': 'k', 'content-type': 'application/json' };
    expect((await app.inject({ method: 'POST', url: '/orders', headers, payload: '{"a":1}' })).statusCode).toBe(200);
    const again = await app.inject({ method: 'POST', url: '/orders', headers, payload: '{"a":1}' });
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect((await app.inject({ method: 'POST', url: '/orders', headers, payload: '{ "a": 1 }' })).statusCode).toBe(422);
    await app.close();
  });

  it('a client leaving a streamed reply stops its source and stores the response-lost problem (it was released: a retry ran the handler again)', async () => {
    const app = Fastify({ forceCloseConnections: true });
    const store = memoryStore();
    await app.register(fastifyIdempotency, { store, scope: 'global' });
    let produced = 0;
    let destroyed = false;
    app.post('/feed', async (_req, reply) => {
      const source = new Readable({
        read() {
          produced++;
          setTimeout(() => this.push(Buffer.alloc(1024, 120)), 5);
        },
        destroy(error, callback) {
          destroyed = true;
          callback(error);
        },
      });
      return reply.type('application/octet-stream').send(source);
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/feed`;
    const abort = new AbortController();
    const res = await fetch(url, { method: 'POST', headers: { 'idempotency-key': 'k' }, signal: abort.signal });
    await res.body?.getReader().read();
    abort.abort();
    await eventually(() => destroyed);
    const at = produced;
    await new Promise((r) => setTimeout(r, 100));
    expect(produced - at).toBeLessThanOrEqual(1);
    await eventually(() => store.snapshot().inProgress === 0);
    const retry = await fetch(url, { method: 'POST', headers: { 'idempotency-key': 'k' } });
    expect({ status: retry.status, replayed: retry.headers.get('idempotent-replayed') }).toEqual({
      status: 500,
      replayed: 'true',
    });
    expect(await retry.json()).toMatchObject({ type: problemTypes.responseLost });
    await app.close();
  });
});
