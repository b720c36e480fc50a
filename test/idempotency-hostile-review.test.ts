/**
 * An outside (hostile) review of @holdfast/idempotency (issue 13): each `it` is one promise of the README,
 * docs/idempotency.md or issue 13, attacked against real servers (Express and Fastify on port 0,
 * a redis-server of the test's own). A failing test is a finding; see the review report.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gzipSync } from 'node:zlib';
import { createBus, HoldfastConfigError } from '@holdfast/core';
import { type IdempotencyStore, memoryStore, redisStore } from '@holdfast/idempotency';
import { captureRawBody, idempotency as expressIdempotency } from '@holdfast/idempotency/express';
import { idempotency as fastifyIdempotency } from '@holdfast/idempotency/fastify';
import express from 'express';
import Fastify from 'fastify';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lossyProxy } from './support/lost-reply.js';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from './support/redis.js';

// compression is a devDependency of the package under review, not of the root.
type Compression = (options?: { threshold?: number }) => express.RequestHandler;
const compression = createRequire(new URL('../packages/idempotency/package.json', import.meta.url))(
  'compression',
) as Compression;

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

interface Send {
  method?: string;
  path?: string;
  /** Raw header pairs, in order (a name may repeat). */
  headers?: [string, string][];
  body?: Buffer | string;
  /** Send the body in these chunks (Transfer-Encoding: chunked), with a pause between them. */
  chunks?: (Buffer | string)[];
}

/** One request over a fresh connection, headers exactly as given. */
function send(port: number, options: Send): Promise<Reply> {
  return new Promise((resolve, reject) => {
    // Headers as an array are sent as given: nothing is added, so Host and framing are ours to set.
    const flat: string[] = ['host', `127.0.0.1:${port}`];
    for (const [name, value] of options.headers ?? []) flat.push(name, value);
    if (options.chunks !== undefined) flat.push('transfer-encoding', 'chunked');
    else flat.push('content-length', String(Buffer.byteLength(options.body ?? '')));
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        method: options.method ?? 'POST',
        path: options.path ?? '/orders',
        headers: flat,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (options.chunks !== undefined) {
      void (async () => {
        for (const chunk of options.chunks ?? []) {
          req.write(chunk);
          await new Promise((r) => setTimeout(r, 5));
        }
        req.end();
      })();
    } else {
      req.end(options.body);
    }
  });
}

const json = (reply: Reply): unknown => JSON.parse(reply.body.toString('utf8'));

interface ExpressApp {
  port: number;
  calls: () => number;
  close: () => Promise<void>;
}

