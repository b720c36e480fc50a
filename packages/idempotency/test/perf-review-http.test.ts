import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough, type TransformCallback } from 'node:stream';
import express from 'express';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency as expressIdempotency } from '../src/express.js';
import { idempotency } from '../src/fastify.js';
import { memoryStore } from '../src/index.js';
import { inProcess } from '../src/memory-store.js';

// Review of aa27a3c7 (a Fastify first request made cheaper) through the plugin: the per-method
// caches of guards/isSafe/upper case, the stream watch's `push` test, shortLength() for the early
// replay, the reply's own headers handed to the store without a copy, and the key fast path.
// Each pins what a user relies on; none of these broke on aa27a3c7.

const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

async function listen(app: FastifyInstance): Promise<number> {
  apps.push(app);
  await app.listen({ port: 0, host: '127.0.0.1' });
  return (app.server.address() as AddressInfo).port;
}

/** A raw request over loopback, its headers written as given (a Content-Length as sent). */
function raw(port: number, method: string, path: string, headers: Record<string, string | string[]>, body: string) {
  return new Promise<{ status: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        text += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.setTimeout(5_000, () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

describe('per-method-string caches (guards, isSafe, upper case)', () => {
  it('two registrations with different methods, methods alternating (lower case through inject): each guards its own', async () => {
    const app = Fastify();
    const ran: string[] = [];
    const routes = (ctx: FastifyInstance, name: string) => {
      for (const method of ['POST', 'DELETE', 'GET', 'PATCH'] as const) {
        ctx.route({
          method,
          url: `/${name}`,
          handler: async () => {
            ran.push(`${name} ${method}`);
            return { name, method, n: ran.length };
          },
        });
      }
    };
    await app.register(async (a) => {
      await a.register(idempotency, { store: memoryStore(), scope: 'global', required: true });
      routes(a, 'a');
    });
    await app.register(async (b) => {
      await b.register(idempotency, {
        store: memoryStore(),
        scope: 'global',
        required: true,
        methods: ['delete', 'GET'],
      });
      routes(b, 'b');
    });
    await app.ready();
    apps.push(app);
    const guarded: Record<string, string[]> = { a: ['POST', 'PATCH'], b: ['DELETE', 'GET'] };
    const sequence = [
      ['a', 'post'],
      ['b', 'post'],
      ['a', 'DELETE'],
      ['b', 'delete'],
      ['b', 'DELETE'],
      ['a', 'get'],
      ['b', 'get'],
      ['a', 'PATCH'],
      ['b', 'patch'],
      ['a', 'POST'],
      ['b', 'GET'],
      ['a', 'delete'],
    ] as const;
    for (const [name, method] of sequence) {
      const res = await app.inject({
        method,
        url: `/${name}`,
        payload: method.toUpperCase() === 'GET' ? undefined : '{}',
        headers: method.toUpperCase() === 'GET' ? {} : { 'content-type': 'application/json' },
      });
      const isGuarded = (guarded[name] as string[]).includes(method.toUpperCase());
      // required: a guarded request without a key is refused (400); any other runs.
      expect({ name, method, status: res.statusCode }).toEqual({ name, method, status: isGuarded ? 400 : 200 });
    }
    // And with a key, a guarded one replays (its handler ran once), an unguarded one runs again.
    for (const [name, method] of [
      ['a', 'post'],
      ['b', 'delete'],
      ['a', 'delete'],
      ['b', 'post'],
    ] as const) {
      const send = () =>
        app.inject({
          method,
          url: `/${name}`,
          payload: '{}',
          headers: { 'content-type': 'application/json', 'idempotency-key': `${name}-${method}` },
        });
      const before = ran.length;
      const first = await send();
      const second = await send();
      const isGuarded = (guarded[name] as string[]).includes(method.toUpperCase());
      expect({ name, method, runs: ran.length - before, same: first.body === second.body }).toEqual({
        name,
        method,
        runs: isGuarded ? 1 : 2,
        same: isGuarded,
      });
      if (isGuarded) expect(second.headers['idempotent-replayed']).toBe('true');
    }
  });
});

describe('body watch: a preParsing stream with a push of its own, inject', () => {
  it("a preParsing hook's stream whose class has its own push: the fingerprint covers the body (same body replays, another gets 422)", async () => {
    class Counting extends PassThrough {
      pushes = 0;
      override push(chunk: unknown, encoding?: BufferEncoding): boolean {
        this.pushes++;
        return super.push(chunk, encoding);
      }
      override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
        callback(null, chunk);
      }
    }
    const app = Fastify();
    let runs = 0;
    await app.register(idempotency, { store: memoryStore(), scope: 'global' });
    app.addHook('preParsing', async (_request, _reply, payload) => payload.pipe(new Counting()));
    app.post('/orders', async (request) => ({ run: ++runs, body: request.body }));
    const port = await listen(app);
    const headers = { 'content-type': 'application/json', 'idempotency-key': 'own-push' };
    const first = await raw(port, 'POST', '/orders', headers, '{"n":1}');
    const again = await raw(port, 'POST', '/orders', headers, '{"n":1}');
    const other = await raw(port, 'POST', '/orders', headers, '{"n":2}');
    expect(first.status).toBe(200);
    expect(again).toMatchObject({ status: 200, body: first.body });
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(other.status).toBe(422);
    expect(runs).toBe(1);
  });

  it('light-my-request inject: same body replays, another body gets 422, the handler ran once', async () => {
    const app = Fastify();
    let runs = 0;
    await app.register(idempotency, { store: memoryStore(), scope: 'global' });
    app.post('/orders', async (request) => ({ run: ++runs, body: request.body }));
    await app.ready();
    apps.push(app);
    const send = (payload: string) =>
      app.inject({
        method: 'POST',
        url: '/orders',
        payload,
        headers: { 'content-type': 'application/json', 'idempotency-key': 'inject-1' },
      });
    const first = await send('{"n":1}');
    const again = await send('{"n":1}');
    const other = await send('{"n":2}');
    expect(again.body).toBe(first.body);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(other.statusCode).toBe(422);
    expect(runs).toBe(1);
  });
});

describe('shortLength: odd Content-Length values over a real socket (the early replay)', () => {
  for (const { name, highWaterMark, length, body } of [
    { name: 'leading zeros', highWaterMark: undefined, length: '0007', body: '{"n":1}' },
    { name: 'seven digits, leading zeros', highWaterMark: undefined, length: '0000007', body: '{"n":1}' },
    {
      name: 'six digits, a big highWaterMark',
      highWaterMark: 4_194_304,
      length: undefined,
      body: `{"s":"${'x'.repeat(200_000)}"}`,
    },
    {
      name: 'seven digits, a big highWaterMark',
      highWaterMark: 4_194_304,
      length: undefined,
      body: `{"s":"${'x'.repeat(1_100_000)}"}`,
    },
  ]) {
    it(`${name}: the retry replays the first answer, a changed body gets 422, the handler ran once`, async () => {
      const app = Fastify({
        bodyLimit: 4_194_304,
        ...(highWaterMark === undefined ? {} : { http: { highWaterMark } }),
      } as object);
      let runs = 0;
      await app.register(idempotency, { store: memoryStore(), scope: 'global', maxRequestBytes: 4_194_304 });
      app.post('/orders', async (request) => ({ run: ++runs, size: JSON.stringify(request.body).length }));
      const port = await listen(app);
      const headers = {
        'content-type': 'application/json',
        'idempotency-key': `len-${name.replace(/[^a-z]/g, '-')}`,
        'content-length': length ?? String(Buffer.byteLength(body)),
      };
      const first = await raw(port, 'POST', '/orders', headers, body);
      expect(first.status).toBe(200);
      const again = await raw(port, 'POST', '/orders', headers, body);
      expect(again).toMatchObject({ status: 200, body: first.body });
      expect(again.headers['idempotent-replayed']).toBe('true');
      const changed = body.replace('1', '2').replace('xx', 'yy');
      const other = await raw(port, 'POST', '/orders', headers, changed);
      expect(other.status).toBe(422);
      expect(runs).toBe(1);
    });
  }
});

describe("the reply's own headers handed to the store without a copy", () => {
  it("an app's onSend hook after the plugin's, changing headers: the stored answer is as it was at the plugin's hook", async () => {
    const app = Fastify();
    let runs = 0;
    const store = memoryStore();
    await app.register(idempotency, { store, scope: 'global', replayHeaders: ['x-early', 'x-late'] });
    app.addHook('onSend', async (_request, reply, payload) => {
      reply.header('x-late', `late-${runs}`);
      reply.header('x-early', 'changed-late');
      return payload;
    });
    app.post('/orders', async (_request, reply) => {
      reply.header('x-early', `early-${++runs}`);
      return { run: runs };
    });
    const port = await listen(app);
    const headers = { 'content-type': 'application/json', 'idempotency-key': 'late-hook' };
    const first = await raw(port, 'POST', '/orders', headers, '{}');
    expect(first.headers['x-early']).toBe('changed-late');
    const again = await raw(port, 'POST', '/orders', headers, '{}');
    expect(again.headers['idempotent-replayed']).toBe('true');
    // Stored as the plugin's onSend saw it: the later hook's change and header not kept, then
    // set again by that hook on the replay (it runs for the replay too).
    expect(again.body).toBe(first.body);
    expect(runs).toBe(1);
    const record = inProcess(store)?.completed?.('http:*:late-hook');
    const kept = record?.kind === 'response' ? record.headers : undefined;
    expect(kept?.['x-early']).toBe('early-1');
    expect(kept?.['x-late']).toBeUndefined();
  });

  it('a store that refuses the response (over maxBytes): the key is released, the reply unchanged, the retry runs', async () => {
    const app = Fastify();
    let runs = 0;
    await app.register(idempotency, { store: memoryStore({ maxBytes: 400 }), scope: 'global' });
    app.post('/orders', async (_request, reply) => {
      reply.header('x-run', String(++runs));
      return { run: runs, pad: 'p'.repeat(500) };
    });
    const port = await listen(app);
    const headers = { 'content-type': 'application/json', 'idempotency-key': 'refused' };
    const first = await raw(port, 'POST', '/orders', headers, '{}');
    expect(first).toMatchObject({ status: 200 });
    expect(first.headers['x-run']).toBe('1');
    expect(JSON.parse(first.body)).toMatchObject({ run: 1 });
    const again = await raw(port, 'POST', '/orders', headers, '{}');
    expect(again.headers['idempotent-replayed']).toBeUndefined();
    expect(again.headers['x-run']).toBe('2');
    expect(runs).toBe(2);
  });

  it('the stored headers do not change with a later reply of the same route (many keys in turn)', async () => {
    const app = Fastify();
    let runs = 0;
    await app.register(idempotency, { store: memoryStore(), scope: 'global', replayHeaders: ['x-run'] });
    app.post('/orders', async (_request, reply) => {
      reply.header('x-run', String(++runs));
      return { run: runs };
    });
    const port = await listen(app);
    for (let i = 0; i < 5; i++) {
      await raw(port, 'POST', '/orders', { 'content-type': 'application/json', 'idempotency-key': `m${i}` }, '{}');
    }
    for (let i = 0; i < 5; i++) {
      const again = await raw(
        port,
        'POST',
        '/orders',
        { 'content-type': 'application/json', 'idempotency-key': `m${i}` },
        '{}',
      );
      expect({ i, run: again.headers['x-run'], replayed: again.headers['idempotent-replayed'] }).toEqual({
        i,
        run: String(i + 1),
        replayed: 'true',
      });
    }
    expect(runs).toBe(5);
  });
});

describe('key(): the bare-key fast path', () => {
  for (const { name, key, status } of [
    { name: 'the header sent twice', key: ['a', 'b'], status: 400 },
    { name: 'the header sent twice, the same key', key: ['a', 'a'], status: 400 },
    { name: 'a quoted key with a comma', key: '"a,b"', status: 200 },
    { name: 'a bare key with a comma', key: 'a,b', status: 400 },
    { name: 'a bare key with surrounding spaces', key: '  spaced  ', status: 200 },
    { name: 'a quoted key with spaces', key: '" a b "', status: 200 },
  ]) {
    it(`${name}: ${status}`, async () => {
      const app = Fastify();
      let runs = 0;
      await app.register(idempotency, { store: memoryStore(), scope: 'global' });
      app.post('/orders', async () => ({ run: ++runs }));
      const port = await listen(app);
      const headers = { 'content-type': 'application/json', 'idempotency-key': key };
      const first = await raw(port, 'POST', '/orders', headers, '{}');
      expect(first.status).toBe(status);
      if (status === 200) {
        const again = await raw(port, 'POST', '/orders', headers, '{}');
        expect(again.headers['idempotent-replayed']).toBe('true');
        expect(runs).toBe(1);
      } else {
        expect(runs).toBe(0);
      }
    });
  }
});

describe('Express: two middlewares on one request (the second finds the root push patched)', () => {
  it('each fingerprints the whole body: the same body replays, another gets 422, the handler ran once', async () => {
    const app = express();
    let runs = 0;
    app.use(expressIdempotency({ store: memoryStore(), scope: 'global' }));
    app.use(expressIdempotency({ store: memoryStore(), scope: 'global', header: 'x-second-key' }));
    app.use(express.json());
    app.post('/orders', (req, res) => {
      runs++;
      res.status(201).json({ run: runs, body: req.body });
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      const headers = { 'content-type': 'application/json', 'idempotency-key': 'e1', 'x-second-key': 'e2' };
      const body = JSON.stringify({ s: 'x'.repeat(40_000) });
      const first = await raw(port, 'POST', '/orders', headers, body);
      expect(first.status).toBe(201);
      expect(JSON.parse(first.body).body.s.length).toBe(40_000);
      const again = await raw(port, 'POST', '/orders', headers, body);
      expect(again).toMatchObject({ status: 201, body: first.body });
      const other = await raw(port, 'POST', '/orders', headers, body.replace('xx', 'yy'));
      expect(other.status).toBe(422);
      // The second middleware alone (the first's key changed) sees the changed body too.
      const second = await raw(
        port,
        'POST',
        '/orders',
        { ...headers, 'idempotency-key': 'e1b' },
        body.replace('xx', 'yy'),
      );
      expect(second.status).toBe(422);
      expect(runs).toBe(1);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
