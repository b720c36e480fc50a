import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect as h2connect } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { createBus } from '@holdfast/core';
import fc from 'fast-check';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { type FastifyIdempotencyOptions, idempotency } from '../src/fastify.js';
import { memoryStore, redisStore } from '../src/index.js';
import { accountScope, authenticateByApiKey } from './http-support/account.js';
import { type Answer, Conn } from './http-support/conn.js';
import { useRedisServer } from './redis.js';

// An outsider's attack on `scopeAt: 'preParsing'` and on the early replay of a body buffered while
// an async onRequest hook awaited, over real sockets (app.inject never takes the early path). What
// must hold: one caller never gets another's stored response, a key's handler runs once a caller,
// another body under a key gets 422, and bad input gets a 4xx or the app's own error, never a hang.

const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Counts {
  /** Requests whose body Fastify parsed: an early replay is never parsed. */
  parsed: number;
  handled: number;
  scoped: number;
}

interface Setup {
  plugin?: Partial<FastifyIdempotencyOptions>;
  route?: Record<string, unknown>;
  fastify?: Record<string, unknown>;
  /** How long the authentication in onRequest awaits: a body sent with the head is buffered meanwhile. */
  authMs?: number;
  /** How long the handler takes. */
  handlerMs?: number;
  /** Run once the plugin is registered (hooks of the app's own after it). */
  after?: (app: FastifyInstance) => void;
}

/**
 * An async authentication in onRequest (x-api-key names the account), the plugin with a scope
 * that reads it, asked in preParsing, then POST /orders answering `{ id, account }`.
 */
