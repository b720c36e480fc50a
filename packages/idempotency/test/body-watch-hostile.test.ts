import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import * as http2 from 'node:http2';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { createGunzip, gzipSync } from 'node:zlib';
import express from 'express';
import fc from 'fast-check';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { captureRawBody, idempotency } from '../src/express.js';
import { idempotency as fastifyIdempotency } from '../src/fastify.js';
import { memoryStore } from '../src/index.js';
import { closeAll, closers, expressApp, fastifyApp, listenNode } from './http-support/body-apps.js';
import { exchange, finals, head, json, keyed, within } from './http-support/raw.js';
import { newKey } from './http-support/support.js';

// Hostile review of the body watch (watchPushes/readBody): production setups where watching the
// request's pushes instead of reading it gives a wrong answer, hangs, or runs a handler twice.

// light-my-request is Fastify's own dependency (its `inject`), used by many to test Express apps too.
const fromFastify = createRequire(createRequire(import.meta.url).resolve('fastify'));
const { inject } = fromFastify('light-my-request') as {
  inject: (
    dispatch: (req: IncomingMessage, res: ServerResponse) => void,
    options: { method: string; url: string; headers?: Record<string, string>; payload?: string | Buffer },
  ) => Promise<{ statusCode: number; body: string }>;
};

afterEach(closeAll);

describe('Express: requests whose body is not pushed until someone reads', () => {
  it('an Express app driven by light-my-request (inject) answers a keyed POST instead of hanging', async () => {
    const app = express();
    let calls = 0;
    app.use(idempotency({ store: memoryStore(), scope: 'global' }));
    app.use(express.json());
    app.post('/orders', (req, res) => {
      calls++;
      res.status(201).json({ got: req.body });
    });
    const key = newKey();
    // light-my-request supports Express by re-parenting Express's request and response
    // prototypes (shared by every Express app in the process): put them back afterwards.
    const reqProto = Object.getPrototypeOf(app.request) as object;
    const resProto = Object.getPrototypeOf(app.response) as object;
    const [reqParent, resParent] = [Object.getPrototypeOf(reqProto), Object.getPrototypeOf(resProto)];
    let res: Awaited<ReturnType<typeof inject>> | 'timeout';
    try {
      res = await within(
        3000,
        inject(app as never, {
          method: 'POST',
          url: '/orders',
          headers: { 'content-type': 'application/json', 'idempotency-key': key },
          payload: JSON.stringify({ amount: 1 }),
        }),
      );
    } finally {
      Object.setPrototypeOf(reqProto, reqParent);
      Object.setPrototypeOf(resProto, resParent);
    }
    expect(res).not.toBe('timeout');
    expect(res !== 'timeout' && res.statusCode).toBe(201);
    expect(calls).toBe(1);
  });
});

describe('Express: middleware before ours that touches the stream', () => {
  it('req.setEncoding("utf8") before ours: fingerprint is of the bytes, retry replays, changed body is 422', async () => {
    // Body parsers refuse a stream with an encoding set: the app reads the text itself.
    const readText: express.RequestHandler = (req, _res, next) => {
      let text = '';
      req.on('data', (d: string) => {
        text += d;
      });
      req.on('end', () => {
        req.body = JSON.parse(text);
        next();
      });
    };
    const app = await expressApp(
      [
        (req, _res, next) => {
          req.setEncoding('utf8');
          next();
        },
      ],
      { after: [readText] },
    );
    const key = newKey();
    const body = json({ note: 'é'.repeat(50) });
    const first = finals(await exchange(app.port, [head('/orders', keyed(key), body.length), body], { count: 1 }));
    expect(first.map((r) => r.status)).toEqual([201]);
    const again = finals(await exchange(app.port, [head('/orders', keyed(key), body.length), body], { count: 1 }));
    expect(again[0]?.body).toBe(first[0]?.body);
    const other = json({ note: 'è'.repeat(50) });
    const changed = finals(await exchange(app.port, [head('/orders', keyed(key), other.length), other], { count: 1 }));
    expect(changed.map((r) => r.status)).toEqual([422]);
    expect(app.calls()).toBe(1);
  });
});

