import { mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import { createServer } from 'node:http';
import * as http2 from 'node:http2';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { createBus, type EventOf } from '@holdfast/core';
import express from 'express';
import Fastify from 'fastify';
import { Redis } from 'ioredis';
import multer from 'multer';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis } from '../../../test/support/redis.js';
import { idempotency } from '../src/express.js';
import { idempotency as fastifyIdempotency } from '../src/fastify.js';
import { problemTypes } from '../src/http/index.js';
import { type IdempotencyStore, memoryStore, redisStore } from '../src/index.js';
import { closeAll, closers, listenNode } from './http-support/body-apps.js';
import { expectLost, sendKeyed, tick } from './http-support/leave.js';

/**
 * Hostile review of the merge that stores response-lost for a response cut off once it began,
 * and fingerprints uploads (review-idem): over real HTTP, what a user of Express or Fastify does.
 */
afterEach(closeAll);

type Busboy = (config: { headers: Record<string, string | string[] | undefined> }) => Writable & {
  on(
    event: 'file',
    listener: (name: string, stream: Readable, info: { filename: string; mimeType: string }) => void,
  ): unknown;
  on(event: 'close', listener: () => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
};
const busboy = createRequire(createRequire(import.meta.url).resolve('multer'))('busboy') as Busboy;

/**
 * An upload parser of the kind many apps write on busboy (and express-fileupload's shape): each
 * file kept in `req.files[field]` as `{ name, data, size, mimetype }`, its content a Buffer.
 */
const keepFiles: express.RequestHandler = (req, _res, next) => {
  const files: Record<string, { name: string; data: Buffer; size: number; mimetype: string }> = {};
  const parser = busboy({ headers: req.headers });
  parser.on('file', (field, stream, info) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const data = Buffer.concat(chunks);
      files[field] = { name: info.filename, data, size: data.length, mimetype: info.mimeType };
    });
  });
  parser.on('close', () => {
    // Its text fields (none here) in req.body, as multer and express-fileupload keep them.
    req.body = {};
    (req as { files?: unknown }).files = files;
    next();
  });
  parser.on('error', next);
  req.pipe(parser);
};

async function uploadApp(before: express.RequestHandler[]) {
  const app = express();
  const ran: number[] = [];
  app.post('/upload', ...before, idempotency({ store: memoryStore(), scope: 'global' }), (req, res) => {
    ran.push(1);
    res.status(201).json({ ok: true, files: Object.keys((req as { files?: object }).files ?? {}) });
  });
  app.use((error: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    res.status(500).json({ error: error.message, code: (error as { code?: string }).code });
  });
  return { port: await listenNode(createServer(app)), ran };
}

async function upload(port: number, key: string, content: Uint8Array | string) {
  const form = new FormData();
  form.append('doc', new Blob([content]), 'doc.bin');
  const response = await fetch(`http://127.0.0.1:${port}/upload`, {
    method: 'POST',
    headers: { 'idempotency-key': key },
    body: form,
    signal: AbortSignal.timeout(20_000),
  });
  return { status: response.status, text: await response.text() };
}

describe('an upload parser before the middleware that keeps each file as a Buffer (not multer)', () => {
  it('a 4 MB file is fingerprinted as bytes (not walked key by key); another file: 422', async () => {
    const { port, ran } = await uploadApp([keepFiles]);
    const big = Buffer.alloc(4 * 1024 * 1024, 7);
    // A Buffer walked as an object lists its 4 million indices: the widest Object.keys() says so
    // (a count, where the time it takes depends on the machine's load).
    const keys = Object.keys;
    let widest = 0;
    Object.keys = ((o: object) => {
      const found = keys(o);
      widest = Math.max(widest, found.length);
      return found;
    }) as typeof Object.keys;
    const statuses: number[] = [];
    try {
      statuses.push((await upload(port, 'k', big)).status);
      const other = Buffer.from(big);
      other[other.length - 1] = 8;
      statuses.push((await upload(port, 'k', other)).status);
      statuses.push((await upload(port, 'k', big)).status);
    } finally {
      Object.keys = keys;
    }
    expect(statuses).toEqual([201, 422, 201]);
    expect(ran).toHaveLength(1);
    expect(widest).toBeLessThan(1_000);
  }, 30_000);
});