/** Starts an Express app: `setup` mounts what it wants; the handler counter is shared. */
async function expressApp(setup: (app: express.Express, counted: () => number) => void): Promise<ExpressApp> {
  const app = express();
  let calls = 0;
  setup(app, () => ++calls);
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    port,
    calls: () => calls,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const account = (req: express.Request) => req.get('x-account');

/** A 200,000-byte answer the store cannot keep: sent in full, not a 5xx, and the retry runs again. */
async function bigResponseSentAndReleased(
  store: IdempotencyStore,
  options: Partial<Parameters<typeof expressIdempotency>[0]> = {},
): Promise<void> {
  const app = await expressApp((a, counted) => {
    a.use(expressIdempotency({ store, scope: 'global', ...options }));
    a.post('/big', (_req, res) => {
      counted();
      res.status(201).type('application/octet-stream').send(Buffer.alloc(200_000, 7));
    });
  });
  try {
    const key = randomUUID();
    const first = await send(app.port, { path: '/big', headers: [['idempotency-key', key]] });
    expect(first.status).toBe(201);
    expect(first.body.length).toBe(200_000);
    const retry = await send(app.port, { path: '/big', headers: [['idempotency-key', key]] });
    expect(retry.status).toBe(201);
    expect(app.calls()).toBe(2);
  } finally {
    await app.close();
  }
}

/**
 * An app whose `/pay` runs behind `expressIdempotency(options)` and holds its answer (201 `{ n }`)
 * until `release()`; with `firstOnly`, only the first run waits.
 */
async function gatedPay(
  options: Parameters<typeof expressIdempotency>[0],
  firstOnly = false,
): Promise<ExpressApp & { release: () => void }> {
  let release!: () => void;
  const gate = new Promise<void>((r) => {
    release = r;
  });
  const app = await expressApp((a, counted) => {
    a.use(expressIdempotency(options));
    a.post('/pay', async (_req, res) => {
      const n = counted();
      if (!firstOnly || n === 1) await gate;
      res.status(201).json({ n });
    });
  });
  return { ...app, release };
}

describe('review: keys from hostile clients', () => {
  let app: ExpressApp;
  beforeAll(async () => {
    app = await expressApp((a, counted) => {
      a.use(expressIdempotency({ store: memoryStore(), scope: (req) => account(req) ?? 'anonymous' }));
      a.use(express.json());
      a.post('/orders', (req, res) => {
        const n = counted();
        res.status(201).json({ n, body: req.body });
      });
    });
  });
  afterAll(() => app.close());

  it('a key header sent twice is refused, even when the second copy is empty', async () => {
    // Node joins repeated headers with ", ": `abc` + `` arrives as "abc, ", trimmed to "abc,".
    const reply = await send(app.port, {
      headers: [
        ['x-account', 'a'],
        ['idempotency-key', 'dup-empty'],
        ['idempotency-key', ''],
        ['content-type', 'application/json'],
      ],
      body: '{"x":1}',
    });
    expect(reply.status).toBe(400);
    expect(String(reply.headers['content-type'])).toContain('application/problem+json');
  });

  it('a key header repeated and joined by a proxy with "," (no space) is refused, not taken as one key', async () => {
    // RFC 9110 5.3: a recipient may combine repeated fields with "," — envoy and others do, without a space.
    const reply = await send(app.port, {
      headers: [
        ['x-account', 'a'],
        ['idempotency-key', 'k1,k1'],
        ['content-type', 'application/json'],
      ],
      body: '{"x":1}',
    });
    expect(reply.status).toBe(400);
  });

  it('malformed keys (unicode, 256 chars, empty, whitespace, a list) are 400 problem+json and never run the handler', async () => {
    const before = app.calls();
    const bad = ['', '   ', 'x'.repeat(256), 'a b', 'caf\u00e9', '"a", "b"', '"unterminated', 'tab\tkey'];
    for (const key of bad) {
      const reply = await send(app.port, {
        headers: [
          ['x-account', 'a'],
          ['idempotency-key', key],
          ['content-type', 'application/json'],
        ],
        body: '{"x":1}',
      });
      expect(reply.status, JSON.stringify(key)).toBe(400);
      expect(String(reply.headers['content-type'])).toContain('application/problem+json');
    }
    expect(app.calls()).toBe(before);
  });

  it('GET and HEAD with a key pass through untouched', async () => {
    const local = await expressApp((a, counted) => {
      a.use(expressIdempotency({ store: memoryStore(), scope: 'global' }));
      a.get('/orders', (_req, res) => res.json({ n: counted() }));
    });
    try {
      const headers: [string, string][] = [['idempotency-key', 'get-key']];
      const one = await send(local.port, { method: 'GET', headers });
      const two = await send(local.port, { method: 'GET', headers });
      const head = await send(local.port, { method: 'HEAD', headers });
      expect([one.status, two.status, head.status]).toEqual([200, 200, 200]);
      expect(json(two)).toEqual({ n: 2 });
      expect(two.headers['idempotent-replayed']).toBeUndefined();
    } finally {
      await local.close();
    }
  });
});

describe('review: bodies are fingerprinted by their bytes', () => {
  let app: ExpressApp;
  beforeAll(async () => {
    app = await expressApp((a, counted) => {
      a.use(expressIdempotency({ store: memoryStore(), scope: (req) => account(req) ?? 'anonymous' }));
      a.use(express.json());
      a.use(express.raw({ type: 'application/octet-stream' }));
      a.post('/orders', (req, res) => {
        const n = counted();
        res.status(201).json({ n, bytes: Buffer.isBuffer(req.body) ? req.body.length : JSON.stringify(req.body) });
      });
    });
  });
  afterAll(() => app.close());

  const post = (key: string, body: Buffer | string, extra: [string, string][] = []) =>
    send(app.port, {
      headers: [['x-account', 'a'], ['idempotency-key', key], ['content-type', 'application/json'], ...extra],
      body,
    });

  it('JSON with different whitespace or duplicate keys is a different request (422), and the README says so', async () => {
    const key = randomUUID();
    expect((await post(key, '{"amount":4200}')).status).toBe(201);
    expect((await post(key, '{ "amount": 4200 }')).status).toBe(422);
    expect((await post(key, '{"amount":1,"amount":4200}')).status).toBe(422);
    // The README's "Details that matter" must describe that behaviour, not the old canonical-JSON one.
    const readme = readFileSync(new URL('../packages/idempotency/README.md', import.meta.url), 'utf8');
    const claim = readme.match(/[^\n]*key order and whitespace do not matter[^\n]*/)?.[0];
    expect(claim, 'the README still says JSON is hashed canonically').toBeUndefined();
  });

  it('the same bytes sent with and without Content-Encoding: gzip are different requests (422, not a replay)', async () => {
    // As an octet stream the first request uploads the gzip bytes themselves; the second asks the
    // server to inflate them. Different payloads, the same bytes on the wire.
    const key = randomUUID();
    const gz = gzipSync(Buffer.from('{"amount":4200}'));
    const first = await send(app.port, {
      headers: [
        ['x-account', 'a'],
        ['idempotency-key', key],
        ['content-type', 'application/octet-stream'],
      ],
      body: gz,
    });
    expect(first.status).toBe(201);
    const second = await send(app.port, {
      headers: [
        ['x-account', 'a'],
        ['idempotency-key', key],
        ['content-type', 'application/octet-stream'],
        ['content-encoding', 'gzip'],
      ],
      body: gz,
    });
    expect(second.status).toBe(422);
  });

  it('a gzip-encoded JSON body is read by the parser after the middleware and replays on an identical retry', async () => {
    const key = randomUUID();
    const gz = gzipSync(Buffer.from('{"amount":4200}'));
    const first = await post(key, gz, [['content-encoding', 'gzip']]);
    const retry = await post(key, gz, [['content-encoding', 'gzip']]);
    expect(first.status).toBe(201);
    expect(json(first)).toMatchObject({ bytes: '{"amount":4200}' });
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(retry.body.equals(first.body)).toBe(true);
  });

  it('a chunked body replays when identical and is 422 when one byte differs', async () => {
    const key = randomUUID();
    const chunks = ['{"amount"', ':', '4200}'];
    const head: [string, string][] = [
      ['x-account', 'a'],
      ['idempotency-key', key],
      ['content-type', 'application/json'],
    ];
    const first = await send(app.port, { headers: head, chunks });
    const retry = await send(app.port, { headers: head, chunks });
    const changed = await send(app.port, { headers: head, chunks: ['{"amount"', ':', '4201}'] });
    expect([first.status, retry.status, changed.status]).toEqual([201, 201, 422]);
    expect(retry.headers['idempotent-replayed']).toBe('true');
  });

  it('a body over maxRequestBytes gets 413 problem+json, not a 500, and runs nothing', async () => {
    const before = app.calls();
    const reply = await post(randomUUID(), Buffer.alloc(1_048_577, 0x20));
    expect(reply.status).toBe(413);
    expect(String(reply.headers['content-type'])).toContain('application/problem+json');
    expect(app.calls()).toBe(before);
  });

  it('an empty body and no body are the same request in Express as in Fastify (replay, not 422)', async () => {
    const key = randomUUID();
    const head: [string, string][] = [
      ['x-account', 'a'],
      ['idempotency-key', key],
    ];
    const first = await send(app.port, { headers: head, body: '' }); // Content-Length: 0
    const retry = await send(app.port, { headers: head, chunks: [] }); // chunked, zero bytes
    expect(first.status).toBe(201);
    expect(retry.status).toBe(201);
    expect(retry.headers['idempotent-replayed']).toBe('true');
  });
});

describe('review: two callers never see each other', () => {
  it('with the README Express setup, a second account sending the same key and body runs its own request', async () => {
    const app = await expressApp((a, counted) => {
      a.use((req, res, next) => {
        const acct = req.get('x-api-key');
        if (!acct) return void res.status(401).json({ error: 'unauthenticated' });
        res.locals.account = acct;
        next();
      });
      a.use(expressIdempotency({ store: memoryStore(), scope: (req) => req.res?.locals.account, required: true }));
      a.use(express.json());
      a.post('/charges', (req, res) => {
        const n = counted();
        res.status(201).json({ id: n, owner: res.locals.account, amount: req.body.amount });
      });
    });
    try {
      const key = randomUUID();
      const as = (acct: string) =>
        send(app.port, {
          path: '/charges',
          headers: [
            ['x-api-key', acct],
            ['idempotency-key', key],
            ['content-type', 'application/json'],
          ],
          body: '{"amount":4200}',
        });
      const alice = await as('acct_alice');
      const bob = await as('acct_bob');
      expect(json(alice)).toMatchObject({ owner: 'acct_alice' });
      expect(json(bob)).toMatchObject({ owner: 'acct_bob' });
      expect(bob.headers['idempotent-replayed']).toBeUndefined();
      expect(app.calls()).toBe(2);
    } finally {
      await app.close();
    }
  });

  it('a scope that returns nothing (auth mounted after the middleware) answers a 4xx/5xx, never a shared replay', async () => {
    const app = await expressApp((a, counted) => {
      a.use(expressIdempotency({ store: memoryStore(), scope: (req) => req.res?.locals.account }));
      a.use(express.json());
      a.post('/charges', (_req, res) => res.status(201).json({ id: counted() }));
      a.use((_err: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
        res.status(500).json({ error: 'misconfigured' });
      });
    });
    try {
      const headers: [string, string][] = [
        ['idempotency-key', 'shared'],
        ['content-type', 'application/json'],
      ];
      const one = await send(app.port, { path: '/charges', headers, body: '{}' });
      const two = await send(app.port, { path: '/charges', headers, body: '{}' });
      expect(one.status).toBe(500);
      expect(two.headers['idempotent-replayed']).toBeUndefined();
      expect(app.calls()).toBe(0);
    } finally {
      await app.close();
    }
  });
});

describe('review: responses that are hard to store', () => {
  it('a streamed Express response whose client leaves does not hold its key for the whole lease', async () => {
    const app = await expressApp((a, counted) => {
      a.use(expressIdempotency({ store: memoryStore(), scope: 'global', leaseMs: 60_000 }));
      a.post('/export', (_req, res) => {
        const n = counted();
        res.status(200).type('text/plain');
        async function* rows() {
          for (let i = 0; i < 200; i++) {
            yield `run ${n} row ${i}\n`;
            await new Promise((r) => setTimeout(r, 10));
          }
        }
        pipeline(Readable.from(rows()), res).catch(() => {});
      });
    });
    try {
      const key = randomUUID();
      // The client reads the first bytes, then leaves.
      await new Promise<void>((resolve, reject) => {
        const req = httpRequest(
          {
            host: '127.0.0.1',
            port: app.port,
            method: 'POST',
            path: '/export',
            headers: { 'idempotency-key': key },
            agent: false,
          },
          (res) => {
            res.once('data', () => {
              req.destroy();
              resolve();
            });
          },
        );
        req.on('error', () => {});
        req.once('error', reject);
        req.end();
      });
      await new Promise((r) => setTimeout(r, 400));
      const retry = await send(app.port, { path: '/export', headers: [['idempotency-key', key]] });
      // Either the key was released (the retry runs) or the stream was stored (a replay): never a 409 for 60 s.
      expect(retry.status).not.toBe(409);
    } finally {
      await app.close();
    }
  });

  it('with compression() mounted first (as documented), a gzip first response replays as identity to a client that asks so', async () => {
    const app = await expressApp((a, counted) => {
      a.use(compression({ threshold: 0 }));
      a.use(expressIdempotency({ store: memoryStore(), scope: 'global' }));
      a.post('/report', (_req, res) => {
        res
          .status(201)
          .type('text/plain')
          .send(`report ${counted()} ${'x'.repeat(2000)}`);
      });
    });
    try {
      const key = randomUUID();
      const first = await send(app.port, {
        path: '/report',
        headers: [
          ['idempotency-key', key],
          ['accept-encoding', 'gzip'],
        ],
      });
      expect(first.headers['content-encoding']).toBe('gzip');
      const retry = await send(app.port, {
        path: '/report',
        headers: [
          ['idempotency-key', key],
          ['accept-encoding', 'identity'],
        ],
      });
      expect(retry.status).toBe(201);
      expect(retry.headers['idempotent-replayed']).toBe('true');
      expect(retry.headers['content-encoding']).toBeUndefined();
      expect(retry.body.toString('utf8')).toMatch(/^report 1 /);
    } finally {
      await app.close();
    }
  });

  it('authentication response headers (Authentication-Info, like Set-Cookie and Authorization) are never replayed, even when listed', async () => {
    const app = await expressApp((a, counted) => {
      a.use(
        expressIdempotency({
          store: memoryStore(),
          scope: 'global',
          replayHeaders: ['set-cookie', 'www-authenticate', 'authentication-info', 'authorization'],
        }),
      );
      a.post('/login', (req, res) => {
        counted();
        res.cookie('session', 'secret-session');
        res.set('authentication-info', 'nextnonce="secret-nonce"');
        res.set('authorization', String(req.get('authorization')));
        res.status(201).json({ ok: true });
      });
    });
    try {
      const key = randomUUID();
      const headers: [string, string][] = [
        ['idempotency-key', key],
        ['authorization', 'Bearer secret-token'],
      ];
      await send(app.port, { path: '/login', headers });
      const retry = await send(app.port, { path: '/login', headers });
      expect(retry.headers['idempotent-replayed']).toBe('true');
      expect(retry.headers['set-cookie']).toBeUndefined();
      expect(retry.headers.authorization).toBeUndefined();
      expect(retry.headers['authentication-info']).toBeUndefined();
    } finally {
      await app.close();
    }
  });

  it('a handler that throws after a partial body stores the response-lost problem (Express: it is not run again), and one that throws sync runs again', async () => {
    let mode: 'partial' | 'sync' | 'ok' = 'partial';
    const app = await expressApp((a, counted) => {
      a.use(expressIdempotency({ store: memoryStore(), scope: 'global' }));
      a.post('/boom', async (_req, res) => {
        counted();
        if (mode === 'sync') throw new Error('sync boom');
        if (mode === 'partial') {
          res.status(200).write('partial');
          await new Promise((r) => setTimeout(r, 10));
          throw new Error('boom after headers');
        }
        res.status(201).send('done');
      });
    });
    try {
      const cut = randomUUID();
      await send(app.port, { path: '/boom', headers: [['idempotency-key', cut]] }).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 50));
      // Its 200 went before it threw: its effect may have happened, so the retry does not run it.
      mode = 'ok';
      const again = await send(app.port, { path: '/boom', headers: [['idempotency-key', cut]] });
      expect([again.status, again.headers['idempotent-replayed'], JSON.parse(again.body.toString()).type]).toEqual([
        500,
        'true',
        'urn:holdfast:problem:idempotency-response-lost',
      ]);
      expect(app.calls()).toBe(1);
      const key = randomUUID();
      mode = 'sync';
      const sync = await send(app.port, { path: '/boom', headers: [['idempotency-key', key]] });
      expect(sync.status).toBe(500);
      mode = 'ok';
      const last = await send(app.port, { path: '/boom', headers: [['idempotency-key', key]] });
      expect(last.status).toBe(201);
      expect(app.calls()).toBe(3);
    } finally {
      await app.close();
    }
  });

  it('a POST to a route that does not exist (yet) is not stored: the key works once the route is there', async () => {
    // A rolling deploy: this instance does not serve the route yet, then does (the route is
    // added to the running app). A route that is there but passes the request on (next()) is
    // another case: its handler ran, so its 404 is stored (express-not-found.test.ts).
    let deploy = () => {};
    const app = await expressApp((a, counted) => {
      a.use(expressIdempotency({ store: memoryStore(), scope: 'global' }));
      deploy = () => void a.post('/v2/orders', (_req, res) => void res.status(201).json({ n: counted() }));
    });
    try {
      const key = randomUUID();
      const early = await send(app.port, { path: '/v2/orders', headers: [['idempotency-key', key]] });
      expect(early.status).toBe(404);
      deploy();
      const retry = await send(app.port, { path: '/v2/orders', headers: [['idempotency-key', key]] });
      // Fastify skips unmatched routes (request.is404); Express stores the router's 404 for 24 h.
      expect(retry.status).toBe(201);
    } finally {
      await app.close();
    }
  });
});