describe('Express: framing on one connection', () => {
  it('two pipelined keyed POSTs in one TCP write, then a replay of the first on the same socket', async () => {
    const app = await expressApp();
    const a = newKey();
    const b = newKey();
    const bodyA = json({ who: 'a' });
    const bodyB = json({ who: 'b', pad: 'p'.repeat(3000) });
    const wire = Buffer.concat([
      Buffer.from(head('/orders', keyed(a), bodyA.length)),
      bodyA,
      Buffer.from(head('/orders', keyed(b), bodyB.length)),
      bodyB,
      Buffer.from(head('/orders', keyed(a), bodyA.length)),
      bodyA,
    ]);
    const res = finals(await exchange(app.port, [wire], { count: 3 }));
    expect(res.map((r) => r.status)).toEqual([201, 201, 201]);
    expect(res[2]?.body).toBe(res[0]?.body);
    expect(app.calls()).toBe(2);
    expect(app.bodies).toEqual([{ who: 'a' }, { who: 'b', pad: 'p'.repeat(3000) }]);
  });

  it('Expect: 100-continue: the body is sent after the 100, and a retry replays', async () => {
    const app = await expressApp();
    const key = newKey();
    const body = json({ amount: 100 });
    const h = [...keyed(key), 'Expect: 100-continue'];
    const first = await exchange(app.port, [head('/orders', h, body.length), body], { count: 1, gap: 100 });
    expect(first.map((r) => r.status)).toEqual([100, 201]);
    const again = finals(await exchange(app.port, [head('/orders', h, body.length), body], { count: 1, gap: 100 }));
    expect(again[0]?.body).toBe(first[1]?.body);
    expect(app.calls()).toBe(1);
  });

  it('a Content-Length that lies short (the client closes early) holds no key; the honest retry runs once', async () => {
    const app = await expressApp();
    const key = newKey();
    const body = json({ amount: 5, pad: 'x'.repeat(500) });
    const cut = finals(
      await exchange(app.port, [head('/orders', keyed(key), body.length + 10), body], {
        count: 1,
        closeAfterWrites: true,
        ms: 500,
      }),
    );
    // Node answers 400 to the truncated request (or nothing): never a 2xx, never the handler.
    expect(cut.filter((r) => r.status < 300)).toEqual([]);
    await new Promise((r) => setTimeout(r, 50));
    const retry = finals(await exchange(app.port, [head('/orders', keyed(key), body.length), body], { count: 1 }));
    expect(retry.map((r) => r.status)).toEqual([201]);
    expect(app.calls()).toBe(1);
  });
});

describe('Express: bodies around the stream buffer and maxRequestBytes', () => {
  it('property: any size near 16 KiB, any split, any limit: parsed whole, replayed whole, or 413; never hung', async () => {
    const hwm = 16 * 1024;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: hwm - 40, max: hwm + 40 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: hwm - 40, max: hwm + 40 }),
        async (size, parts, limit) => {
          const app = await expressApp([], { maxRequestBytes: limit });
          const pad = 'z'.repeat(Math.max(0, size - 10));
          const body = json({ p: pad });
          const pieces = Array.from({ length: parts }, (_, i) =>
            body.subarray(Math.floor((i * body.length) / parts), Math.floor(((i + 1) * body.length) / parts)),
          );
          const key = newKey();
          const res = finals(
            await exchange(app.port, [head('/orders', keyed(key), body.length), ...pieces], { count: 1, gap: 2 }),
          );
          if (body.length > limit) {
            expect(res.map((r) => r.status)).toEqual([413]);
            expect(app.calls()).toBe(0);
          } else {
            expect(res.map((r) => r.status)).toEqual([201]);
            expect((app.bodies[0] as { p: string }).p.length).toBe(pad.length);
            const again = finals(
              await exchange(app.port, [head('/orders', keyed(key), body.length), body], { count: 1 }),
            );
            expect(again[0]?.body).toBe(res[0]?.body);
            expect(app.calls()).toBe(1);
          }
          for (const close of closers.splice(0)) await close();
        },
      ),
      { numRuns: 25 },
    );
  }, 60_000);
});