async function start(setup: Setup = {}): Promise<{ app: FastifyInstance; port: number; counts: Counts }> {
  const app = Fastify(setup.fastify);
  apps.push(app);
  const counts: Counts = { parsed: 0, handled: 0, scoped: 0 };
  // Counted in onSend, before the client has its answer.
  app.addHook('onSend', async (request) => {
    if (request.body !== undefined) counts.parsed++;
  });
  authenticateByApiKey(app, 'onRequest', setup.authMs ?? 20);
  await app.register(idempotency, {
    store: memoryStore(),
    scope: accountScope(counts),
    scopeAt: 'preParsing',
    ...setup.plugin,
  });
  setup.after?.(app);
  app.post('/orders', { config: { idempotency: setup.route ?? true } }, async (request, reply) => {
    counts.handled++;
    const id = counts.handled;
    if (setup.handlerMs !== undefined) await pause(setup.handlerMs);
    return reply.code(201).send({ id, account: request.account });
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  return { app, port: (app.server.address() as AddressInfo).port, counts };
}

const BODY = '{"amount":4200,"currency":"eur"}';

function head(account: string | undefined, key: string, length: number, extra = ''): string {
  return (
    'POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
    (account === undefined ? '' : `X-Api-Key: ${account}\r\n`) +
    `Idempotency-Key: ${key}\r\nContent-Length: ${length}\r\n${extra}\r\n`
  );
}

function request(account: string | undefined, key: string, body: string, extra = ''): string {
  return head(account, key, Buffer.byteLength(body), extra) + body;
}

/** One request, head and body in one write (so the body is buffered while onRequest awaits). */
async function send(port: number, account: string | undefined, key: string, body = BODY): Promise<Answer> {
  const conn = new Conn(port);
  conn.write(request(account, key, body));
  const [answer] = await conn.until(1);
  conn.end();
  return answer ?? { status: 0, headers: '', replayed: false, body: 'no answer' };
}

const accountOf = (answer: Answer | undefined): unknown => {
  try {
    return (JSON.parse(answer?.body ?? '') as { account?: unknown }).account;
  } catch {
    return undefined;
  }
};

describe("scopeAt: 'preParsing', callers racing on one key", () => {
  it('two callers pipelined on one keep-alive connection, each retrying: each gets only its own response', async () => {
    const { port, counts } = await start({ handlerMs: 30 });
    const conn = new Conn(port);
    conn.write(
      request('alice', 'k-1', BODY) +
        request('bob', 'k-1', BODY) +
        request('alice', 'k-1', BODY) +
        request('bob', 'k-1', BODY),
    );
    const answers = await conn.until(4);
    conn.end();
    expect(answers.map((a) => a.status)).toHaveLength(4);
    const callers = ['alice', 'bob', 'alice', 'bob'];
    answers.forEach((answer, i) => {
      // Its own replay, its own first run, or a 409 while its own first still runs.
      if (answer.status === 409) return;
      expect([answer.status, accountOf(answer)]).toEqual([201, callers[i]]);
    });
    expect(counts.handled).toBe(2);
    // Once both have run, each retry is its own caller's, answered before parsing.
    const parsed = counts.parsed;
    expect(accountOf(await send(port, 'bob', 'k-1'))).toBe('bob');
    expect(accountOf(await send(port, 'alice', 'k-1'))).toBe('alice');
    expect(counts).toMatchObject({ handled: 2, parsed });
  });

  it('interleaved heads and bodies of two callers on two connections (alternating scopes, one key): each its own', async () => {
    const { port, counts } = await start();
    const alice = await send(port, 'alice', 'k-1');
    const bob = await send(port, 'bob', 'k-1');
    expect([accountOf(alice), accountOf(bob)]).toEqual(['alice', 'bob']);
    for (let round = 0; round < 3; round++) {
      const a = new Conn(port);
      const b = new Conn(port);
      const c = new Conn(port);
      // Every head is through preParsing before any body comes: the store is asked in turn for
      // alice, bob and carol (who never used the key), then each body completes in the other order.
      a.write(head('alice', 'k-1', BODY.length));
      b.write(head('bob', 'k-1', BODY.length));
      c.write(head(`carol-${round}`, 'k-1', BODY.length));
      await pause(60);
      c.write(BODY);
      b.write(BODY);
      await pause(5);
      a.write(BODY);
      const [[fromA], [fromB], [fromC]] = await Promise.all([a.until(1), b.until(1), c.until(1)]);
      for (const conn of [a, b, c]) conn.end();
      expect([fromA?.replayed, fromA?.body]).toEqual([true, alice.body]);
      expect([fromB?.replayed, fromB?.body]).toEqual([true, bob.body]);
      expect([fromC?.status, fromC?.replayed, accountOf(fromC)]).toEqual([201, false, `carol-${round}`]);
    }
    // The replays were answered before parsing: only the five runs were parsed.
    expect(counts).toMatchObject({ handled: 5, parsed: 5 });
  });

  it("a caller's retry after another caller's request evicted its record runs again as itself, never gets the other's", async () => {
    const { port, counts } = await start({ plugin: { store: memoryStore({ maxEntries: 1 }) } });
    const alice = await send(port, 'alice', 'k-1');
    // Bob's record of the same key and bytes takes the only place.
    const bob = await send(port, 'bob', 'k-1');
    const again = await send(port, 'alice', 'k-1');
    expect([accountOf(alice), accountOf(bob), accountOf(again)]).toEqual(['alice', 'bob', 'alice']);
    expect(again.replayed).toBe(false);
    // Bob's evicted in turn; his retry is his own.
    const bobAgain = await send(port, 'bob', 'k-1');
    expect([bobAgain.status, accountOf(bobAgain)]).toEqual([201, 'bob']);
    expect(counts.handled).toBe(4);
  });

  it("a caller's retry after the records expired runs as itself", async () => {
    const { port, counts } = await start({ plugin: { ttlMs: 100 } });
    await send(port, 'alice', 'k-1');
    await pause(150);
    const bob = await send(port, 'bob', 'k-1');
    const alice = await send(port, 'alice', 'k-1');
    expect([accountOf(bob), bob.replayed, accountOf(alice), alice.replayed]).toEqual(['bob', false, 'alice', false]);
    expect(counts.handled).toBe(3);
  });
});

describe("scopeAt: 'preParsing', a scope that misbehaves", () => {
  for (const [what, scope] of [
    ['returns an empty string', () => ''],
    ['returns a number', () => 42],
    [
      'throws a string',
      () => {
        throw 'nope';
      },
    ],
    [
      'throws undefined',
      () => {
        throw undefined;
      },
    ],
  ] as const) {
    it(`${what}: the request fails, its handler never runs, and the key stays free`, async () => {
      let broken = true;
      const { port, counts } = await start({
        plugin: {
          scope: ((request: FastifyRequest) => (broken ? (scope as () => unknown)() : request.account)) as never,
        },
      });
      const failed = await send(port, 'alice', 'k-1');
      expect(failed.status).toBe(500);
      expect(failed.body).toMatch(/scope/);
      expect(counts.handled).toBe(0);
      broken = false;
      const ok = await send(port, 'alice', 'k-1');
      expect([ok.status, ok.replayed, accountOf(ok)]).toEqual([201, false, 'alice']);
    });
  }

  it('throws an Error with a status synchronously: that status, its handler never runs', async () => {
    const { port, counts } = await start({
      plugin: {
        scope: (request: FastifyRequest) => {
          if (request.account === 'mallory') throw Object.assign(new Error('suspended'), { statusCode: 403 });
          return request.account;
        },
      },
    });
    const refused = await send(port, 'mallory', 'k-1');
    expect(refused.status).toBe(403);
    expect(counts.handled).toBe(0);
  });

  it('returns a promise that settles after the client left: no run, no claim, the next request of the key runs', async () => {
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let calls = 0;
    const { port, counts } = await start({
      plugin: {
        scope: async (request: FastifyRequest) => {
          calls++;
          if (calls === 1) await held;
          return request.account;
        },
      },
    });
    const conn = new Conn(port);
    conn.write(request('alice', 'k-1', BODY));
    await pause(60);
    conn.end();
    await pause(20);
    release();
    await pause(30);
    expect(counts.handled).toBe(0);
    const next = await send(port, 'alice', 'k-1');
    expect([next.status, next.replayed, accountOf(next)]).toEqual([201, false, 'alice']);
    expect(counts.handled).toBe(1);
  });

  it('returns a promise still pending when handlerTimeout answers: that 503 only, no run, the key stays free', async () => {
    let slow = true;
    const { port, counts } = await start({
      fastify: { handlerTimeout: 60 },
      plugin: {
        scope: async (request: FastifyRequest) => {
          if (slow) await pause(200);
          return request.account;
        },
      },
    });
    const conn = new Conn(port);
    conn.write(request('alice', 'k-1', BODY));
    const [timedOut] = await conn.until(1);
    await pause(200);
    conn.end();
    expect([timedOut?.status, conn.answers.length, counts.handled]).toEqual([503, 1, 0]);
    slow = false;
    const next = await send(port, 'alice', 'k-1');
    expect([next.status, next.replayed, accountOf(next)]).toEqual([201, false, 'alice']);
  });

  it('returns a promise that settles after the body ended: the body is fingerprinted whole (another body: 422)', async () => {
    const { port, counts } = await start({
      plugin: {
        scope: async (request: FastifyRequest) => {
          await pause(40);
          return request.account;
        },
      },
    });
    const first = await send(port, 'alice', 'k-1');
    const again = await send(port, 'alice', 'k-1');
    const other = await send(port, 'alice', 'k-1', BODY.replace('4200', '4300'));
    const bob = await send(port, 'bob', 'k-1');
    expect([first.status, again.replayed, again.body, other.status]).toEqual([201, true, first.body, 422]);
    expect(accountOf(bob)).toBe('bob');
    expect(counts.handled).toBe(2);
  });
});

describe('the early replay of a body buffered while onRequest awaited', () => {
  for (const size of [16_383, 16_384, 16_385]) {
    it(`a body of ${size} bytes buffered whole: its caller's replay byte for byte, another caller's own run`, async () => {
      const { port, counts } = await start();
      const body = JSON.stringify({ pad: 'x'.repeat(size - 10) });
      expect(Buffer.byteLength(body)).toBe(size);
      const once = await send(port, 'alice', 'big', body);
      const again = await send(port, 'alice', 'big', body);
      const bob = await send(port, 'bob', 'big', body);
      expect([once.status, again.status, again.replayed, again.body]).toEqual([201, 201, true, once.body]);
      expect([bob.status, bob.replayed, accountOf(bob)]).toEqual([201, false, 'bob']);
      expect(counts.handled).toBe(2);
    });
  }

  it("an Expect: 100-continue whose body comes while onRequest awaits: the 100, then its own caller's replay", async () => {
    const { port, counts } = await start({ authMs: 60 });
    const once = await send(port, 'alice', 'e-1');
    const expecting = async (account: string) => {
      const conn = new Conn(port);
      conn.write(head(account, 'e-1', BODY.length, 'Expect: 100-continue\r\n'));
      await conn.until(1);
      conn.write(BODY);
      const answers = await conn.until(2);
      conn.end();
      return answers;
    };
    const alice = await expecting('alice');
    const bob = await expecting('bob');
    expect(alice.map((a) => [a.status, a.replayed, a.body])).toEqual([
      [100, false, ''],
      [201, true, once.body],
    ]);
    expect(bob.map((a) => [a.status, a.replayed, accountOf(a)])).toEqual([
      [100, false, undefined],
      [201, false, 'bob'],
    ]);
    expect(counts).toMatchObject({ handled: 2, parsed: 2 });
  });

  it('a Content-Length longer than the bytes sent, the client leaving: no replay, no run, the next replay goes', async () => {
    const { port, counts } = await start();
    const once = await send(port, 'alice', 'k-1');
    const conn = new Conn(port);
    conn.write(head('alice', 'k-1', BODY.length + 5) + BODY);
    await pause(80);
    conn.end();
    await pause(20);
    expect(conn.answers).toEqual([]);
    const again = await send(port, 'alice', 'k-1');
    expect([again.replayed, again.body]).toEqual([true, once.body]);
    expect(counts.handled).toBe(1);
  });

  it('a Content-Length shorter than the bytes sent: the rest is a bad next request, answered 400, nothing runs', async () => {
    const { port, counts } = await start();
    const once = await send(port, 'alice', 'k-1');
    const conn = new Conn(port);
    conn.write(`${head('alice', 'k-1', BODY.length)}${BODY}garbage\r\n\r\n`);
    const answers = await conn.until(2);
    conn.end();
    // Node's parser finds the bad request in the same read, while onRequest awaits: its 400
    // closes the connection, and the replay may not be sent at all; never anything but these.
    expect(answers.map((a) => a.status)).toContain(400);
    for (const answer of answers)
      if (answer.status !== 400) expect([answer.replayed, answer.body]).toEqual([true, once.body]);
    expect(counts.handled).toBe(1);
    const again = await send(port, 'alice', 'k-1');
    expect([again.replayed, again.body]).toEqual([true, once.body]);
  });

  it('a body half buffered, the client leaving before the rest: no replay, no run, nothing hangs', async () => {
    const { port, counts } = await start();
    const once = await send(port, 'alice', 'k-1');
    const conn = new Conn(port);
    conn.write(head('alice', 'k-1', BODY.length) + BODY.slice(0, 10));
    await pause(60);
    conn.end();
    await pause(20);
    const again = await send(port, 'alice', 'k-1');
    expect([again.replayed, again.body]).toEqual([true, once.body]);
    expect(counts.handled).toBe(1);
  });

  it('a chunked body buffered: the usual way, its replay and another caller kept apart, another body 422', async () => {
    const { port, counts } = await start();
    const chunked = (account: string, body: string) =>
      'POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
      `X-Api-Key: ${account}\r\nIdempotency-Key: c-1\r\nTransfer-Encoding: chunked\r\n\r\n` +
      `${Buffer.byteLength(body).toString(16)}\r\n${body}\r\n0\r\n\r\n`;
    const sendChunked = async (account: string, body: string) => {
      const conn = new Conn(port);
      conn.write(chunked(account, body));
      const [answer] = await conn.until(1);
      conn.end();
      return answer;
    };
    const once = await sendChunked('alice', BODY);
    const again = await sendChunked('alice', BODY);
    const bob = await sendChunked('bob', BODY);
    const other = await sendChunked('alice', BODY.replace('eur', 'usd'));
    expect([again?.replayed, again?.body]).toEqual([true, once?.body]);
    expect([bob?.replayed, accountOf(bob)]).toEqual([false, 'bob']);
    expect(other?.status).toBe(422);
    expect(counts.handled).toBe(2);
  });

  it('pipelined replays of two callers and a first request, all buffered in one write: in order, each its own', async () => {
    const { port, counts } = await start();
    const alice = await send(port, 'alice', 'k-1');
    const bob = await send(port, 'bob', 'k-1');
    const conn = new Conn(port);
    conn.write(
      request('bob', 'k-1', BODY) +
        request('carol', 'k-1', BODY) +
        request('alice', 'k-1', BODY) +
        request('bob', 'k-1', BODY),
    );
    const answers = await conn.until(4);
    // The connection is still usable after: one more replay on it.
    conn.write(request('alice', 'k-1', BODY));
    await conn.until(5);
    conn.end();
    expect(answers.map((a) => [a.replayed, accountOf(a)])).toEqual([
      [true, 'bob'],
      [false, 'carol'],
      [true, 'alice'],
      [true, 'bob'],
      [true, 'alice'],
    ]);
    expect(answers[0]?.body).toBe(bob.body);
    expect(answers[2]?.body).toBe(alice.body);
    expect(counts).toMatchObject({ handled: 3, parsed: 3 });
  });

  it('requestTimeout closing a connection whose buffered body never ends: no answer but its 408, no run, app.close() returns', async () => {
    const { app, port, counts } = await start({
      fastify: {
        serverFactory: (handler: (req: IncomingMessage, res: ServerResponse) => void) =>
          createServer({ requestTimeout: 300, headersTimeout: 200, connectionsCheckingInterval: 50 }, handler),
      },
    });
    const once = await send(port, 'alice', 'k-1');
    const conn = new Conn(port);
    conn.write(head('alice', 'k-1', BODY.length) + BODY.slice(0, 5));
    await conn.until(2);
    expect(conn.closed).toBe(true);
    expect(conn.answers.map((a) => a.status)).not.toContain(201);
    const again = await send(port, 'alice', 'k-1');
    expect([again.replayed, again.body, counts.handled]).toEqual([true, once.body, 1]);
    await app.close();
  });

  it('handlerTimeout answering while half a buffered body waits: that answer only, no run, the next replay goes', async () => {
    const { port, counts } = await start({ fastify: { handlerTimeout: 60 } });
    const once = await send(port, 'alice', 'k-1');
    const conn = new Conn(port);
    conn.write(head('alice', 'k-1', BODY.length) + BODY.slice(0, 10));
    await pause(150);
    conn.write(BODY.slice(10));
    const answers = await conn.until(1);
    await pause(30);
    conn.end();
    expect(answers.map((a) => a.replayed)).not.toContain(true);
    expect(answers.length).toBeLessThanOrEqual(1);
    expect(counts.handled).toBe(1);
    const again = await send(port, 'alice', 'k-1');
    expect([again.replayed, again.body]).toEqual([true, once.body]);
  });
});

describe("scopeAt: 'preParsing' beside other registrations and routes", () => {
  for (const shared of [false, true]) {
    it(`nested registrations (${shared ? 'one store' : 'a store each'}), the outer asking in preParsing and the inner in preHandler: each caller its own, once`, async () => {
      const app = Fastify();
      const outer = memoryStore();
      apps.push(app);
      let handled = 0;
      app.decorateRequest('account', '');
      app.addHook('onRequest', async (request) => {
        await pause(10);
        request.account = String(request.headers['x-api-key']);
      });
      await app.register(idempotency, {
        store: outer,
        scope: (request: FastifyRequest) => request.account,
        scopeAt: 'preParsing',
      });
      await app.register(async (child) => {
        await child.register(idempotency, {
          store: shared ? outer : memoryStore(),
          scope: (request: FastifyRequest) => request.account,
        });
        child.post('/orders', async (request, reply) => {
          handled++;
          return reply.code(201).send({ id: handled, account: request.account });
        });
      });
      await app.listen({ port: 0, host: '127.0.0.1' });
      const port = (app.server.address() as AddressInfo).port;
      const alice = await send(port, 'alice', 'k-1');
      const bob = await send(port, 'bob', 'k-1');
      const again = [await send(port, 'bob', 'k-1'), await send(port, 'alice', 'k-1')];
      expect([accountOf(alice), accountOf(bob)]).toEqual(['alice', 'bob']);
      expect(again.map((a) => [a.replayed, a.body])).toEqual([
        [true, bob.body],
        [true, alice.body],
      ]);
      expect(handled).toBe(2);
    });
  }

  it('a route asking its own scope in preParsing under a global plugin: tenants kept apart there, one space elsewhere', async () => {
    const app = Fastify();
    apps.push(app);
    let handled = 0;
    await app.register(idempotency, { store: memoryStore(), scope: 'global' });
    const answer = async (request: FastifyRequest) => {
      handled++;
      return { id: handled, tenant: request.headers['x-tenant'] };
    };
    app.post(
      '/tenant',
      {
        config: {
          idempotency: {
            scope: (request: FastifyRequest) => String(request.headers['x-tenant']),
            scopeAt: 'preParsing',
          },
        },
      },
      answer,
    );
    app.post('/shared', answer);
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as AddressInfo).port;
    const post = async (path: string, tenant: string) => {
      const conn = new Conn(port);
      conn.write(
        `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Tenant: ${tenant}\r\n` +
          `Idempotency-Key: k-1\r\nContent-Length: ${BODY.length}\r\n\r\n${BODY}`,
      );
      const [got] = await conn.until(1);
      conn.end();
      return got;
    };
    const t1 = await post('/tenant', 't1');
    const t2 = await post('/tenant', 't2');
    const t1Again = await post('/tenant', 't1');
    const t2Again = await post('/tenant', 't2');
    expect([t1?.body, t2?.body]).toEqual(['{"id":1,"tenant":"t1"}', '{"id":2,"tenant":"t2"}']);
    expect([t1Again?.replayed, t1Again?.body, t2Again?.replayed, t2Again?.body]).toEqual([
      true,
      t1?.body,
      true,
      t2?.body,
    ]);
    // The shared route: one space, the second tenant gets the first's response (as 'global' says).
    const s1 = await post('/shared', 't1');
    const s2 = await post('/shared', 't2');
    expect([s2?.replayed, s2?.body]).toEqual([true, s1?.body]);
    expect(handled).toBe(3);
  });

  it('app.inject and HTTP/2 take the usual way and keep callers apart', async () => {
    const bus = createBus();
    const { app, counts } = await start({ plugin: { bus }, fastify: {} });
    const injected = async (account: string) =>
      app.inject({
        method: 'POST',
        url: '/orders',
        headers: { 'content-type': 'application/json', 'x-api-key': account, 'idempotency-key': 'i-1' },
        payload: BODY,
      });
    const a = await injected('alice');
    const b = await injected('bob');
    const a2 = await injected('alice');
    expect([a.json().account, b.json().account]).toEqual(['alice', 'bob']);
    expect([a2.headers['idempotent-replayed'], a2.body]).toEqual(['true', a.body]);
    expect(counts).toMatchObject({ handled: 2, parsed: 3 });

    // Closed first: with two apps open, no request is answered early anyway.
    await apps.pop()?.close();
    const h2 = await start({ fastify: { http2: true } });
    const session = h2connect(`http://127.0.0.1:${h2.port}`);
    const h2post = (account: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const stream = session.request({
          ':method': 'POST',
          ':path': '/orders',
          'content-type': 'application/json',
          'x-api-key': account,
          'idempotency-key': 'h-1',
        });
        let status = 0;
        let body = '';
        stream.on('response', (headers) => {
          status = Number(headers[':status']);
        });
        stream.setEncoding('utf8');
        stream.on('data', (d: string) => {
          body += d;
        });
        stream.on('end', () => resolve({ status, body }));
        stream.on('error', reject);
        stream.end(BODY);
      });
    const h = [await h2post('alice'), await h2post('bob'), await h2post('alice'), await h2post('bob')];
    session.close();
    expect(h.map((r) => [r.status, JSON.parse(r.body).account])).toEqual([
      [201, 'alice'],
      [201, 'bob'],
      [201, 'alice'],
      [201, 'bob'],
    ]);
    expect([h[2]?.body, h[3]?.body]).toEqual([h[0]?.body, h[1]?.body]);
    expect(h2.counts).toMatchObject({ handled: 2, parsed: 4 });
  });
});