describe('review: the guides', () => {
  it('docs/idempotency.md has its failover figures, not a placeholder', () => {
    const guide = readFileSync(new URL('../docs/idempotency.md', import.meta.url), 'utf8');
    expect(/^FIGURES_TABLE$/m.test(guide), 'a literal FIGURES_TABLE line in the guide').toBe(false);
    expect(guide).toMatch(/\| *duplicate/i);
  });
});

describe('review: Fastify', () => {
  it('the README Fastify example, run on a real port: retry replays, a second account runs its own', async () => {
    const app = Fastify();
    app.decorateRequest('account', '');
    app.addHook('onRequest', async (request, reply) => {
      const acct = request.headers['x-api-key'];
      if (typeof acct !== 'string') return reply.code(401).send({ error: 'unauthenticated' });
      (request as unknown as { account: string }).account = acct;
    });
    let charges = 0;
    await app.register(async (api) => {
      await api.register(fastifyIdempotency, {
        store: memoryStore(),
        scope: (request) => (request as unknown as { account: string }).account,
      });
      api.post<{ Body: { amount: number } }>(
        '/charges',
        {
          schema: { body: { type: 'object', required: ['amount'], properties: { amount: { type: 'integer' } } } },
          config: { idempotency: { required: true } },
        },
        async (request, reply) => {
          charges++;
          return reply.code(201).send({ id: charges, amount: request.body.amount });
        },
      );
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const { port } = app.server.address() as AddressInfo;
      const key = randomUUID();
      const as = (acct: string, body = '{"amount":4200}') =>
        send(port, {
          path: '/charges',
          headers: [
            ['x-api-key', acct],
            ['idempotency-key', key],
            ['content-type', 'application/json'],
          ],
          body,
        });
      const first = await as('acct_1');
      const retry = await as('acct_1');
      const other = await as('acct_2');
      const changed = await as('acct_1', '{"amount":9900}');
      const noKey = await send(port, {
        path: '/charges',
        headers: [
          ['x-api-key', 'acct_1'],
          ['content-type', 'application/json'],
        ],
        body: '{"amount":1}',
      });
      expect([first.status, retry.status, other.status, changed.status, noKey.status]).toEqual([
        201, 201, 201, 422, 400,
      ]);
      expect(retry.headers['idempotent-replayed']).toBe('true');
      expect(json(other)).toEqual({ id: 2, amount: 4200 });
      expect(charges).toBe(2);
    } finally {
      await app.close();
    }
  });

  it('Fastify: a key header sent twice with an empty second copy is refused', async () => {
    const app = Fastify();
    await app.register(fastifyIdempotency, { store: memoryStore(), scope: 'global' });
    app.post('/orders', async () => ({ ok: true }));
    await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const { port } = app.server.address() as AddressInfo;
      const reply = await send(port, {
        headers: [
          ['idempotency-key', 'abc'],
          ['idempotency-key', ''],
        ],
      });
      expect(reply.status).toBe(400);
    } finally {
      await app.close();
    }
  });

  it('Fastify fingerprints the bytes: other whitespace is 422, the same bytes replay', async () => {
    const app = Fastify();
    await app.register(fastifyIdempotency, { store: memoryStore(), scope: 'global' });
    let calls = 0;
    app.post('/orders', async (request, reply) => reply.code(201).send({ n: ++calls, body: request.body }));
    await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const { port } = app.server.address() as AddressInfo;
      const headers: [string, string][] = [
        ['idempotency-key', randomUUID()],
        ['content-type', 'application/json'],
      ];
      const first = await send(port, { headers, body: '{"amount":4200}' });
      const same = await send(port, { headers, chunks: ['{"amount"', ':4200}'] });
      const spaced = await send(port, { headers, body: '{ "amount": 4200 }' });
      expect([first.status, same.status, spaced.status]).toEqual([201, 201, 422]);
      expect(same.headers['idempotent-replayed']).toBe('true');
      expect(calls).toBe(1);
    } finally {
      await app.close();
    }
  });
});

