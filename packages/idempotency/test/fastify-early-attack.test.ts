import { spawnSync } from 'node:child_process';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect as h2connect } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { createBus } from '@holdfast/core';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/fastify.js';
import { memoryStore } from '../src/index.js';
import { closeAll, closers } from './http-support/body-apps.js';
import { type Answer, Conn } from './http-support/conn.js';

// An outsider's attack on the replay answered from preParsing (before Fastify parses the body),
// against real sockets. What must hold: a replay is the first response's status, headers and
// bytes; nothing Fastify or the app would check before the handler is skipped; nothing hangs; the
// early path claims and releases nothing; and where it must not apply, it does not.

afterEach(closeAll);

/** A Fastify app, closed after the test. */
function fastify(options: Record<string, unknown> = {}): FastifyInstance {
  const app = Fastify(options);
  closers.push(() => app.close());
  return app;
}

/** Listens on a free loopback port. */
async function listen(app: FastifyInstance): Promise<number> {
  await app.listen({ port: 0, host: '127.0.0.1' });
  return (app.server.address() as AddressInfo).port;
}

interface Counts {
  parsed: number;
  handled: number;
}

type Setup = (app: FastifyInstance) => void | Promise<void>;

async function start(
  options: {
    before?: Setup;
    after?: Setup;
    plugin?: Record<string, unknown>;
    fastify?: Record<string, unknown>;
    route?: Record<string, unknown>;
  } = {},
): Promise<{ port: number; counts: Counts; app: FastifyInstance }> {
  const app = fastify(options.fastify);
  const counts: Counts = { parsed: 0, handled: 0 };
  counting(app, counts);
  await options.before?.(app);
  await app.register(idempotency, {
    store: memoryStore(),
    scope: 'global',
    replayHeaders: ['x-order'],
    ...options.plugin,
  });
  app.post('/orders', options.route ?? {}, async (_request, reply) => {
    counts.handled++;
    return reply.code(201).header('x-order', `o-${counts.handled}`).send({ id: counts.handled, note: 'ok' });
  });
  await options.after?.(app);
  return { port: await listen(app), counts, app };
}

/**
 * Requests whose body Fastify's own JSON parser parsed, counted once answered: a replay answered
 * early is never parsed. (A parser of the app's own turns the early answer off.)
 */
function counting(app: FastifyInstance, counts: Counts): void {
  app.addHook('onResponse', async (request) => {
    if (request.body !== undefined) counts.parsed++;
  });
}

function head(key: string, length: number, extra = '', path = '/orders', method = 'POST'): string {
  return (
    `${method} ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nIdempotency-Key: ${key}\r\n` +
    `Content-Length: ${length}\r\n${extra}\r\n`
  );
}