describe("scopeAt: 'preParsing' over any sequence of callers, keys, bodies and deliveries (property)", () => {
  it('gives each caller its own answer, runs a key once a caller, 422s another body, and answers replays unparsed', async () => {
    type Delivery = 'together' | 'late' | 'split';
    const deliver = async (port: number, account: string, key: string, body: string, how: Delivery) => {
      const conn = new Conn(port);
      if (how === 'together') conn.write(request(account, key, body));
      else if (how === 'late') {
        conn.write(head(account, key, Buffer.byteLength(body)));
        await pause(35);
        conn.write(body);
      } else {
        conn.write(head(account, key, Buffer.byteLength(body)) + body.slice(0, 5));
        await pause(35);
        conn.write(body.slice(5));
      }
      const [answer] = await conn.until(1);
      conn.end();
      return answer;
    };
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            // Scopes and keys whose plain joins collide ('a:1' + 'k' and 'a' + '1:k').
            account: fc.constantFrom('a', 'a:1', 'b'),
            key: fc.constantFrom('k', '1:k'),
            body: fc.constantFrom('{"n":1}', '{"n":2}'),
            how: fc.constantFrom<Delivery>('together', 'late', 'split'),
          }),
          { minLength: 1, maxLength: 8 },
        ),
        async (requests) => {
          const { port, counts } = await start({ authMs: 10 });
          const model = new Map<string, { body: string; text: string }>();
          for (const { account, key, body, how } of requests) {
            const parsed = counts.parsed;
            const got = await deliver(port, account, key, body, how);
            const held = model.get(`${account}\0${key}`);
            if (held === undefined) {
              expect([got?.status, got?.replayed, accountOf(got)]).toEqual([201, false, account]);
              model.set(`${account}\0${key}`, { body, text: got?.body ?? '' });
            } else if (held.body === body) {
              expect([got?.status, got?.replayed, got?.body]).toEqual([201, true, held.text]);
              // Answered in preParsing: never parsed.
              expect(counts.parsed).toBe(parsed);
            } else {
              expect(got?.status).toBe(422);
            }
          }
          expect(counts.handled).toBe(model.size);
          await apps.pop()?.close();
        },
      ),
      { numRuns: 20 },
    );
  });
});

