import { Buffer } from 'node:buffer';
import { createServer, type IncomingHttpHeaders, request } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { createBus, ManualClock } from '@holdfast/core';
import compression from 'compression';
import express from 'express';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { idempotency as fastifyIdempotency } from '../src/fastify.js';
import { type Decision, HttpIdempotency, type HttpResponse } from '../src/http/index.js';
import { type IdempotencyStore, memoryStore, redisStore } from '../src/index.js';
import { closeAll, closers, listenNode } from './http-support/body-apps.js';
import { connect, useRedisServer } from './redis.js';

// Review of e3001215 (a short ASCII replay from memoryStore is a TextReplay whose `body` is made
// when read; Fastify sends its `text`, Express's sendRaw now `res.end(text ?? body)`) and
// 2a8d17e5 (Buffer from node:buffer). Over real sockets: a replay sends exactly the first
// response's bytes and headers, whatever the body, the store, or a layer that changes the replay.

afterEach(closeAll);

const redis = useRedisServer();

// memoryStore keeps a body of at most 96 bytes as a string of its bytes (memory-store.ts
// STRING_BODY_BYTES); the replay sends such a string as text when it is all ASCII.
const ascii = (n: number, from = 0x20) => Buffer.from(Array.from({ length: n }, (_, i) => from + (i % 0x5f)));
const bodies: Record<string, Buffer> = {
  json: Buffer.from('{"id":42,"ok":true}'),
  empty: Buffer.alloc(0),
  controls: Buffer.from([0x00, 0x01, 0x09, 0x0a, 0x0d, 0x1b, 0x7f, 0x41]),
  a95: ascii(95),
  a96: ascii(96),
  a97: ascii(97),
  high1: Buffer.from([0x80]),
  high: Buffer.from([0x41, 0x80, 0xa0, 0xe9, 0xff]),
  highAll: Buffer.from(Array.from({ length: 128 }, (_, i) => 0x80 + i)),
  invalidUtf8: Buffer.from([0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0xf0, 0x28, 0x8c, 0xbc, 0xff, 0xfe]),
  utf8: Buffer.from('é€😀', 'utf8'),
  a95high: Buffer.concat([ascii(95), Buffer.from([0xe9])]), // 96 bytes, the last not ASCII
};
const LINKS = ['</one>; rel="one"', '</two>; rel="two"'];
// The two types Fastify sends a string as it is (the text path), and one it does not.
const types = ['application/json; charset=utf-8', 'text/plain; charset=utf-8', 'application/octet-stream'];

interface Got {
  status: number;
  headers: IncomingHttpHeaders;
  raw: string[];
  body: Buffer;
}

/** One request on a connection of its own; the body's bytes as they came. */
function call(port: number, method: string, path: string, headers: Record<string, string> = {}): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers, agent: false, timeout: 3_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode as number,
          headers: res.headers,
          raw: res.rawHeaders,
          body: Buffer.concat(chunks),
        }),
      );
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

/** The values of one header as they came on the wire, in order (a list is not joined). */
function rawValues(got: Got, name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < got.raw.length; i += 2)
    if (got.raw[i]?.toLowerCase() === name) out.push(got.raw[i + 1] as string);
  return out;
}

/** Sends `bodies[name]` with type `types[t]`, as a Buffer or (`str`) as a string of its bytes. */
function bodyOf(name: string, how: string): { bytes: Buffer; string: string; encoding: BufferEncoding } {
  const bytes = bodies[name] as Buffer;
  // ASCII as a plain (UTF-8) string, which the collector keeps as text; any other as latin1.
  const isAscii = bytes.every((b) => b < 0x80);
  return { bytes, string: bytes.toString('latin1'), encoding: how === 'str' && isAscii ? 'utf8' : 'latin1' };
}

type Framework = 'express' | 'fastify';