describe('Express: other parsers after ours', () => {
  it('express.raw and express.text and urlencoded after ours see the whole body', async () => {
    for (const [parser, type, payload] of [
      [express.raw({ type: '*/*' }), 'application/octet-stream', Buffer.from([0, 1, 2, 250, 255])],
      [express.text(), 'text/plain', Buffer.from('hello there')],
      [express.urlencoded({ extended: false }), 'application/x-www-form-urlencoded', Buffer.from('a=1&b=2')],
    ] as const) {
      const app = await expressApp([], { after: [parser] });
      const key = newKey();
      const res = finals(
        await exchange(
          app.port,
          [head('/orders', [`Content-Type: ${type}`, `Idempotency-Key: ${key}`], payload.length), payload],
          { count: 1 },
        ),
      );
      expect(res.map((r) => r.status)).toEqual([201]);
      expect(app.bodies.length).toBe(1);
    }
  });

  it('express.json({ verify: captureRawBody }) before ours: replay and 422 on a changed body', async () => {
    const app = await expressApp([express.json({ verify: captureRawBody })], { after: [] });
    const key = newKey();
    const body = json({ amount: 1 });
    const first = finals(await exchange(app.port, [head('/orders', keyed(key), body.length), body], { count: 1 }));
    expect(first.map((r) => r.status)).toEqual([201]);
    const other = json({ amount: 2 });
    const changed = finals(await exchange(app.port, [head('/orders', keyed(key), other.length), other], { count: 1 }));
    expect(changed.map((r) => r.status)).toEqual([422]);
  });
});

describe('Express: the key header under another name', () => {
  for (const header of ['from', 'authorization', 'x-request-key']) {
    it(`header "${header}" sent twice with different values is refused (400), never run`, async () => {
      const app = await expressApp([], { header });
      const body = json({ a: 1 });
      const res = finals(
        await exchange(
          app.port,
          [head('/orders', ['Content-Type: application/json', `${header}: k1`, `${header}: k2`], body.length), body],
          { count: 1 },
        ),
      );
      expect(res.map((r) => r.status)).toEqual([400]);
      expect(app.calls()).toBe(0);
    });
  }
});