describe('multer disk storage: the file gone before the middleware reads it', () => {
  it('a clear 5xx, the handler never runs; once the file is there, the retry runs it once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'holdfast-review-'));
    closers.push(async () => rmSync(dir, { recursive: true, force: true }));
    let removeNext = true;
    const cleaner: express.RequestHandler = (req, _res, next) => {
      if (removeNext && req.file?.path) unlinkSync(req.file.path);
      removeNext = false;
      next();
    };
    const { port, ran } = await uploadApp([multer({ dest: dir }).single('doc'), cleaner]);
    const first = await upload(port, 'k', 'invoice');
    expect(first.status).toBe(500);
    expect(ran).toHaveLength(0);
    const retry = await upload(port, 'k', 'invoice');
    const again = await upload(port, 'k', 'invoice');
    expect([retry.status, again.status]).toEqual([201, 201]);
    expect(ran).toHaveLength(1);
  });
});

describe('response-lost stored only where the response began', () => {
  async function expressApp(handler: express.RequestHandler) {
    const app = express();
    const bus = createBus();
    const lost: EventOf<'idempotency.lost'>[] = [];
    bus.on('idempotency.lost', (e) => lost.push(e));
    app.use(idempotency({ store: memoryStore(), scope: 'global', bus }));
    const ran = { count: 0, lost };
    app.post('/orders', (req, res, next) => {
      ran.count++;
      return handler(req, res, next);
    });
    return { port: await listenNode(createServer(app)), ran };
  }
  const post = (port: number) => sendKeyed(`http://127.0.0.1:${port}/orders`).catch(() => 'cut off' as const);

  it('Express: early hints (103) sent, then a throw before the real status: released (the 500), the retry runs', async () => {
    const { port, ran } = await expressApp((_req, res) => {
      res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
      throw new Error('failed before the status');
    });
    const first = await post(port);
    const retry = await post(port);
    expect([first !== 'cut off' && first.status, retry !== 'cut off' && retry.status]).toEqual([500, 500]);
    expect(ran.count).toBe(2);
    expect(ran.lost).toEqual([]);
  });

  it('Express: early hints, then 201 and a chunk, then a throw: the response-lost problem, the 201 read from the status line', async () => {
    const { port, ran } = await expressApp((_req, res, next) => {
      res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
      res.status(201).type('text/plain').write('paid; ');
      next(new Error('the receipt broke'));
    });
    expect(await post(port)).toBe('cut off');
    await tick(50);
    const retry = await post(port);
    expect(ran.count).toBe(1);
    expectLost(retry as Exclude<typeof retry, string>);
    expect(ran.lost.map((e) => e.sent)).toEqual([201]);
  });

  it('Express: writeHead(201) with no body, then end(): stored whole and replayed (not lost)', async () => {
    const { port, ran } = await expressApp((_req, res) => {
      res.writeHead(201);
      setTimeout(() => res.end(), 10);
    });
    const first = await post(port);
    const retry = await post(port);
    expect(first !== 'cut off' && [first.status, first.replayed]).toEqual([201, null]);
    expect(retry !== 'cut off' && [retry.status, retry.replayed]).toEqual([201, 'true']);
    expect(ran.count).toBe(1);
    expect(ran.lost).toEqual([]);
  });

  it('Fastify: early hints on reply.raw, then a throw before the status: released (Fastify answers 500), the retry runs', async () => {
    const app = Fastify({ logger: false });
    closers.push(() => app.close());
    await app.register(fastifyIdempotency, { store: memoryStore(), scope: 'global' });
    let count = 0;
    app.post('/orders', async (_request, reply) => {
      count++;
      reply.raw.writeEarlyHints({ link: '</a.css>; rel=preload; as=style' });
      throw new Error('failed before the status');
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as AddressInfo).port;
    const first = await post(port);
    const retry = await post(port);
    expect([first !== 'cut off' && first.status, retry !== 'cut off' && retry.status]).toEqual([500, 500]);
    expect(count).toBe(2);
  });
});

describe('Fastify: a `boundary=` inside another quoted parameter of a multipart type', () => {
  it('two different files under the same key: the second gets 422, the handler runs once', async () => {
    const app = Fastify({ logger: false });
    closers.push(() => app.close());
    // The app reads uploads itself, from the bytes (busboy, as @fastify/multipart does).
    app.addContentTypeParser('multipart/form-data', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
    await app.register(fastifyIdempotency, { store: memoryStore(), scope: 'global' });
    const ran: string[] = [];
    app.post('/upload', async (request, reply) => {
      const content = await new Promise<string>((resolve, reject) => {
        const parser = busboy({ headers: request.headers });
        let got = '';
        parser.on('file', (_field, stream) => {
          stream.on('data', (c: Buffer) => {
            got += c.toString('latin1');
          });
        });
        parser.on('close', () => resolve(got));
        parser.on('error', reject);
        parser.end(request.body as Buffer);
      });
      ran.push(content);
      return reply.code(201).send({ stored: content.length });
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as AddressInfo).port;
    const send = async (decoy: string) => {
      const response = await fetch(`http://127.0.0.1:${port}/upload`, {
        method: 'POST',
        headers: {
          'idempotency-key': 'k',
          'content-type': `multipart/form-data; x="; boundary=${decoy}"; boundary=REAL`,
        },
        body:
          `--REAL\r\nContent-Disposition: form-data; name="doc"; filename="d.txt"\r\n\r\n` +
          `pay\r\n--${decoy}"to\r\n--REAL--\r\n`,
        signal: AbortSignal.timeout(5_000),
      });
      return response.status;
    };
    expect([await send('alice'), await send('bobby')]).toEqual([201, 422]);
    expect(ran).toEqual(['pay\r\n--alice"to']);
  });
});

describe('Fastify over HTTP/2 (no status line kept): a response cut off once it began', () => {
  let server: RedisServer | undefined;
  const clients: Redis[] = [];
  beforeAll(async () => {
    if (redisAvailable()) [server] = (await startRedis(1)) as [RedisServer];
  });
  afterAll(async () => {
    for (const client of clients) client.disconnect();
    await server?.stop();
  });
  const onRedis = () => {
    const client = new Redis((server as RedisServer).url, { maxRetriesPerRequest: 1 });
    client.on('error', () => {});
    clients.push(client);
    return redisStore({ client });
  };
  const storeKinds: [string, () => IdempotencyStore][] = [
    ['memoryStore()', () => memoryStore()],
    ...(redisAvailable()
      ? ([['redisStore() on a redis-server of its own', onRedis]] as [string, () => IdempotencyStore][])
      : []),
  ];

  /** A keyed POST on an HTTP/2 session: its status and body, or 'cut off' if its stream was reset. */
  function post(client: http2.ClientHttp2Session) {
    return new Promise<{ status: number; body: string } | 'cut off'>((resolve) => {
      const stream = client.request({
        ':method': 'POST',
        ':path': '/orders',
        'idempotency-key': 'k',
        'content-type': 'text/plain',
      });
      let status = 0;
      let body = '';
      stream.on('response', (h) => {
        status = Number(h[':status']);
      });
      stream.setEncoding('utf8');
      stream.on('data', (d: string) => {
        body += d;
      });
      stream.on('end', () => resolve(status >= 500 && body.startsWith('paid') ? 'cut off' : { status, body }));
      stream.on('error', () => resolve('cut off'));
      stream.setTimeout(3_000, () => stream.close());
      stream.end('hi');
    });
  }

  it.each(storeKinds)(
    '%s: reply.raw written (201), then the handler throws: the retry gets the response-lost problem, not a second run',
    async (_name, makeStore) => {
      const app = Fastify({ logger: false, http2: true });
      closers.push(() => app.close());
      await app.register(fastifyIdempotency, { store: makeStore(), scope: 'global' });
      let count = 0;
      app.post('/orders', async (_request, reply) => {
        count++;
        reply.raw.writeHead(201, { 'content-type': 'text/plain' });
        reply.raw.write('paid; receipt: ');
        await tick(5);
        throw new Error('the receipt renderer broke');
      });
      await app.listen({ port: 0, host: '127.0.0.1' });
      const client = http2.connect(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}`);
      closers.unshift(async () => client.destroy());
      await post(client);
      await tick(50);
      const retry = await post(client);
      expect(count).toBe(1);
      expect(retry !== 'cut off' && [retry.status, JSON.parse(retry.body).type]).toEqual([
        500,
        problemTypes.responseLost,
      ]);
    },
  );
});