describe("scopeAt: 'preParsing', first requests racing", () => {
  it('two callers, each sending one key twice at once on four connections: one run a caller, the twin 409s or replays', async () => {
    const { port, counts } = await start({ handlerMs: 40 });
    const callers = ['alice', 'bob', 'alice', 'bob'];
    const answers = await Promise.all(callers.map((account) => send(port, account, 'k-1')));
    expect(counts.handled).toBe(2);
    answers.forEach((answer, i) => {
      if (answer.status === 409) return;
      expect([answer.status, accountOf(answer)]).toEqual([201, callers[i]]);
    });
    expect(answers.filter((a) => a.status === 201 && !a.replayed)).toHaveLength(2);
  });
});

describe("scopeAt: 'preParsing' on a store that answers later (Redis): no early replay, the same answers", () => {
  const redis = useRedisServer();
  it('keeps two callers of one key and one body apart, and replays each its own', async () => {
    const { port, counts } = await start({ plugin: { store: redisStore({ client: redis.client }) } });
    const alice = await send(port, 'alice', 'r-1');
    const bob = await send(port, 'bob', 'r-1');
    expect([accountOf(alice), accountOf(bob)]).toEqual(['alice', 'bob']);
    const again = [await send(port, 'bob', 'r-1'), await send(port, 'alice', 'r-1')];
    expect(again.map((a) => [a.replayed, a.body])).toEqual([
      [true, bob.body],
      [true, alice.body],
    ]);
    expect((await send(port, 'alice', 'r-1', '{"other":1}')).status).toBe(422);
    // Two a caller; the replays were parsed (decided in preHandler), and the scope asked once each.
    expect(counts).toEqual({ handled: 2, parsed: 5, scoped: 5 });
  });
});