describe('Fastify: other hooks and registrations around ours', () => {
  it('a decompressing preParsing hook before ours: fingerprint of what the parser gets; replay; 422', async () => {
    const app = await fastifyApp((f) => {
      f.addHook('preParsing', (request, _reply, payload, done) => {
        if (request.headers['content-encoding'] !== 'gzip') return done(null, payload);
        // As @fastify/compress does: Fastify checks Content-Length against receivedEncodedLength.
        const gunzip = Object.assign(createGunzip(), { receivedEncodedLength: 0 });
        payload.on('data', (c: Buffer) => {
          gunzip.receivedEncodedLength += c.length;
        });
        payload.pipe(gunzip);
        done(null, gunzip);
      });
    });
    const key = newKey();
    const body = gzipSync(json({ amount: 9, pad: 'g'.repeat(5000) }));
    const h = [...keyed(key), 'Content-Encoding: gzip'];
    const first = finals(await exchange(app.port, [head('/orders', h, body.length), body], { count: 1 }));
    expect(first.map((r) => r.status)).toEqual([201]);
    const again = finals(await exchange(app.port, [head('/orders', h, body.length), body], { count: 1 }));
    expect(again[0]?.body).toBe(first[0]?.body);
    const other = gzipSync(json({ amount: 10, pad: 'g'.repeat(5000) }));
    const changed = finals(await exchange(app.port, [head('/orders', h, other.length), other], { count: 1 }));
    expect(changed.map((r) => r.status)).toEqual([422]);
    expect(app.calls()).toBe(1);
  });

  it('registered twice on the same routes: one run, a replay, a 422', async () => {
    const app = await fastifyApp(undefined, { register: 2 });
    const key = newKey();
    const body = json({ amount: 3 });
    const first = finals(await exchange(app.port, [head('/orders', keyed(key), body.length), body], { count: 1 }));
    expect(first.map((r) => r.status)).toEqual([201]);
    expect(app.bodies).toEqual([{ amount: 3 }]);
    const again = finals(await exchange(app.port, [head('/orders', keyed(key), body.length), body], { count: 1 }));
    expect(again[0]?.body).toBe(first[0]?.body);
    const other = json({ amount: 4 });
    const changed = finals(await exchange(app.port, [head('/orders', keyed(key), other.length), other], { count: 1 }));
    expect(changed.map((r) => r.status)).toEqual([422]);
    expect(app.calls()).toBe(1);
  });

  it('pipelined keyed POSTs to Fastify on one connection', async () => {
    const app = await fastifyApp();
    const a = newKey();
    const bodyA = json({ who: 'a' });
    const bodyB = json({ who: 'b' });
    const wire = Buffer.concat([
      Buffer.from(head('/orders', keyed(a), bodyA.length)),
      bodyA,
      Buffer.from(head('/orders', keyed(newKey()), bodyB.length)),
      bodyB,
      Buffer.from(head('/orders', keyed(a), bodyB.length)),
      bodyB,
    ]);
    const res = finals(await exchange(app.port, [wire], { count: 3 }));
    expect(res.map((r) => r.status)).toEqual([201, 201, 422]);
    expect(app.calls()).toBe(2);
  });

  it('Fastify inject (light-my-request): a keyed POST runs once and replays', async () => {
    const app = Fastify();
    await app.register(fastifyIdempotency, { store: memoryStore(), scope: 'global' });
    let calls = 0;
    app.post('/orders', async (req) => ({ n: ++calls, body: req.body }));
    closers.push(() => app.close());
    const key = newKey();
    const send = () =>
      app.inject({
        method: 'POST',
        url: '/orders',
        headers: { 'content-type': 'application/json', 'idempotency-key': key },
        payload: JSON.stringify({ a: 1 }),
      });
    const first = await send();
    const again = await send();
    expect(first.statusCode).toBe(200);
    expect(again.body).toBe(first.body);
    expect(calls).toBe(1);
  });
});

describe('Fastify over HTTP/2', () => {
  it('http2: true, a keyed POST runs once, replays, and a changed body is 422', async () => {
    const app = await fastifyApp(undefined, { http2: true });
    const client = http2.connect(`http://127.0.0.1:${app.port}`);
    closers.unshift(async () => client.destroy());
    const post = (key: string, body: Buffer) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const stream = client.request({
          ':method': 'POST',
          ':path': '/orders',
          'content-type': 'application/json',
          'content-length': String(body.length),
          'idempotency-key': key,
        });
        let status = 0;
        let text = '';
        stream.on('response', (h) => {
          status = Number(h[':status']);
        });
        stream.setEncoding('utf8');
        stream.on('data', (d: string) => {
          text += d;
        });
        stream.on('end', () => resolve({ status, body: text }));
        stream.on('error', reject);
        stream.end(body);
      });
    const key = newKey();
    const body = json({ amount: 2, pad: 'h'.repeat(20_000) });
    const first = await within(3000, post(key, body));
    expect(first !== 'timeout' && first.status).toBe(201);
    const again = await within(3000, post(key, body));
    expect(again !== 'timeout' && first !== 'timeout' && again.body === first.body).toBe(true);
    const other = json({ amount: 3, pad: 'h'.repeat(20_000) });
    const changed = await within(3000, post(key, other));
    expect(changed !== 'timeout' && changed.status).toBe(422);
    expect(app.calls()).toBe(1);
  });
});