interface AppOptions {
  methods?: string[];
  replayHeaders?: string[];
  /** Express middleware before ours. */
  before?: express.RequestHandler[];
  /** Fastify: called before the plugin is registered. */
  setup?: (app: FastifyInstance) => void;
}

/**
 * An app with the middleware on `store` (global scope): POST /b/:name/:t/:how sends a body of
 * the table; GET /g/:name the same, to a GET (and its HEAD); POST /s/:status a bodiless status;
 * POST /h headers of several values. `runs` counts the handler's calls.
 */
async function start(framework: Framework, store: IdempotencyStore, options: AppOptions = {}) {
  const runs = { n: 0 };
  const mw = {
    store,
    scope: 'global' as const,
    bus: createBus(),
    methods: options.methods ?? ['POST'],
    replayHeaders: options.replayHeaders ?? [],
  };
  if (framework === 'express') {
    const app = express();
    for (const before of options.before ?? []) app.use(before);
    app.use(idempotency(mw));
    app.post('/b/:name/:t/:how', (req, res) => {
      runs.n++;
      const { bytes, string, encoding } = bodyOf(req.params.name as string, req.params.how as string);
      res.status(201).setHeader('content-type', types[Number(req.params.t)] as string);
      res.setHeader('link', LINKS);
      if (req.params.how === 'buf') res.end(bytes);
      else res.end(string, encoding);
    });
    app.get('/g/:name', (req, res) => {
      runs.n++;
      res
        .status(200)
        .type('application/json')
        .send(bodies[req.params.name as string]);
    });
    app.post('/s/:status', (req, res) => {
      runs.n++;
      res.status(Number(req.params.status)).end();
    });
    app.post('/h', (_req, res) => {
      runs.n++;
      res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; Path=/']);
      res.setHeader('link', ['</one>; rel="one"', '</two>; rel="two"']);
      res.setHeader('x-multi', ['first', 'second']);
      res.status(201).json({ ok: true });
    });
    return { port: await listenNode(createServer(app)), runs };
  }
  const app = Fastify();
  options.setup?.(app);
  await app.register(fastifyIdempotency, mw);
  app.post<{ Params: { name: string; t: string; how: string } }>('/b/:name/:t/:how', async (req, reply) => {
    runs.n++;
    const { bytes, string } = bodyOf(req.params.name, req.params.how);
    reply
      .code(201)
      .type(types[Number(req.params.t)] as string)
      .header('link', LINKS);
    // A string past ASCII would go out as UTF-8: only ASCII ones are sent as strings.
    return reply.send(req.params.how === 'str' && bytes.every((b) => b < 0x80) ? string : bytes);
  });
  app.get<{ Params: { name: string } }>('/g/:name', async (req, reply) => {
    runs.n++;
    return reply.code(200).type('application/json; charset=utf-8').send(bodies[req.params.name]);
  });
  app.post<{ Params: { status: string } }>('/s/:status', async (req, reply) => {
    runs.n++;
    return reply.code(Number(req.params.status)).send();
  });
  app.post('/h', async (_req, reply) => {
    runs.n++;
    reply.header('set-cookie', ['a=1; Path=/', 'b=2; Path=/']);
    reply.header('link', ['</one>; rel="one"', '</two>; rel="two"']);
    reply.header('x-multi', ['first', 'second']);
    return reply.code(201).send({ ok: true });
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  closers.push(() => app.close());
  return { port: (app.server.address() as { port: number }).port, runs };
}

/** The first response and a replay agree on status, bytes, length and type; only the replay is marked. */
function expectSame(label: string, first: Got, replay: Got, bytes: Buffer): void {
  expect({ label, status: first.status, body: first.body.toString('hex') }).toEqual({
    label,
    status: first.status,
    body: bytes.toString('hex'),
  });
  expect({
    label,
    status: replay.status,
    body: replay.body.toString('hex'),
    length: replay.headers['content-length'],
    type: replay.headers['content-type'],
    replayed: replay.headers['idempotent-replayed'],
    firstReplayed: first.headers['idempotent-replayed'],
  }).toEqual({
    label,
    status: first.status,
    body: bytes.toString('hex'),
    length: String(bytes.length),
    type: first.headers['content-type'],
    replayed: 'true',
    firstReplayed: undefined,
  });
  // One Content-Length, never two (the stored headers never carry one for a body).
  expect([label, rawValues(replay, 'content-length').length]).toEqual([label, 1]);
}

const stores: Record<string, () => IdempotencyStore> = {
  memoryStore: () => memoryStore(),
  redisStore: () => redisStore({ client: connect(redis.server), prefix: `rvtext:${Math.random()}:` }),
};

describe.each(['express', 'fastify'] as const)('%s: replays send the stored bytes and headers', (framework) => {
  it.each(Object.keys(stores))('every body, type and way of writing it, through %s', async (storeName) => {
    const app = await start(framework, (stores[storeName] as () => IdempotencyStore)());
    let expected = 0;
    for (const name of Object.keys(bodies)) {
      for (let t = 0; t < types.length; t++) {
        for (const how of ['buf', 'str']) {
          const path = `/b/${name}/${t}/${how}`;
          const key = { 'idempotency-key': `${name}-${t}-${how}` };
          const first = await call(app.port, 'POST', path, key);
          expected++;
          // Twice: a replay of the store's record leaves it as it was.
          for (let i = 0; i < 2; i++)
            expectSame(`${path} #${i}`, first, await call(app.port, 'POST', path, key), bodies[name] as Buffer);
        }
      }
    }
    expect(app.runs.n).toBe(expected);
  });

  it.each(Object.keys(stores))('204 and 304: no body and no Content-Length, through %s', async (storeName) => {
    const app = await start(framework, (stores[storeName] as () => IdempotencyStore)());
    for (const status of [204, 304]) {
      const key = { 'idempotency-key': `s${status}` };
      const first = await call(app.port, 'POST', `/s/${status}`, key);
      const replay = await call(app.port, 'POST', `/s/${status}`, key);
      expect([status, first.status, replay.status, replay.body.length, replay.headers['idempotent-replayed']]).toEqual([
        status,
        status,
        status,
        0,
        'true',
      ]);
      expect([status, replay.headers['content-length'], replay.headers['transfer-encoding']]).toEqual([
        status,
        first.headers['content-length'],
        undefined,
      ]);
    }
    expect(app.runs.n).toBe(2);
  });

  it.each(Object.keys(stores))(
    'HEAD and GET of one resource, short ASCII, empty and long: lengths agree, through %s',
    async (storeName) => {
      const app = await start(framework, (stores[storeName] as () => IdempotencyStore)(), { methods: ['GET', 'HEAD'] });
      for (const name of ['json', 'empty', 'a96', 'a97', 'highAll']) {
        const bytes = bodies[name] as Buffer;
        const get = { 'idempotency-key': `get-${name}` };
        const head = { 'idempotency-key': `head-${name}` };
        const first = await call(app.port, 'GET', `/g/${name}`, get);
        expectSame(`GET ${name}`, first, await call(app.port, 'GET', `/g/${name}`, get), bytes);
        // HEAD after GET: its own key (a GET's key with HEAD is another request: refused, not replayed).
        const crossed = await call(app.port, 'HEAD', `/g/${name}`, get);
        expect([name, crossed.status, crossed.body.length]).toEqual([name, 422, 0]);
        const headFirst = await call(app.port, 'HEAD', `/g/${name}`, head);
        for (let i = 0; i < 2; i++) {
          const replay = await call(app.port, 'HEAD', `/g/${name}`, head);
          expect({
            name,
            status: replay.status,
            body: replay.body.length,
            length: replay.headers['content-length'],
            type: replay.headers['content-type'],
            replayed: replay.headers['idempotent-replayed'],
          }).toEqual({
            name,
            status: headFirst.status,
            body: 0,
            // What the GET sends: never 0 for a body that is not empty.
            length: first.headers['content-length'],
            type: first.headers['content-type'],
            replayed: 'true',
          });
        }
        // After the HEADs, the GET's replay is still its bytes.
        expectSame(`GET ${name} again`, first, await call(app.port, 'GET', `/g/${name}`, get), bytes);
      }
    },
  );

  it.each(Object.keys(stores))(
    'set-cookie is never replayed; headers of several values are, each value, through %s',
    async (storeName) => {
      const app = await start(framework, (stores[storeName] as () => IdempotencyStore)(), {
        replayHeaders: ['x-multi', 'set-cookie'],
      });
      const key = { 'idempotency-key': 'h' };
      const first = await call(app.port, 'POST', '/h', key);
      expect(rawValues(first, 'set-cookie')).toEqual(['a=1; Path=/', 'b=2; Path=/']);
      for (let i = 0; i < 3; i++) {
        const replay = await call(app.port, 'POST', '/h', key);
        expectSame(`/h #${i}`, first, replay, Buffer.from('{"ok":true}'));
        expect(rawValues(replay, 'set-cookie')).toEqual([]);
        expect(rawValues(replay, 'link').join(', ')).toBe('</one>; rel="one", </two>; rel="two"');
        expect(rawValues(replay, 'x-multi').join(', ')).toBe('first, second');
      }
      expect(app.runs.n).toBe(1);
    },
  );
});

describe('a layer that changes a replay changes that response only', () => {
  it('Fastify: an onSend hook that pushes to a header list, sets headers, rewrites or overwrites the payload', async () => {
    const setup = (app: FastifyInstance) => {
      app.addHook('onSend', async (request, reply, payload) => {
        if (request.headers['x-mutate'] !== '1' || reply.getHeader('idempotent-replayed') !== 'true') return payload;
        const link = reply.getHeader('link');
        if (Array.isArray(link)) link.push('</hook>; rel="hook"');
        reply.header('content-type', 'text/x-hooked');
        reply.header('x-hooked', '1');
        if (Buffer.isBuffer(payload)) {
          payload.fill(0x21); // in place: the store's copy must not see it
          return payload;
        }
        return typeof payload === 'string' ? payload.toUpperCase() : payload;
      });
    };
    const app = await start('fastify', memoryStore(), { setup, replayHeaders: ['link'] });
    for (const t of [0, 2]) {
      for (const name of ['json', 'a96', 'a97', 'high']) {
        const path = `/b/${name}/${t}/str`;
        const key = { 'idempotency-key': `m-${name}-${t}` };
        const first = await call(app.port, 'POST', path, key);
        const bytes = bodies[name] as Buffer;
        const seen: string[] = [];
        for (let i = 0; i < 2; i++) {
          const changed = await call(app.port, 'POST', path, { ...key, 'x-mutate': '1' });
          expect([path, changed.headers['x-hooked'], changed.headers['content-length']]).toEqual([
            path,
            '1',
            String(bytes.length),
          ]);
          // The hook's own change, once: the payload it was given (the text, upper-cased, or the
          // bytes, overwritten), and one more link, not one more a replay.
          const upper = Buffer.from(bytes.toString('latin1').toUpperCase(), 'latin1');
          expect([path, [upper.toString('hex'), Buffer.alloc(bytes.length, 0x21).toString('hex')]]).toEqual([
            path,
            expect.arrayContaining([changed.body.toString('hex')]),
          ]);
          seen[i] = changed.body.toString('hex');
          expect([path, rawValues(changed, 'link')]).toEqual([path, [...LINKS, '</hook>; rel="hook"']]);
          const clean = await call(app.port, 'POST', path, key);
          expectSame(`${path} after a hook #${i}`, first, clean, bytes);
          expect([path, rawValues(clean, 'link')]).toEqual([path, LINKS]);
        }
        expect([path, seen[1]]).toEqual([path, seen[0]]);
      }
    }
  });

  it('Express: a middleware that changes the headers given to writeHead and the chunk given to end', async () => {
    const mutate: express.RequestHandler = (req, res, next) => {
      if (req.headers['x-mutate'] !== '1') return next();
      const writeHead = res.writeHead;
      const end = res.end;
      res.writeHead = function (this: typeof res, status: number, ...rest: unknown[]) {
        const headers = rest.find((a) => typeof a === 'object' && a !== null && !Array.isArray(a)) as
          | Record<string, unknown>
          | undefined;
        if (headers !== undefined) {
          const link = headers.link;
          if (Array.isArray(link)) link.push('</mw>; rel="mw"');
          headers['content-type'] = 'text/x-changed';
          headers['x-changed'] = '1';
        }
        return (writeHead as (...a: unknown[]) => typeof res).call(this, status, ...rest);
      } as typeof res.writeHead;
      res.end = function (this: typeof res, chunk?: unknown, ...rest: unknown[]) {
        if (Buffer.isBuffer(chunk)) chunk.fill(0x21);
        else if (typeof chunk === 'string') chunk = '!'.repeat(chunk.length);
        return (end as (...a: unknown[]) => typeof res).call(this, chunk, ...rest);
      } as typeof res.end;
      next();
    };
    const app = await start('express', memoryStore(), { before: [mutate], replayHeaders: ['link'] });
    for (const name of ['json', 'empty', 'a96', 'a97', 'high']) {
      const path = `/b/${name}/0/str`;
      const key = { 'idempotency-key': `m-${name}` };
      const first = await call(app.port, 'POST', path, key);
      const bytes = bodies[name] as Buffer;
      for (let i = 0; i < 2; i++) {
        const changed = await call(app.port, 'POST', path, { ...key, 'x-mutate': '1' });
        expect([path, changed.headers['x-changed'], changed.body.toString('hex')]).toEqual([
          path,
          '1',
          Buffer.alloc(bytes.length, 0x21).toString('hex'),
        ]);
        expect([path, changed.headers['content-type'], rawValues(changed, 'link')]).toEqual([
          path,
          'text/x-changed',
          [...LINKS, '</mw>; rel="mw"'],
        ]);
        const clean = await call(app.port, 'POST', path, key);
        expectSame(`${path} after the middleware #${i}`, first, clean, bytes);
        expect([path, rawValues(clean, 'link')]).toEqual([path, LINKS]);
      }
    }
  });

  it('Express: compression before the middleware gets the replay as a string or bytes, and sends them', async () => {
    const app = await start('express', memoryStore(), { before: [compression({ threshold: 0 })] });
    for (const name of ['json', 'empty', 'a96', 'a97', 'high', 'invalidUtf8']) {
      const path = `/b/${name}/0/str`;
      const key = { 'idempotency-key': `c-${name}` };
      const bytes = bodies[name] as Buffer;
      const first = await call(app.port, 'POST', path, key);
      expect([name, first.body.toString('hex')]).toEqual([name, bytes.toString('hex')]);
      const zipped = await call(app.port, 'POST', path, { ...key, 'accept-encoding': 'gzip' });
      expect([name, zipped.status, zipped.headers['idempotent-replayed']]).toEqual([name, 201, 'true']);
      const unzipped = zipped.headers['content-encoding'] === 'gzip' ? gunzipSync(zipped.body) : zipped.body;
      expect([name, unzipped.toString('hex')]).toEqual([name, bytes.toString('hex')]);
      // Asked without gzip, the replay is still its bytes (compression changed nothing kept).
      const plain = await call(app.port, 'POST', path, { ...key, 'accept-encoding': 'identity' });
      expect([name, plain.body.toString('hex'), plain.headers['idempotent-replayed']]).toEqual([
        name,
        bytes.toString('hex'),
        'true',
      ]);
    }
  });
});

describe('a replay that another layer records as a response', () => {
  it("Express: an outer middleware on a fresh store records the inner one's replay (text or bytes), then replays the same", async () => {
    // The outer middleware's store is swapped between requests: the second request finds no
    // record outside (it claims and watches the response) and one inside (sendRaw replays it).
    const outerBus = createBus();
    let outerReplays = 0;
    outerBus.on('idempotency.replay', () => outerReplays++);
    let outer = idempotency({ store: memoryStore(), scope: 'global', bus: createBus() });
    const app = await start('express', memoryStore(), { before: [(req, res, next) => outer(req, res, next)] });
    for (const name of ['json', 'empty', 'controls', 'a96', 'a97', 'high', 'invalidUtf8']) {
      const path = `/b/${name}/0/str`;
      const key = { 'idempotency-key': `o-${name}` };
      const bytes = bodies[name] as Buffer;
      const first = await call(app.port, 'POST', path, key);
      outer = idempotency({ store: memoryStore(), scope: 'global', bus: outerBus });
      const inner = await call(app.port, 'POST', path, key); // the inner replay, recorded outside
      const outerReplay = await call(app.port, 'POST', path, key); // the outer record's replay
      expectSame(`${path} inner`, first, inner, bytes);
      expectSame(`${path} outer`, first, outerReplay, bytes);
      expect([path, rawValues(outerReplay, 'link'), outerReplays]).toEqual([path, LINKS, 1]);
      outerReplays = 0;
    }
    expect(app.runs.n).toBe(7);
  });
});

describe('a replay object, as a consumer of HttpResponse handles it', () => {
  function middleware(store: IdempotencyStore): HttpIdempotency<unknown> {
    return new HttpIdempotency<unknown>('test', { store, scope: 'global', clock: new ManualClock(1_000_000) });
  }
  const view = (key: string) => ({
    method: 'POST',
    url: '/orders',
    headers: { 'content-type': 'application/json', 'idempotency-key': key },
    body: Buffer.from('{"n":1}'),
  });
  async function replayOf(body: Buffer): Promise<HttpResponse> {
    const c = middleware(memoryStore());
    const d = await c.decideNow({}, view('k'));
    if (d.action !== 'run') throw new Error(`expected a run, got ${d.action}`);
    d.run.body.add(body);
    await d.run.finish(201, { 'content-type': 'application/json; charset=utf-8' });
    const again = c.decideNow({}, view('k')) as Decision;
    if (again.action !== 'respond') throw new Error(`expected a replay, got ${again.action}`);
    return again.response;
  }

  // Short ASCII (kept as a string: the text replay), empty, short past ASCII, long. A text
  // replay's body is a getter of its class (an own one cost ~2,100 instructions a replay, see
  // HttpResponse): a copy that reads it carries the bytes; the bytes and the text agree.
  it.each([
    ['json', bodies.json, true],
    ['empty', bodies.empty, true],
    ['a96', bodies.a96, true],
    ['high', bodies.high, false],
    ['a97', bodies.a97, false],
  ] as const)(
    '%s: body read twice is the same bytes, its text those bytes, and a copy that reads it carries them',
    async (_name, bytes, text) => {
      const replay = await replayOf(bytes as Buffer);
      expect(replay.text !== undefined).toBe(text);
      const copy = structuredClone({ ...replay, body: replay.body });
      expect(Buffer.from(copy.body).equals(bytes as Buffer)).toBe(true);
      expect((JSON.parse(JSON.stringify({ ...replay, body: replay.body })) as { body?: unknown }).body).toEqual(
        (bytes as Buffer).toJSON(),
      );
      expect(replay.body.equals(bytes as Buffer)).toBe(true);
      expect(replay.body).toBe(replay.body);
      if (replay.text !== undefined) expect(Buffer.from(replay.text, 'utf8').equals(bytes as Buffer)).toBe(true);
      expect(replay.headers['content-length']).toBe(String((bytes as Buffer).length));
    },
  );
});