describe('review: bad options throw HoldfastConfigError naming the option', () => {
  const cases: [string, () => unknown, string][] = [
    ['memoryStore maxBytes 0', () => memoryStore({ maxBytes: 0 }), 'maxBytes'],
    ['memoryStore maxEntries 1.5', () => memoryStore({ maxEntries: 1.5 }), 'maxEntries'],
    ['express scope missing', () => expressIdempotency({ store: memoryStore() } as never), 'scope'],
    ['express scope "Global"', () => expressIdempotency({ store: memoryStore(), scope: 'Global' as never }), 'scope'],
    ['express header ""', () => expressIdempotency({ store: memoryStore(), scope: 'global', header: '' }), 'header'],
    [
      'express maxRequestBytes 0',
      () => expressIdempotency({ store: memoryStore(), scope: 'global', maxRequestBytes: 0 }),
      'maxRequestBytes',
    ],
    [
      'express methods [] (guards nothing)',
      () => expressIdempotency({ store: memoryStore(), scope: 'global', methods: [] }),
      'methods',
    ],
    ['express leaseMs -1', () => expressIdempotency({ store: memoryStore(), scope: 'global', leaseMs: -1 }), 'leaseMs'],
    [
      'redisStore prefix with a brace',
      () => redisStore({ client: new Redis(1, '127.0.0.1', { lazyConnect: true }), prefix: 'a{b' }),
      'prefix',
    ],
    ['redisStore client {}', () => redisStore({ client: {} as never }), 'client'],
    [
      'redisStore maxValueBytes -1',
      () => redisStore({ client: new Redis(1, '127.0.0.1', { lazyConnect: true }), maxValueBytes: -1 }),
      'maxValueBytes',
    ],
  ];
  for (const [name, make, option] of cases) {
    it(`${name}`, () => {
      let thrown: unknown;
      try {
        make();
      } catch (error) {
        thrown = error;
      }
      expect(thrown, `${name} did not throw`).toBeInstanceOf(HoldfastConfigError);
      expect(String((thrown as Error).message)).toContain(option);
    });
  }
});