describe('an empty body that came while onRequest awaited, its parsing started after a pause', () => {
  // A chunked body of no bytes (`0\r\n\r\n`, as fetch sends an empty stream), or a Content-Length
  // of `00`, is not Fastify's "no body": it is parsed, by reading the request stream.
  const empty = (account: string, key: string, type: string, framing: 'chunked' | 'length') =>
    `POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: ${type}\r\nX-Api-Key: ${account}\r\n` +
    `Idempotency-Key: ${key}\r\n${framing === 'chunked' ? 'Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n' : 'Content-Length: 00\r\n\r\n'}`;
  const answer = async (port: number, text: string) => {
    const conn = new Conn(port);
    conn.write(text);
    const [got] = await conn.until(1);
    conn.end();
    return got;
  };

  for (const [what, setup] of [
    [
      'a scope that returns a promise',
      {
        plugin: {
          scope: async (request: FastifyRequest) => {
            await pause(5);
            return request.account;
          },
        },
      },
    ],
    [
      "the default scopeAt, and an async preParsing hook of the app's after the plugin",
      {
        plugin: { scopeAt: 'preHandler' },
        after: (app: FastifyInstance) =>
          app.addHook('preParsing', async (_request, _reply, payload) => {
            await pause(5);
            return payload;
          }),
      },
    ],
  ] as const) {
    for (const framing of ['chunked', 'length'] as const) {
      it(`${what}, ${framing === 'chunked' ? 'chunked' : 'Content-Length: 00'}: answered (text runs once then replays, JSON gets 400), never left hanging`, async () => {
        const { port, counts } = await start(setup as Setup);
        const first = await answer(port, empty('alice', 'e-1', 'text/plain', framing));
        const again = await answer(port, empty('alice', 'e-1', 'text/plain', framing));
        const json = await answer(port, empty('alice', 'e-2', 'application/json', framing));
        expect([first?.status, accountOf(first)]).toEqual([201, 'alice']);
        expect([again?.status, again?.replayed, again?.body]).toEqual([201, true, first?.body]);
        expect(json?.status).toBe(400);
        expect(counts.handled).toBe(1);
      });
    }
  }
});