describe('Express: clients that leave, and keys raced', () => {
  it('a client that closes after its head, before any body byte, holds no key: its retry runs once', async () => {
    const app = await expressApp();
    const key = newKey();
    const body = json({ amount: 11 });
    const gone = finals(
      await exchange(app.port, [head('/orders', keyed(key), body.length)], {
        count: 1,
        ms: 300,
        closeAfterWrites: true,
      }),
    );
    expect(gone.filter((r) => r.status < 300)).toEqual([]);
    await new Promise((r) => setTimeout(r, 50));
    const retry = finals(await exchange(app.port, [head('/orders', keyed(key), body.length), body], { count: 1 }));
    expect(retry.map((r) => r.status)).toEqual([201]);
    expect(app.calls()).toBe(1);
  });

  it('property: same-key requests whose bodies arrive interleaved run the handler at most once', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 2, max: 4 }),
        fc.array(fc.integer({ min: 0, max: 25 }), { minLength: 4, maxLength: 4 }),
        async (n, delays) => {
          const app = await expressApp();
          const key = newKey();
          const body = json({ amount: 77, pad: 'i'.repeat(2000) });
          const pieces = [body.subarray(0, 1000), body.subarray(1000)];
          const res = await Promise.all(
            Array.from({ length: n }, (_, i) =>
              exchange(app.port, [head('/orders', keyed(key), body.length), ...pieces], {
                count: 1,
                gap: delays[i] ?? 0,
              }),
            ),
          );
          const statuses = res.map((r) => finals(r)[0]?.status);
          expect(app.calls()).toBe(1);
          for (const st of statuses) expect([201, 409]).toContain(st);
          for (const close of closers.splice(0)) await close();
        },
      ),
      { numRuns: 10 },
    );
  }, 60_000);
});

describe('a store that copies the memory store’s brand', () => {
  it('a write-through store built by spreading memoryStore() is still raced against storeTimeoutMs (503, not a hang)', async () => {
    // A local cache in front of a remote that is down: the remote call never answers. The
    // wrapper copies the memory store's own properties (spread), methods written out.
    const local = memoryStore();
    const remoteDown = () => new Promise<void>(() => {});
    const store = {
      ...local,
      claim: async (...a: Parameters<typeof local.claim>) => {
        await remoteDown();
        return local.claim(...a);
      },
      complete: (...a: Parameters<typeof local.complete>) => local.complete(...a),
      release: (...a: Parameters<typeof local.release>) => local.release(...a),
    };
    const app = express();
    let calls = 0;
    app.use(idempotency({ store, scope: 'global', storeTimeoutMs: 200 }));
    app.post('/orders', (_req, res) => {
      calls++;
      res.status(201).end();
    });
    const port = await listenNode(createServer(app));
    const body = json({ a: 1 });
    const res = finals(
      await exchange(port, [head('/orders', keyed(newKey()), body.length), body], { count: 1, ms: 2000 }),
    );
    expect(res.map((r) => r.status)).toEqual([503]);
    expect(calls).toBe(0);
  });
});

describe('Fastify: a parser that hands the body stream to the handler', () => {
  it('a body that arrives after preHandler is still fingerprinted whole: a changed tail is 422, not a replay', async () => {
    const f = Fastify();
    f.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));
    await f.register(fastifyIdempotency, { store: memoryStore(), scope: 'global' });
    let calls = 0;
    f.post('/upload', async (req, reply) => {
      const chunks: Buffer[] = [];
      for await (const c of req.body as AsyncIterable<Buffer>) chunks.push(c);
      calls++;
      return reply.code(201).send({ n: calls, bytes: Buffer.concat(chunks).length });
    });
    await f.listen({ port: 0, host: '127.0.0.1' });
    closers.push(() => f.close());
    const port = (f.server.address() as AddressInfo).port;
    const key = newKey();
    const h = ['Content-Type: application/octet-stream', `Idempotency-Key: ${key}`];
    const first = finals(
      await exchange(port, [head('/upload', h, 8), Buffer.from('AAAA'), Buffer.from('BBBB')], { count: 1, gap: 60 }),
    );
    expect(first.map((r) => r.status)).toEqual([201]);
    const changed = finals(
      await exchange(port, [head('/upload', h, 8), Buffer.from('AAAA'), Buffer.from('CCCC')], { count: 1, gap: 60 }),
    );
    expect(changed.map((r) => r.status)).toEqual([422]);
    expect(calls).toBe(1);
  });
});