describe('review: memoryStore under many large responses', () => {
  it('stays within maxBytes with 1 MiB responses, and replays the newest', async () => {
    const store = memoryStore({ maxBytes: 8 * 1_048_576 });
    const app = await expressApp((a, counted) => {
      a.use(expressIdempotency({ store, scope: 'global', maxResponseBytes: 2 * 1_048_576 }));
      a.post('/blob', (_req, res) => {
        const n = counted();
        res
          .status(201)
          .type('application/octet-stream')
          .send(Buffer.alloc(1_000_000, n % 256));
      });
    });
    try {
      for (let i = 0; i < 30; i++) {
        const reply = await send(app.port, { path: '/blob', headers: [['idempotency-key', `blob-${i}`]] });
        expect(reply.status).toBe(201);
        expect((store.snapshot() as { bytes: number }).bytes).toBeLessThanOrEqual(8 * 1_048_576);
      }
      const replay = await send(app.port, { path: '/blob', headers: [['idempotency-key', 'blob-29']] });
      expect(replay.headers['idempotent-replayed']).toBe('true');
      expect(replay.body.length).toBe(1_000_000);
      expect(app.calls()).toBe(30);
    } finally {
      await app.close();
      store.dispose();
    }
  });
});

describe.runIf(redisAvailable())('review: against a real redis-server', () => {
  let redis: RedisServer;
  let client: Redis;
  beforeAll(async () => {
    redis = (await startRedis(1))[0] as RedisServer;
    client = new Redis(redis.url, { maxRetriesPerRequest: 1, retryStrategy: () => 50 });
    client.on('error', () => {});
  });
  afterAll(async () => {
    client.disconnect();
    await stopAllRedis();
  });

  it('20 concurrent identical requests: exactly one runs, the others get 409 or the replay', async () => {
    const app = await gatedPay({ store: redisStore({ client }), scope: 'global' });
    try {
      const key = randomUUID();
      const all = Array.from({ length: 20 }, () =>
        send(app.port, { path: '/pay', headers: [['idempotency-key', key]] }),
      );
      await new Promise((r) => setTimeout(r, 300));
      app.release();
      const replies = await Promise.all(all);
      expect(app.calls()).toBe(1);
      const ran = replies.filter((r) => r.status === 201 && r.headers['idempotent-replayed'] === undefined);
      const others = replies.filter((r) => r !== ran[0]);
      expect(ran).toHaveLength(1);
      for (const r of others) expect(r.status === 409 || r.headers['idempotent-replayed'] === 'true').toBe(true);
      const after = await send(app.port, { path: '/pay', headers: [['idempotency-key', key]] });
      expect(after.headers['idempotent-replayed']).toBe('true');
    } finally {
      await app.close();
    }
  });

  it('Redis restarted empty while a request runs: its response is still stored, the retry replays', async () => {
    const app = await gatedPay({ store: redisStore({ client }), scope: 'global', completeTimeoutMs: 5_000 });
    try {
      const key = randomUUID();
      const first = send(app.port, { path: '/pay', headers: [['idempotency-key', key]] });
      await new Promise((r) => setTimeout(r, 200));
      await redis.restart();
      app.release();
      expect((await first).status).toBe(201);
      const retry = await send(app.port, { path: '/pay', headers: [['idempotency-key', key]] });
      expect(retry.headers['idempotent-replayed']).toBe('true');
      expect(app.calls()).toBe(1);
    } finally {
      await app.close();
    }
  });

  it('a client that disconnects mid-request and retries at once: one run, the retry gets 409 then the replay', async () => {
    const app = await gatedPay({ store: redisStore({ client }), scope: 'global' });
    try {
      const key = randomUUID();
      const req = httpRequest({
        host: '127.0.0.1',
        port: app.port,
        method: 'POST',
        path: '/pay',
        headers: { 'idempotency-key': key },
        agent: false,
      });
      req.on('error', () => {});
      req.end();
      await new Promise((r) => setTimeout(r, 150));
      req.destroy();
      const during = await send(app.port, { path: '/pay', headers: [['idempotency-key', key]] });
      expect(during.status).toBe(409);
      app.release();
      await new Promise((r) => setTimeout(r, 150));
      const after = await send(app.port, { path: '/pay', headers: [['idempotency-key', key]] });
      expect(after.headers['idempotent-replayed']).toBe('true');
      expect(app.calls()).toBe(1);
    } finally {
      await app.close();
    }
  });

  it('a response over maxValueBytes is sent in full, released, and not a 5xx', () =>
    bigResponseSentAndReleased(redisStore({ client, maxValueBytes: 100_000 }), { maxResponseBytes: 1_000_000 }));
});