describe('an HTTP/2 request whose empty body ended while onRequest awaited', () => {
  // Its headers without END_STREAM, then an empty DATA frame that ends it (a stream body of no
  // bytes): Fastify parses it, and the plugin must see that it has all come.
  for (const scopeAt of ['preParsing', 'preHandler'] as const) {
    it(`scopeAt: '${scopeAt}': runs once and replays (text), 400 (JSON), never the plugin's 500`, async () => {
      const { port, counts } = await start({ fastify: { http2: true }, plugin: { scopeAt } });
      const session = h2connect(`http://127.0.0.1:${port}`);
      const post = (type: string, key: string) =>
        new Promise<{ status: number; replayed: unknown; body: string }>((resolve, reject) => {
          const stream = session.request(
            {
              ':method': 'POST',
              ':path': '/orders',
              'content-type': type,
              'x-api-key': 'alice',
              'idempotency-key': key,
            },
            { endStream: false },
          );
          let status = 0;
          let replayed: unknown;
          let body = '';
          stream.on('response', (headers) => {
            status = Number(headers[':status']);
            replayed = headers['idempotent-replayed'];
          });
          stream.setEncoding('utf8');
          stream.on('data', (d: string) => {
            body += d;
          });
          stream.on('end', () => resolve({ status, replayed, body }));
          stream.on('error', reject);
          stream.end();
        });
      const first = await post('text/plain', 'h-1');
      const again = await post('text/plain', 'h-1');
      const json = await post('application/json', 'h-2');
      session.close();
      expect([first.status, JSON.parse(first.body).account]).toEqual([201, 'alice']);
      expect([again.status, again.replayed, again.body]).toEqual([201, 'true', first.body]);
      expect(json.status).toBe(400);
      expect(counts.handled).toBe(1);
    });
  }
});