describe('Express: keep-alive reuse after a body nobody read', () => {
  it('a replay (body left unread) then a new keyed POST in the same TCP write: both answered right', async () => {
    const app = await expressApp();
    const a = newKey();
    const b = newKey();
    const bodyA = json({ who: 'a', pad: 'r'.repeat(4000) });
    const bodyB = json({ who: 'b' });
    const first = finals(await exchange(app.port, [head('/orders', keyed(a), bodyA.length), bodyA], { count: 1 }));
    expect(first.map((r) => r.status)).toEqual([201]);
    const wire = Buffer.concat([
      Buffer.from(head('/orders', keyed(a), bodyA.length)),
      bodyA,
      Buffer.from(head('/orders', keyed(b), bodyB.length)),
      bodyB,
    ]);
    const res = finals(await exchange(app.port, [wire], { count: 2 }));
    expect(res.map((r) => r.status)).toEqual([201, 201]);
    expect(res[0]?.body).toBe(first[0]?.body);
    expect(app.calls()).toBe(2);
    expect(app.bodies[1]).toEqual({ who: 'b' });
  });

  it('an unkeyed POST past the stream buffer that nobody reads, then a keyed POST pipelined behind it', async () => {
    const app = express();
    let calls = 0;
    app.use(idempotency({ store: memoryStore(), scope: 'global' }));
    app.post('/ignore', (_req, res) => {
      res.status(202).end();
    });
    app.post('/orders', express.json(), (req, res) => {
      calls++;
      res.status(201).json(req.body);
    });
    const port = await listenNode(createServer(app));
    const big = Buffer.alloc(200_000, 0x61);
    const bodyB = json({ who: 'b' });
    const wire = Buffer.concat([
      Buffer.from(head('/ignore', ['Content-Type: application/octet-stream'], big.length)),
      big,
      Buffer.from(head('/orders', keyed(newKey()), bodyB.length)),
      bodyB,
    ]);
    const res = finals(await exchange(port, [wire], { count: 2 }));
    expect(res.map((r) => r.status)).toEqual([202, 201]);
    expect(res[1]?.body).toBe('{"who":"b"}');
    expect(calls).toBe(1);
  });

  it('Express with a checkContinue listener that hands the request to the app after writeContinue', async () => {
    const app = express();
    let calls = 0;
    app.use(idempotency({ store: memoryStore(), scope: 'global' }));
    app.use(express.json());
    app.post('/orders', (req, res) => {
      calls++;
      res.status(201).json(req.body);
    });
    const server = createServer(app);
    server.on('checkContinue', (req, res) => {
      // e.g. checks the Content-Length or auth first, then lets the body come.
      setTimeout(() => {
        res.writeContinue();
        app(req, res);
      }, 20);
    });
    const port = await listenNode(server);
    const key = newKey();
    const body = json({ amount: 100 });
    const h = [...keyed(key), 'Expect: 100-continue'];
    const first = await exchange(port, [head('/orders', h, body.length), body], { count: 1, gap: 100 });
    expect(first.map((r) => r.status)).toEqual([100, 201]);
    const again = await exchange(port, [head('/orders', h, body.length), body], { count: 1, gap: 100 });
    expect(finals(again)[0]?.body).toBe(first[1]?.body);
    expect(calls).toBe(1);
  });
});