describe.runIf(redisAvailable())('review: Redis replies lost on the way back', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = (await startRedis(1))[0] as RedisServer;
  });
  afterAll(() => stopAllRedis());

  for (const step of ['claim', 'completion'] as const) {
    it(`a ${step} whose reply is lost: the handler runs once, the client gets its 201, the retry replays`, async () => {
      // A fault proxy loses the reply: the next chunk Redis sends is swallowed and the connection reset.
      const lossy = await lossyProxy(redis.port);
      const client = new Redis(lossy.proxy.port, '127.0.0.1', { retryStrategy: () => 20, maxRetriesPerRequest: 3 });
      client.on('error', () => {});
      let armAt: 'claim' | 'completion' | undefined;
      const losses: Promise<boolean>[] = [];
      const bus = createBus();
      const seen: string[] = [];
      bus.on('*', (e) => {
        if ('key' in e && e.key === key) seen.push(e.type);
      });
      const key = randomUUID();
      const app = await expressApp((a, counted) => {
        a.use(expressIdempotency({ store: redisStore({ client }), scope: 'global', bus }));
        a.post('/pay', (_req, res) => {
          const n = counted();
          // The claim's reply is in; the next one Redis sends is the completion's.
          if (armAt === 'completion') losses.push(lossy.loseNextReply());
          res.status(201).json({ n });
        });
      });
      try {
        // Warm the script cache, so the lost reply is the script's, not a NOSCRIPT error's.
        expect(
          (await send(app.port, { path: '/pay', headers: [['idempotency-key', `warm-${randomUUID()}`]] })).status,
        ).toBe(201);
        armAt = step;
        // Nothing else is in flight on the client: the next reply Redis sends is the claim's.
        if (step === 'claim') losses.push(lossy.loseNextReply());
        const first = await send(app.port, { path: '/pay', headers: [['idempotency-key', key]] });
        armAt = undefined;
        expect(await Promise.all(losses), 'replies lost').toEqual([true]);
        expect(lossy.lost(), 'replies lost').toBe(1);
        expect(lossy.proxy.snapshot().accepted, 'connections (the first one was reset)').toBe(2);
        expect(first.status, 'first status').toBe(201);
        expect(first.headers['idempotent-replayed'], 'first is not a replay').toBeUndefined();
        const retry = await send(app.port, { path: '/pay', headers: [['idempotency-key', key]] });
        expect(retry.status).toBe(201);
        expect(retry.headers['idempotent-replayed']).toBe('true');
        expect(retry.body.toString()).toBe(first.body.toString());
        expect(app.calls(), 'handler runs').toBe(2); // warm-up + one run
        // The resent claim or completion was taken as the same one: no conflict, no stale completion.
        expect(seen, 'events of the key').toEqual(['idempotency.claim', 'idempotency.replay']);
      } finally {
        await app.close();
        client.disconnect();
        await lossy.close();
      }
    });
  }
});