function request(key: string, body: string, extra = ''): string {
  return head(key, Buffer.byteLength(body), extra) + body;
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function withReplayed(headers: string | undefined): string {
  return [...(headers ?? '').split('\n'), 'idempotent-replayed: true'].sort().join('\n');
}

/** The first response of `key` over its own connection. */
async function first(port: number, key: string, body: string, extra = ''): Promise<Answer> {
  const conn = new Conn(port);
  conn.write(request(key, body, extra));
  const [answer] = await conn.until(1);
  conn.end();
  return answer as Answer;
}

/** One request over its own connection: its head, a pause, then its body; its answer. */
async function headThenBody(port: number, text: string, body: string | Buffer, heads = false): Promise<Answer> {
  const conn = new Conn(port, heads);
  conn.write(text);
  await pause(10);
  // In pieces of 1000 bytes, as a slow client sends them.
  for (let at = 0; at < body.length; at += 1000) conn.socket.write(body.slice(at, at + 1000));
  const [answer] = await conn.until(1);
  conn.end();
  return answer as Answer;
}

const BODY = '{"amount":4200,"currency":"eur","customer":"cus_1"}';

describe('Fastify early replay: pipelined and odd framings', () => {
  it('answers a pipelined replay, a first request and a replay on one keep-alive connection in order, each byte-identical', async () => {
    const { port, counts } = await start();
    const once = await first(port, 'p-1', BODY);
    const conn = new Conn(port);
    // All three in one write, then a replay whose body comes after a pause, with the next head.
    conn.write(request('p-1', BODY) + request('p-2', BODY) + request('p-1', BODY) + head('p-1', BODY.length));
    await pause(30);
    conn.write(BODY.slice(0, 10));
    await pause(30);
    conn.write(`${BODY.slice(10)}${request('p-2', BODY)}`);
    const answers = await conn.until(5);
    conn.end();
    expect(answers.map((a) => a.status)).toEqual([201, 201, 201, 201, 201]);
    for (const i of [0, 2, 3]) {
      expect(answers[i]?.body).toBe(once.body);
      expect(answers[i]?.headers).toBe(withReplayed(once.headers));
    }
    expect(answers[1]?.body).toBe('{"id":2,"note":"ok"}');
    expect(answers[4]?.body).toBe(answers[1]?.body);
    expect(answers[4]?.headers).toBe(withReplayed(answers[1]?.headers));
    // Only the two first requests were parsed: every replay was answered before.
    expect(counts).toEqual({ parsed: 2, handled: 2 });
  });

  it('replays after an Expect: 100-continue, the 100 first, then the same bytes', async () => {
    const { port, counts } = await start();
    const once = await first(port, 'e-1', BODY);
    const conn = new Conn(port);
    conn.write(head('e-1', BODY.length, 'Expect: 100-continue\r\n'));
    const [cont] = await conn.until(1);
    expect(cont?.status).toBe(100);
    conn.write(BODY);
    const answers = await conn.until(2);
    conn.end();
    expect(answers[1]?.body).toBe(once.body);
    expect(answers[1]?.headers).toBe(withReplayed(once.headers));
    expect(counts).toEqual({ parsed: 1, handled: 1 });
  });

  it('a body longer than its Content-Length: the declared bytes replay, the rest is a bad next request', async () => {
    const { port, counts } = await start();
    const once = await first(port, 'l-1', BODY);
    const conn = new Conn(port);
    conn.write(head('l-1', BODY.length));
    await pause(20);
    conn.write(`${BODY}garbage that is no request\r\n\r\n`);
    const answers = await conn.until(2);
    conn.end();
    expect(answers[0]?.body).toBe(once.body);
    expect(answers[0]?.headers).toBe(withReplayed(once.headers));
    expect(answers[1]?.status ?? 400).toBe(400);
    expect(counts).toEqual({ parsed: 1, handled: 1 });
  });

  it('a body shorter than its Content-Length, the next request filling it: no replay, no run, no hang', async () => {
    const bus = createBus();
    const replays: string[] = [];
    bus.on('idempotency.replay', (event) => replays.push(event.key));
    const { port, counts } = await start({ plugin: { bus } });
    await first(port, 's-1', BODY);
    const conn = new Conn(port);
    conn.write(head('s-1', BODY.length + 20));
    await pause(20);
    conn.write(BODY + request('s-2', BODY));
    // The first request's bytes fill the replay's body: a body that differs (422, or Fastify's
    // 400 for what it cannot parse), then whatever is left of the second is a bad request.
    const answers = await conn.until(1);
    conn.end();
    expect([400, 422]).toContain(answers[0]?.status);
    expect(replays).toEqual([]);
    expect(counts.handled).toBe(1);
  });
});

describe('Fastify early replay: sizes, untyped and HEAD responses, a slow response ahead', () => {
  it("replays bodies of 1 byte and one under, at and one past the request stream's buffer byte for byte (early only under it)", async () => {
    let parsedRaw = 0;
    let handled = 0;
    const app = fastify({ bodyLimit: 1 << 20 });
    // Fastify's own text parser (an app's own turns the early answer off), its calls counted.
    app.addHook('onResponse', async (request) => {
      if (request.body !== undefined) parsedRaw++;
    });
    await app.register(idempotency, { store: memoryStore(), scope: 'global' });
    app.post('/blob', async (request, reply) => {
      handled++;
      const body = request.body as string;
      return reply
        .code(201)
        .type('text/plain; charset=utf-8')
        .send(`${body.length}:${Buffer.from(body.slice(-3)).toString('hex')}`);
    });
    const port = await listen(app);
    const mark = (await new Promise<number>((resolve) => {
      app.server.once('request', (req: IncomingMessage) => resolve(req.readableHighWaterMark));
      void first(port, 'none', '');
    })) as number;
    const send = (key: string, bytes: Buffer) =>
      headThenBody(
        port,
        `POST /blob HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nIdempotency-Key: ${key}\r\nContent-Length: ${bytes.length}\r\n\r\n`,
        bytes,
      );
    const sizes = [1, mark - 1, mark, mark + 1];
    for (const size of sizes) {
      const bytes = Buffer.alloc(size, 0x61 + (size % 26));
      bytes[size - 1] = 0x7a;
      const once = await send(`size-${size}`, bytes);
      const before = parsedRaw;
      const replay = await send(`size-${size}`, bytes);
      expect(once.status).toBe(201);
      expect(replay.body).toBe(once.body);
      expect(replay.headers).toBe(withReplayed(once.headers));
      // Parsed again only where the body does not fit the buffer (the usual way).
      expect(parsedRaw - before).toBe(size < mark ? 0 : 1);
      // One byte changed: the usual way, 422.
      bytes[0] = (bytes[0] as number) ^ 1;
      expect((await send(`size-${size}`, bytes)).status).toBe(422);
    }
    expect(handled).toBe(sizes.length);
  });

  it('replays a response stored without a content type (hijacked) with none', async () => {
    let handled = 0;
    const app = fastify();
    await app.register(idempotency, { store: memoryStore(), scope: 'global' });
    app.post('/raw', (_request, reply) => {
      handled++;
      reply.hijack();
      reply.raw.writeHead(201, { 'content-length': '5' });
      reply.raw.end('hello');
    });
    const port = await listen(app);
    const send = () => headThenBody(port, head('raw-1', BODY.length, '', '/raw'), BODY);
    const once = await send();
    const replays = [await send(), await send()];
    expect(once.headers).toBe('content-length: 5');
    for (const replay of replays) {
      expect(replay.body).toBe('hello');
      expect(replay.headers).toBe(withReplayed(once.headers));
    }
    expect(handled).toBe(1);
  });

  it('a HEAD with a body (HEAD guarded) replays its first answer early, as the usual way would', async () => {
    let handled = 0;
    const app = fastify();
    await app.register(idempotency, { store: memoryStore(), scope: 'global', methods: ['GET', 'HEAD'] });
    app.get('/report', async (_request, reply) => {
      handled++;
      return reply.code(200).send({ report: handled });
    });
    const port = await listen(app);
    const send = () => headThenBody(port, head('head-1', BODY.length, '', '/report', 'HEAD'), BODY, true);
    const once = await send();
    const replay = await send();
    expect(once.status).toBe(200);
    expect(replay.status).toBe(200);
    expect(replay.headers).toBe(withReplayed(once.headers));
    expect(handled).toBe(1);
  });

  it('a replay pipelined behind a slow first request on its connection waits its turn, then goes whole', async () => {
    const { port, counts } = await start({
      before: (app) => {
        app.addHook('onSend', async (request) => {
          if (request.headers['idempotency-key'] === 'slow-2' && request.body !== undefined) await pause(100);
        });
      },
    });
    const once = await first(port, 'slow-1', BODY);
    const conn = new Conn(port);
    conn.write(request('slow-2', BODY) + head('slow-1', BODY.length));
    await pause(20);
    conn.write(BODY);
    const answers = await conn.until(2);
    conn.end();
    expect(answers[0]?.body).toBe('{"id":2,"note":"ok"}');
    expect(answers[0]?.headers).not.toContain('idempotent-replayed');
    expect(answers[1]?.body).toBe(once.body);
    expect(answers[1]?.headers).toBe(withReplayed(once.headers));
    expect(counts).toEqual({ parsed: 2, handled: 2 });
  });
});

describe('Fastify early replay: the record changes while the body comes', () => {
  it('runs the handler once more when the record expires between the head and the end of the body', async () => {
    const { port, counts } = await start({ plugin: { ttlMs: 150 } });
    const once = await first(port, 't-1', BODY);
    const conn = new Conn(port);
    conn.write(head('t-1', BODY.length));
    await pause(300);
    conn.write(BODY);
    const [answer] = await conn.until(1);
    conn.end();
    expect(answer?.status).toBe(201);
    expect(answer?.headers).not.toContain('idempotent-replayed');
    expect(answer?.body).toBe('{"id":2,"note":"ok"}');
    expect(once.body).toBe('{"id":1,"note":"ok"}');
    expect(counts).toEqual({ parsed: 2, handled: 2 });
  });

  it('runs the handler once more when the record is evicted between the head and the end of the body', async () => {
    const store = memoryStore({ maxEntries: 1 });
    const { port, counts } = await start({ plugin: { store } });
    await first(port, 'v-1', BODY);
    const conn = new Conn(port);
    conn.write(head('v-1', BODY.length));
    await pause(20);
    // Another key takes the only place.
    expect((await first(port, 'v-2', BODY)).status).toBe(201);
    conn.write(BODY);
    const [answer] = await conn.until(1);
    conn.end();
    expect(answer?.headers).not.toContain('idempotent-replayed');
    expect(counts.handled).toBe(3);
    // That run stored its response: the next is its replay.
    const again = await first(port, 'v-1', BODY);
    expect(again.body).toBe(answer?.body);
    expect(again.headers).toBe(withReplayed(answer?.headers));
    expect(counts).toEqual({ parsed: 3, handled: 3 });
  });
});

describe('Fastify early replay: nothing the app checks before the handler is skipped', () => {
  it('validates a route schema for the headers on a replay: a request Fastify refuses gets its 400, not the stored response', async () => {
    const { port, counts } = await start({
      route: {
        schema: {
          headers: {
            type: 'object',
            properties: { 'x-tenant': { type: 'string', pattern: '^t-[0-9]+$' } },
            required: ['x-tenant'],
          },
        },
      },
    });
    const once = await first(port, 'h-1', BODY, 'X-Tenant: t-1\r\n');
    expect(once.status).toBe(201);
    const replay = await first(port, 'h-1', BODY, 'X-Tenant: t-1\r\n');
    expect(replay.body).toBe(once.body);
    // The same key and bytes, without the header the route requires, or with one it refuses.
    const missing = await first(port, 'h-1', BODY);
    const refused = await first(port, 'h-1', BODY, 'X-Tenant: nobody\r\n');
    expect(missing.status).toBe(400);
    expect(refused.status).toBe(400);
    expect(missing.body).not.toBe(once.body);
    expect(counts.handled).toBe(1);
  });

  it('a body schema (a function of the bytes fingerprinted) still replays', async () => {
    const { port, counts } = await start({
      route: {
        schema: { body: { type: 'object', required: ['amount'], properties: { amount: { type: 'integer' } } } },
      },
    });
    const once = await first(port, 'b-1', BODY);
    const replay = await first(port, 'b-1', BODY);
    expect(replay.body).toBe(once.body);
    expect(replay.headers).toBe(withReplayed(once.headers));
    expect(counts).toEqual({ parsed: 1, handled: 1 });
  });

  it('an onRequest hook that answers itself answers the replay; one that is async and passes lets it replay', async () => {
    const bus = createBus();
    const replays: string[] = [];
    bus.on('idempotency.replay', (event) => replays.push(event.key));
    const { port, counts } = await start({
      plugin: { bus },
      before: (app) => {
        app.addHook('onRequest', async (request, reply) => {
          await pause(5);
          if (request.headers.authorization !== 'Bearer ok') return reply.code(401).send({ error: 'who?' });
        });
      },
    });
    const auth = 'Authorization: Bearer ok\r\n';
    const once = await first(port, 'o-1', BODY, auth);
    // The body after the hook resolved (early path) and with the head (buffered while it awaited).
    const conn = new Conn(port);
    conn.write(head('o-1', BODY.length, auth));
    await pause(40);
    conn.write(BODY);
    const [late] = await conn.until(1);
    conn.end();
    const together = await first(port, 'o-1', BODY, auth);
    // Half the body buffered while the hook awaited, the rest after: put back, the rest awaited.
    const split = new Conn(port);
    split.write(head('o-1', BODY.length, auth) + BODY.slice(0, 10));
    await pause(40);
    split.write(BODY.slice(10));
    const [halves] = await split.until(1);
    split.end();
    const stranger = await first(port, 'o-1', BODY);
    for (const replay of [late, together, halves]) {
      expect(replay?.body).toBe(once.body);
      expect(replay?.headers).toBe(withReplayed(once.headers));
    }
    expect(stranger.status).toBe(401);
    expect(replays).toEqual(['o-1', 'o-1', 'o-1']);
    // Each replay answered before parsing: the body that came after the hook resolved, and one
    // buffered (whole, or half) while it awaited.
    expect(counts).toEqual({ parsed: 1, handled: 1 });
    // Another body under the key, buffered while the hook awaited: parsed, and its 422.
    const other = await first(port, 'o-1', BODY.replace('1', '2'), auth);
    expect(other.status).toBe(422);
    expect(counts).toEqual({ parsed: 2, handled: 1 });
  });

  it("a streaming content-type parser (multipart-like) on the route: replays the first response's bytes", async () => {
    let handled = 0;
    const app = fastify();
    await app.register(idempotency, { store: memoryStore(), scope: 'global' });
    app.addContentTypeParser('application/x-upload', (_request, _payload, done) => done(null));
    app.post('/upload', async (request, reply) => {
      let size = 0;
      for await (const chunk of request.raw) size += (chunk as Buffer).length;
      handled++;
      return reply.code(201).send({ size, handled });
    });
    const port = await listen(app);
    const body = 'x'.repeat(3000);
    const upload = head('u-1', body.length, '', '/upload').replace('application/json', 'application/x-upload');
    const send = () => headThenBody(port, upload, body);
    const once = await send();
    const replay = await send();
    expect(once.body).toBe('{"size":3000,"handled":1}');
    expect(replay.body).toBe(once.body);
    expect(replay.headers).toBe(withReplayed(once.headers));
    expect(handled).toBe(1);
  });
});

describe("Fastify early replay: the server's timeouts", () => {
  // Fastify's handlerTimeout (100 ms) answers a replay whose body is awaited; the body comes after.
  // What must hold: that 503 alone, no replay event, no second send ('Reply was already sent').
  const timedOut = async (key: string, declared: number, before: string, after: string) => {
    const bus = createBus();
    const replays: string[] = [];
    bus.on('idempotency.replay', (event) => replays.push(event.key));
    const warnings: string[] = [];
    const { port, counts } = await start({
      plugin: { bus },
      fastify: {
        handlerTimeout: 100,
        logger: { level: 'warn', stream: { write: (line: string) => void warnings.push(line) } },
      },
    });
    expect((await first(port, key, BODY)).status).toBe(201);
    const conn = new Conn(port);
    conn.write(head(key, declared) + before);
    const [timeout] = await conn.until(1);
    expect(timeout?.status).toBe(503);
    conn.write(after);
    await pause(50);
    conn.end();
    expect(conn.answers.length).toBe(1);
    expect(replays).toEqual([]);
    expect(warnings.filter((line) => /already sent/i.test(line))).toEqual([]);
    expect(counts).toEqual({ parsed: 1, handled: 1 });
  };

  it('handlerTimeout answering while the whole body is awaited', async () => {
    await timedOut('ht-1', BODY.length, '', BODY);
  });

  it('handlerTimeout answering mid-body, the rest dropped by Node: what came matches a stored body, and still no replay goes', async () => {
    // Declared 10 bytes longer: the stored body's bytes come first, the rest after the 503, when
    // Node drops a body nobody reads (it pushes only its end).
    await timedOut('ht-2', BODY.length + 10, BODY, '0123456789');
  });

  it('requestTimeout closing a connection whose body never ends: no replay, no run, and app.close() returns', async () => {
    const bus = createBus();
    const replays: string[] = [];
    bus.on('idempotency.replay', (event) => replays.push(event.key));
    const { port, counts, app } = await start({
      plugin: { bus },
      fastify: {
        serverFactory: (handler: (req: IncomingMessage, res: ServerResponse) => void) =>
          createServer({ requestTimeout: 300, headersTimeout: 200, connectionsCheckingInterval: 50 }, handler),
      },
    });
    await first(port, 'rt-1', BODY);
    const conn = new Conn(port);
    conn.write(head('rt-1', BODY.length) + BODY.slice(0, 5));
    const answers = await conn.until(1);
    expect(answers[0]?.status ?? 408).toBe(408);
    await conn.until(2);
    expect(conn.closed).toBe(true);
    expect(replays).toEqual([]);
    expect(counts.handled).toBe(1);
    // Closed here, not left to the end of the test: it returns.
    await app.close();
  });

  it('a chunked body with a Content-Length too (insecureHTTPParser) longer than the buffer is not held: Fastify answers it', async () => {
    const { port, counts } = await start({ fastify: { insecureHTTPParser: true } });
    const once = await first(port, 'te-1', BODY);
    expect(once.status).toBe(201);
    const conn = new Conn(port);
    conn.write(head('te-1', BODY.length, 'Transfer-Encoding: chunked\r\n'));
    // 40 KiB in chunks: past the request stream's buffer, which then stops reading the socket.
    const piece = 'x'.repeat(4096);
    for (let i = 0; i < 10; i++) conn.write(`${piece.length.toString(16)}\r\n${piece}\r\n`);
    conn.write('0\r\n\r\n');
    const answers = await conn.until(1);
    conn.end();
    expect(answers[0]?.status).toBeGreaterThanOrEqual(400);
    expect(answers[0]?.headers ?? '').not.toContain('idempotent-replayed');
    expect(counts.handled).toBe(1);
  });
});

describe('Fastify early replay: where it must not apply, and who listens', () => {
  it('app.inject and HTTP/2 take the usual way (the body is parsed), and replay the same bytes', async () => {
    const { app, counts } = await start();
    const inject = () =>
      app.inject({
        method: 'POST',
        url: '/orders',
        headers: { 'content-type': 'application/json', 'idempotency-key': 'i-1' },
        payload: BODY,
      });
    const once = await inject();
    const replay = await inject();
    expect(replay.body).toBe(once.body);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(counts).toEqual({ parsed: 2, handled: 1 });

    const h2 = await start({ fastify: { http2: true } });
    const client = h2connect(`http://127.0.0.1:${h2.port}`);
    const post = () =>
      new Promise<{ headers: Record<string, unknown>; body: string }>((resolve, reject) => {
        const stream = client.request({
          ':method': 'POST',
          ':path': '/orders',
          'content-type': 'application/json',
          'content-length': String(BODY.length),
          'idempotency-key': 'h2-1',
        });
        let body = '';
        let headers: Record<string, unknown> = {};
        stream.on('response', (h) => {
          headers = h;
        });
        stream.setEncoding('utf8');
        stream.on('data', (d: string) => {
          body += d;
        });
        stream.on('end', () => resolve({ headers, body }));
        stream.on('error', reject);
        stream.end(BODY);
      });
    try {
      const h2once = await post();
      const h2replay = await post();
      expect(h2replay.body).toBe(h2once.body);
      expect(h2replay.headers['idempotent-replayed']).toBe('true');
      expect(h2.counts).toEqual({ parsed: 2, handled: 1 });
    } finally {
      client.close();
    }
  });

  it("a listener on 'idempotency.replay' that throws: the replay still goes, and the listener is told once", async () => {
    const bus = createBus();
    let told = 0;
    bus.on('idempotency.replay', () => {
      told++;
      throw new Error('exporter down');
    });
    const { port, counts } = await start({ plugin: { bus } });
    const once = await first(port, 'x-1', BODY);
    const replay = await first(port, 'x-1', BODY);
    expect(replay.body).toBe(once.body);
    expect(replay.headers).toBe(withReplayed(once.headers));
    expect(told).toBe(1);
    expect(counts).toEqual({ parsed: 1, handled: 1 });
  });

  it('two apps in one process, and the source (ESM) and CommonJS build registered one inside the other: same replays', async () => {
    const a = await start();
    const b = await start();
    for (const { port, counts } of [a, b]) {
      const once = await first(port, 'two-1', BODY);
      const replay = await first(port, 'two-1', BODY);
      expect(replay.body).toBe(once.body);
      expect(replay.headers).toBe(withReplayed(once.headers));
      expect(counts.handled).toBe(1);
    }

    // Both builds as a user loads them (a child process: no source condition), one inside the
    // other on one route, then each alone in its own context of one app.
    const script = `
      import { createRequire } from 'node:module';
      import { spawnSync } from 'node:child_process';
      import Fastify from 'fastify';
      import { idempotency as esm } from './dist/fastify.js';
      import { memoryStore } from './dist/index.js';
      const cjs = createRequire(import.meta.url)('./dist/fastify.cjs').idempotency;
      const out = [];
      for (const [outer, inner] of [[esm, cjs], [cjs, esm], [esm, undefined], [cjs, undefined]]) {
        const app = Fastify();
        let handled = 0;
        let parsed = 0;
        // Fastify's own parser (an app's own turns the early answer off): bodies parsed, counted.
        app.addHook('onResponse', async (request) => {
          if (request.body !== undefined) parsed++;
        });
        await app.register(outer, { store: memoryStore(), scope: 'global' });
        await app.register(async (child) => {
          if (inner) await child.register(inner, { store: memoryStore(), scope: 'global' });
          child.post('/orders', async (_q, reply) => reply.code(201).send({ id: ++handled }));
        });
        const url = await app.listen({ port: 0, host: '127.0.0.1' });
        const answers = [];
        for (let i = 0; i < 3; i++) {
          const res = await fetch(url + '/orders', {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'idempotency-key': 'copies-1' },
            body: ${JSON.stringify(BODY)},
          });
          answers.push([res.status, res.headers.get('content-type'), res.headers.get('idempotent-replayed'), await res.text()]);
        }
        await app.close();
        out.push({ answers, handled, parsed });
      }
      console.log(JSON.stringify(out));
    `;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: resolve(import.meta.dirname, '..'),
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(child.stderr).toBe('');
    const runs = JSON.parse(child.stdout) as { answers: unknown[][]; handled: number; parsed: number }[];
    const once = [201, 'application/json; charset=utf-8', null, '{"id":1}'];
    const replay = [201, 'application/json; charset=utf-8', 'true', '{"id":1}'];
    // Nested: two hooks of each kind on the route, the usual way (parsed each time). Alone: early.
    expect(runs).toEqual([
      { answers: [once, replay, replay], handled: 1, parsed: 3 },
      { answers: [once, replay, replay], handled: 1, parsed: 3 },
      { answers: [once, replay, replay], handled: 1, parsed: 1 },
      { answers: [once, replay, replay], handled: 1, parsed: 1 },
    ]);
  });
});