describe('Fastify: framing', () => {
  it('a chunked body and Expect: 100-continue: one run, then a replay', async () => {
    const app = await fastifyApp();
    const key = newKey();
    const body = json({ amount: 8, pad: 'c'.repeat(3000) });
    const chunked = (b: Buffer) =>
      Buffer.concat([
        Buffer.from(`${(1000).toString(16)}\r\n`),
        b.subarray(0, 1000),
        Buffer.from(`\r\n${(b.length - 1000).toString(16)}\r\n`),
        b.subarray(1000),
        Buffer.from('\r\n0\r\n\r\n'),
      ]);
    const h = [
      'POST /orders HTTP/1.1',
      'Host: localhost',
      ...keyed(key),
      'Expect: 100-continue',
      'Transfer-Encoding: chunked',
      '',
      '',
    ].join('\r\n');
    const first = finals(await exchange(app.port, [h, chunked(body)], { count: 1, gap: 50 }));
    expect(first.map((r) => r.status)).toEqual([201]);
    const again = finals(await exchange(app.port, [h, chunked(body)], { count: 1, gap: 50 }));
    expect(again[0]?.body).toBe(first[0]?.body);
    expect(app.calls()).toBe(1);
  });
});

describe('clients that leave once the whole body is sent', () => {
  for (const [name, make] of [
    ['Express', () => expressApp([(_req, _res, next) => next()])],
    ['Fastify', () => fastifyApp()],
  ] as const) {
    it(`${name}: the client closes right after its body; the handler ran; the retry does not run it again`, async () => {
      const app = await make();
      const key = newKey();
      const body = json({ amount: 13 });
      await exchange(app.port, [Buffer.concat([Buffer.from(head('/orders', keyed(key), body.length)), body])], {
        count: 1,
        ms: 1,
      });
      await new Promise((r) => setTimeout(r, 100));
      const ranFirst = app.calls();
      const retry = finals(await exchange(app.port, [head('/orders', keyed(key), body.length), body], { count: 1 }));
      expect(retry.map((r) => r.status)).toEqual([201]);
      // Either the first never ran (left before the decision) or it ran once and is replayed.
      expect(app.calls()).toBe(1);
      expect(ranFirst <= 1).toBe(true);
    });
  }
});

describe('Fastify: watched and teed bodies hash alike', () => {
  it('property: a body watched on one try and teed on the retry (an async hook let it buffer) replays', async () => {
    const app = await fastifyApp((f) =>
      f.addHook('onRequest', async (request) => {
        const ms = Number(request.headers['x-delay'] ?? 0);
        if (ms > 0) await new Promise((r) => setTimeout(r, ms));
      }),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 70_000 }),
        fc.integer({ min: 1, max: 4 }),
        fc.constantFrom(0, 30),
        fc.constantFrom(0, 30),
        async (size, parts, delayFirst, delayRetry) => {
          const key = newKey();
          const body = json({ p: 'w'.repeat(size) });
          const pieces = Array.from({ length: parts }, (_, i) =>
            body.subarray(Math.floor((i * body.length) / parts), Math.floor(((i + 1) * body.length) / parts)),
          );
          const h = (ms: number) => [...keyed(key), `X-Delay: ${ms}`];
          const before = app.calls();
          const first = finals(
            await exchange(app.port, [head('/orders', h(delayFirst), body.length), ...pieces], { count: 1, gap: 5 }),
          );
          expect(first.map((r) => r.status)).toEqual([201]);
          const again = finals(
            await exchange(
              app.port,
              [Buffer.concat([Buffer.from(head('/orders', h(delayRetry), body.length)), body])],
              {
                count: 1,
              },
            ),
          );
          expect(again[0]?.status).toBe(201);
          expect(again[0]?.body).toBe(first[0]?.body);
          expect(app.calls()).toBe(before + 1);
        },
      ),
      { numRuns: 20 },
    );
  }, 60_000);
});