describe('review: Fastify routes and streams', () => {
  it('a streamed Fastify reply whose client leaves stops its source and settles the key at once: the response-lost problem, no second run', async () => {
    const app = Fastify();
    await app.register(fastifyIdempotency, { store: memoryStore(), scope: 'global', leaseMs: 60_000 });
    let produced = 0;
    let calls = 0;
    app.post('/export', async (_request, reply) => {
      calls++;
      async function* rows() {
        for (let i = 0; i < 150; i++) {
          produced++;
          yield `row ${i}\n`;
          await new Promise((r) => setTimeout(r, 5));
        }
      }
      return reply.type('text/plain').send(Readable.from(rows()));
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const { port } = app.server.address() as AddressInfo;
      const key = randomUUID();
      await new Promise<void>((resolve) => {
        const req = httpRequest(
          {
            host: '127.0.0.1',
            port,
            method: 'POST',
            path: '/export',
            headers: { 'idempotency-key': key },
            agent: false,
          },
          (res) => {
            res.once('data', () => {
              req.destroy();
              resolve();
            });
          },
        );
        req.on('error', () => {});
        req.end();
      });
      await new Promise((r) => setTimeout(r, 300));
      const producedAfterLeave = produced;
      await new Promise((r) => setTimeout(r, 200));
      expect(produced, 'the source kept producing after the client left').toBe(producedAfterLeave);
      const retry = await send(port, { path: '/export', headers: [['idempotency-key', key]] });
      // Not a 409 for the lease, and not a second run (the key was released, and the retry ran the
      // export again): the request was processed, its response lost.
      expect({ status: retry.status, replayed: retry.headers['idempotent-replayed'] }).toEqual({
        status: 500,
        replayed: 'true',
      });
      expect(calls).toBe(1);
    } finally {
      await app.close();
    }
  });

  for (const value of ['true', null, 1] as const) {
    it(`a route's config.idempotency of ${JSON.stringify(value)} is refused when declared, never a silently unguarded route`, async () => {
      const app = Fastify();
      await app.register(fastifyIdempotency, { store: memoryStore(), scope: 'global' });
      let calls = 0;
      let declared: unknown;
      try {
        app.post('/pay', { config: { idempotency: value as never } }, async (_request, reply) => {
          calls++;
          return reply.code(201).send({ n: calls });
        });
        await app.ready();
      } catch (error) {
        declared = error;
      }
      try {
        if (declared !== undefined) {
          expect(declared).toBeInstanceOf(HoldfastConfigError);
          return;
        }
        // Accepted: then it must guard the route (a repeat replays) rather than silently not.
        const headers = { 'idempotency-key': 'k-1' };
        await app.inject({ method: 'POST', url: '/pay', headers });
        const retry = await app.inject({ method: 'POST', url: '/pay', headers });
        expect(retry.headers['idempotent-replayed']).toBe('true');
        expect(calls).toBe(1);
      } finally {
        await app.close();
      }
    });
  }

  it("a route's bad per-route option (leaseMs: -1) throws HoldfastConfigError naming it when declared", async () => {
    const app = Fastify();
    await app.register(fastifyIdempotency, { store: memoryStore(), scope: 'global' });
    let thrown: unknown;
    try {
      app.post('/pay', { config: { idempotency: { leaseMs: -1 } } }, async () => ({ ok: true }));
      await app.ready();
    } catch (error) {
      thrown = error;
    } finally {
      await app.close().catch(() => {});
    }
    expect(thrown).toBeInstanceOf(HoldfastConfigError);
    expect(String((thrown as Error).message)).toContain('leaseMs');
  });
});

describe.runIf(redisAvailable())('review: a hung Redis', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = (await startRedis(1))[0] as RedisServer;
  });
  afterAll(() => stopAllRedis());

  it('a claim sent to a frozen Redis gets a 503 problem, and once Redis is back the retry runs (the key is not held for the lease)', async () => {
    const client = new Redis(redis.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    client.on('error', () => {});
    const app = await expressApp((a, counted) => {
      a.use(
        expressIdempotency({ store: redisStore({ client }), scope: 'global', storeTimeoutMs: 300, leaseMs: 60_000 }),
      );
      a.post('/pay', (_req, res) => res.status(201).json({ n: counted() }));
    });
    try {
      await send(app.port, { path: '/pay', headers: [['idempotency-key', randomUUID()]] }); // scripts loaded
      const key = randomUUID();
      redis.pause();
      const hung = await send(app.port, { path: '/pay', headers: [['idempotency-key', key]] });
      redis.resume();
      expect(hung.status).toBe(503);
      expect(String(hung.headers['content-type'])).toContain('application/problem+json');
      await new Promise((r) => setTimeout(r, 200));
      const retry = await send(app.port, { path: '/pay', headers: [['idempotency-key', key]] });
      expect(retry.status).toBe(201);
      expect(app.calls()).toBe(2);
    } finally {
      if (!redis.running) await redis.restart();
      redis.resume();
      await app.close();
      client.disconnect();
    }
  });
});

describe('review: odd but legal responses', () => {
  it('a response larger than memoryStore maxBytes is sent in full (not a 5xx) and its key released', async () => {
    const store = memoryStore({ maxBytes: 100_000 });
    try {
      await bigResponseSentAndReleased(store);
    } finally {
      store.dispose();
    }
  });

  it('a replayed 204 carries no Content-Length and no body (RFC 9110 8.6)', async () => {
    const app = await expressApp((a, counted) => {
      a.use(expressIdempotency({ store: memoryStore(), scope: 'global' }));
      a.patch('/thing', (_req, res) => {
        counted();
        res.status(204).end();
      });
    });
    try {
      const key = randomUUID();
      const first = await send(app.port, { method: 'PATCH', path: '/thing', headers: [['idempotency-key', key]] });
      const retry = await send(app.port, { method: 'PATCH', path: '/thing', headers: [['idempotency-key', key]] });
      expect([first.status, retry.status]).toEqual([204, 204]);
      expect(retry.headers['idempotent-replayed']).toBe('true');
      expect(first.headers['content-length']).toBeUndefined();
      expect(retry.headers['content-length']).toBeUndefined();
      expect(app.calls()).toBe(1);
    } finally {
      await app.close();
    }
  });
});

describe('review: the documented alternatives', () => {
  it('mounted after express.json({ verify: captureRawBody }), bytes still decide: other whitespace is 422', async () => {
    const app = await expressApp((a, counted) => {
      a.use(express.json({ verify: captureRawBody }));
      a.use(expressIdempotency({ store: memoryStore(), scope: 'global' }));
      a.post('/orders', (req, res) => res.status(201).json({ n: counted(), body: req.body }));
    });
    try {
      const headers: [string, string][] = [
        ['idempotency-key', randomUUID()],
        ['content-type', 'application/json'],
      ];
      const first = await send(app.port, { headers, body: '{"amount":4200}' });
      const same = await send(app.port, { headers, body: '{"amount":4200}' });
      const dup = await send(app.port, { headers, body: '{"amount":1,"amount":4200}' });
      expect([first.status, same.status, dup.status]).toEqual([201, 201, 422]);
      expect(app.calls()).toBe(1);
    } finally {
      await app.close();
    }
  });

  it('with wait, five concurrent duplicates get one run and four identical replays', async () => {
    const app = await gatedPay({ store: memoryStore(), scope: 'global', wait: { timeout: 3_000, interval: 20 } });
    try {
      const key = randomUUID();
      const all = Array.from({ length: 5 }, () =>
        send(app.port, { path: '/pay', headers: [['idempotency-key', key]] }),
      );
      await new Promise((r) => setTimeout(r, 200));
      app.release();
      const replies = await Promise.all(all);
      expect(replies.map((r) => r.status)).toEqual([201, 201, 201, 201, 201]);
      expect(replies.filter((r) => r.headers['idempotent-replayed'] === 'true')).toHaveLength(4);
      expect(new Set(replies.map((r) => r.body.toString()))).toEqual(new Set(['{"n":1}']));
      expect(app.calls()).toBe(1);
    } finally {
      await app.close();
    }
  });
});

describe.runIf(redisAvailable())('review: Redis killed', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = (await startRedis(1))[0] as RedisServer;
  });
  afterAll(() => stopAllRedis());

  it('killed mid-request: the client still gets its 201 within completeTimeoutMs; a new key gets 503 problem+json while it is down', async () => {
    const client = new Redis(redis.port, '127.0.0.1', { maxRetriesPerRequest: 1, retryStrategy: () => 50 });
    client.on('error', () => {});
    const app = await gatedPay(
      { store: redisStore({ client }), scope: 'global', storeTimeoutMs: 300, completeTimeoutMs: 800 },
      true,
    );
    try {
      const first = send(app.port, { path: '/pay', headers: [['idempotency-key', randomUUID()]] });
      await new Promise((r) => setTimeout(r, 150));
      await redis.kill();
      app.release();
      const reply = await first;
      expect(reply.status).toBe(201);
      expect(json(reply)).toEqual({ n: 1 });
      const down = await send(app.port, { path: '/pay', headers: [['idempotency-key', randomUUID()]] });
      expect(down.status).toBe(503);
      expect(String(down.headers['content-type'])).toContain('application/problem+json');
      expect(down.headers['retry-after']).toBe('1');
      expect(app.calls()).toBe(1);
    } finally {
      await app.close();
      client.disconnect();
    }
  });
});
