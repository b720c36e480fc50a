import { once } from 'node:events';
import { type AddressInfo, connect } from 'node:net';
import { createBus } from '@holdfast/core';
import timeout from 'connect-timeout';
import express from 'express';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { idempotency as expressIdempotency } from '../src/express.js';
import { idempotency } from '../src/fastify.js';
import type { IdempotencyStore } from '../src/index.js';
import type { StoreFactory } from './http-support/conformance.js';
import { memoryStores, redisStores } from './http-support/stores.js';

/**
 * A framework's timeout answers 503 while the handler still runs: Fastify's `handlerTimeout`,
 * Express's connect-timeout. A 5xx frees its key by default, so a retry, sent as soon as the
 * client read the 503, ran the handler a second time beside the first (two orders for one key).
 */
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

let apps = 0;
/** A key of each app's own: the Redis suite's apps share one server. */
const order = () => ({ 'idempotency-key': `k-${++apps}`, 'content-type': 'application/json' });

const opened: (() => void)[] = [];
const servers: { close(): Promise<unknown> }[] = [];
afterEach(async () => {
  for (const open of opened.splice(0)) open();
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

/** A promise the test settles; left open, it is opened after the test (its handler ends). */
function gate() {
  let open: () => void = () => {};
  let fail: (error: Error) => void = () => {};
  const promise = new Promise<void>((resolve, reject) => {
    open = resolve;
    fail = reject;
  });
  opened.push(open);
  return { promise, open, fail };
}

/** Sends the key again until it is no longer in progress (bounded): the handler's end settles it. */
async function retryUntilSettled<R extends { statusCode: number }>(send: () => Promise<R>): Promise<R> {
  let response = await send();
  for (let turn = 0; turn < 200 && response.statusCode === 409; turn++) {
    await new Promise((r) => setTimeout(r, 10));
    response = await send();
  }
  return response;
}

/** A handler that makes order n (201); the first waits for `first`, the work of an order. */
function orders(first?: Promise<void>) {
  return async (n: number, _request: FastifyRequest, reply: FastifyReply) => {
    if (n === 1) await first;
    reply.code(201);
    return { order: n };
  };
}

function fastifySuite(stores: StoreFactory) {
  describe(`fastify handlerTimeout (${stores.name})`, () => {
    async function app(
      handler: (n: number, request: FastifyRequest, reply: FastifyReply) => unknown,
      {
        held = undefined as 'claim' | 'hook' | undefined,
        store5xx = false,
        awaited = true,
        errorHandler = undefined as Parameters<FastifyInstance['setErrorHandler']>[0] | undefined,
      } = {},
    ) {
      const made = await stores.make();
      // The first claim, or a later hook's first run, held until the test opens it (after the
      // 503): a store slower than the timeout (a Redis failover), a slow authentication.
      const hold = gate();
      const passed = gate();
      const slowly = <T>(work: () => Promise<T>) => hold.promise.then(work).finally(passed.open);
      let claims = 0;
      const store: IdempotencyStore =
        held !== 'claim'
          ? made
          : {
              claim: (...args) => (claims++ === 0 ? slowly(() => made.claim(...args)) : made.claim(...args)),
              complete: (...args) => made.complete(...args),
              release: (...args) => made.release(...args),
            };
      // Long enough that a claim on a loaded machine comes before it: the handler outlives it.
      const server = Fastify({ handlerTimeout: 300 });
      servers.push(server);
      if (errorHandler !== undefined) server.setErrorHandler(errorHandler);
      let ran = 0;
      const registered = server.register(idempotency, { store, scope: 'global', store5xx, bus: createBus() });
      // Fastify's own style: routes declared after register() without awaiting it (the plugin
      // loads at ready(), after the route is added: its onRoute hook never sees the route).
      if (awaited) await registered;
      // A hook after the plugin's (authentication registered later), slower than the timeout once.
      let hooked = 0;
      if (held === 'hook')
        server.addHook('preHandler', async () => (hooked++ === 0 ? slowly(async () => {}) : undefined));
      server.post('/orders', (request, reply) => handler(++ran, request, reply) as never);
      await server.ready();
      const headers = order();
      const send = () => server.inject({ method: 'POST', url: '/orders', headers, payload: '{"a":1}' });
      /** Lets the held claim or hook go on, and resolves once it has (and Fastify reacted). */
      const open = async () => {
        hold.open();
        await passed.promise;
        await sleep(20);
      };
      return { server, send, ran: () => ran, open };
    }

    it('a handler that outlives the timeout and succeeds runs once: retries get 409 while it runs, then the first answer', async () => {
      const made = gate();
      const t = await app(orders(made.promise));
      const first = await t.send();
      expect(first.statusCode).toBe(503);
      const during = await t.send();
      expect(during.statusCode).toBe(409);
      made.open();
      const after = await retryUntilSettled(t.send);
      expect(after.statusCode).toBe(503);
      expect(after.headers['idempotent-replayed']).toBe('true');
      expect(after.json()).toMatchObject({ code: 'FST_ERR_HANDLER_TIMEOUT' });
      expect(t.ran()).toBe(1);
    });

    it('a handler that outlives the timeout and then fails frees its key once it failed: the retry runs', async () => {
      const made = gate();
      const t = await app(orders(made.promise));
      expect((await t.send()).statusCode).toBe(503);
      expect((await t.send()).statusCode).toBe(409);
      made.fail(new Error('the payment service refused'));
      const retry = await retryUntilSettled(t.send);
      expect(retry.statusCode).toBe(201);
      expect(retry.json()).toEqual({ order: 2 });
      expect(t.ran()).toBe(2);
    });

    it('a handler that answers later without a promise: the timeout answer is stored at once, it never runs twice', async () => {
      const made = gate();
      const t = await app((n, _request, reply) => {
        void made.promise.then(() => reply.code(201).send({ order: n }));
      });
      expect((await t.send()).statusCode).toBe(503);
      const retry = await t.send();
      expect(retry.statusCode).toBe(503);
      expect(retry.headers['idempotent-replayed']).toBe('true');
      made.open();
      expect(t.ran()).toBe(1);
    });

    it('the timeout answers while the store is asked: the handler never runs, the key is freed, the retry runs it', async () => {
      const t = await app(orders(), { held: 'claim' });
      expect((await t.send()).statusCode).toBe(503);
      await t.open(); // the claim's answer comes
      expect(t.ran()).toBe(0);
      const retry = await retryUntilSettled(t.send);
      expect(retry.statusCode).toBe(201);
      expect(t.ran()).toBe(1);
    });

    it('the timeout answers during a later hook, before the handler: its 503 is not stored, the retry runs it', async () => {
      const t = await app(orders(), { held: 'hook' });
      expect((await t.send()).statusCode).toBe(503);
      await t.open(); // the hook ends; Fastify does not call the handler of a sent reply
      expect(t.ran()).toBe(0);
      const retry = await retryUntilSettled(t.send);
      expect(retry.statusCode).toBe(201);
      expect(t.ran()).toBe(1);
    });

    it('store5xx: a handler that outlives the timeout and then fails keeps the 503 as the answer, as its own 5xx would be: the retry does not run it', async () => {
      const made = gate();
      const t = await app(orders(made.promise), { store5xx: true });
      expect((await t.send()).statusCode).toBe(503);
      made.fail(new Error('the payment service failed half-way'));
      const retry = await retryUntilSettled(t.send);
      expect(retry.statusCode).toBe(503);
      expect(retry.headers['idempotent-replayed']).toBe('true');
      expect(t.ran()).toBe(1);
    });

    it('routes declared right after register() without await (onRoute never sees them): their handler is watched from the first claimed request, so the key waits for it as on any route', async () => {
      const made = gate();
      const t = await app(orders(made.promise), { awaited: false });
      expect((await t.send()).statusCode).toBe(503);
      expect((await t.send()).statusCode).toBe(409);
      made.open();
      const after = await retryUntilSettled(t.send);
      expect(after.statusCode).toBe(503);
      expect(after.headers['idempotent-replayed']).toBe('true');
      expect(t.ran()).toBe(1);
    });

    it('an error handler that answers the timeout on the raw response (hijacked): the key waits for the handler, no retry runs beside it', async () => {
      const made = gate();
      const t = await app(orders(made.promise), {
        errorHandler: (error, _request, reply) => {
          if ((error as { code?: unknown }).code !== 'FST_ERR_HANDLER_TIMEOUT') return reply.send(error);
          reply.hijack();
          reply.raw.writeHead(504, { 'content-type': 'text/plain' });
          reply.raw.end('timed out');
        },
      });
      expect((await t.send()).statusCode).toBe(504);
      const during = await t.send();
      expect(during.statusCode).toBe(409);
      expect(t.ran()).toBe(1);
      // Nothing of a hijacked answer can be stored: once the handler ended, its key is freed.
      made.open();
      const after = await retryUntilSettled(t.send);
      expect(after.statusCode).toBe(201);
      expect(t.ran()).toBe(2);
    });

    /** An error handler that answers the timeout on the raw response: a hijacked reply. */
    const hijacking: Parameters<FastifyInstance['setErrorHandler']>[0] = (error, _request, reply) => {
      if ((error as { code?: unknown }).code !== 'FST_ERR_HANDLER_TIMEOUT') return reply.send(error);
      reply.hijack();
      reply.raw.writeHead(504, { 'content-type': 'text/plain' });
      reply.raw.end('timed out');
    };

    it('an error handler that hijacks the timeout answer of a handler that returned no promise (it answers later from a timer): its end cannot be seen, so the key stays held, no retry runs beside it', async () => {
      const made = gate();
      const t = await app(
        (n, _request, reply) => {
          void made.promise.then(() => reply.code(201).send({ order: n }));
        },
        { errorHandler: hijacking },
      );
      expect((await t.send()).statusCode).toBe(504);
      expect((await t.send()).statusCode).toBe(409);
      made.open(); // its reply.send() on the hijacked reply sends nothing, and no hook sees it
      await sleep(20);
      expect((await t.send()).statusCode).toBe(409); // held for its lease
      expect(t.ran()).toBe(1);
    });

    it('routes declared right after register() without await, with an error handler that hijacks the timeout answer: the key waits for the handler, no retry runs beside it', async () => {
      const made = gate();
      const t = await app(orders(made.promise), { awaited: false, errorHandler: hijacking });
      expect((await t.send()).statusCode).toBe(504);
      expect((await t.send()).statusCode).toBe(409);
      expect(t.ran()).toBe(1);
      made.open();
      const after = await retryUntilSettled(t.send);
      expect(after.statusCode).toBe(201);
      expect(t.ran()).toBe(2);
    });

    it("a handler's own 503 before the timeout frees its key at once, as without handlerTimeout", async () => {
      const t = await app(async (n, _request, reply) => {
        reply.code(n === 1 ? 503 : 201);
        return { order: n };
      });
      expect((await t.send()).statusCode).toBe(503);
      const retry = await t.send();
      expect(retry.statusCode).toBe(201);
      expect(t.ran()).toBe(2);
    });
  });
}

fastifySuite(memoryStores);
redisStores(fastifySuite);

describe('express with connect-timeout', () => {
  const servers: import('node:http').Server[] = [];
  afterAll(async () => {
    for (const server of servers) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  async function app(handler: (n: number, res: express.Response) => Promise<void>, respond = true, ms = 100) {
    const store = await memoryStores.make();
    const server = express();
    let ran = 0;
    server.post(
      '/orders',
      timeout(`${ms}ms`, { respond }),
      expressIdempotency({ store, scope: 'global', bus: createBus() }),
      express.json(),
      async (_req, res) => handler(++ran, res),
    );
    const listening = server.listen(0, '127.0.0.1');
    servers.push(listening);
    await new Promise((resolve) => listening.once('listening', resolve));
    const { port } = listening.address() as AddressInfo;
    const headers = order();
    const send = async () => {
      const response = await fetch(`http://127.0.0.1:${port}/orders`, {
        method: 'POST',
        headers,
        body: '{"a":1}',
      });
      return {
        status: response.status,
        replayed: response.headers.get('idempotent-replayed'),
        body: await response.text(),
      };
    };
    return { send, ran: () => ran, port, headers };
  }

  it('its 503 is stored as the answer: a retry gets it, and the handler, still running, ran once', async () => {
    const made = gate();
    const t = await app(async (n, res) => {
      if (n === 1) await made.promise;
      if (!res.headersSent) res.status(201).json({ order: n });
    });
    const first = await t.send();
    expect(first.status).toBe(503);
    const retry = await t.send();
    expect(retry.status).toBe(503);
    expect(retry.replayed).toBe('true');
    made.open();
    await new Promise((r) => setTimeout(r, 20));
    expect((await t.send()).status).toBe(503);
    expect(t.ran()).toBe(1);
  });

  it('connect-timeout answers while the body is still coming: the handler never runs, the key is freed, the retry runs it', async () => {
    // 400 ms: the retry, answered at once, comes in under it on a loaded machine too (at 100 ms
    // CI under load saw it time out: 503).
    const t = await app(
      async (n, res) => {
        res.status(201).json({ order: n });
      },
      true,
      400,
    );
    const socket = connect(t.port, '127.0.0.1');
    await once(socket, 'connect');
    const head = Object.entries(t.headers)
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join('');
    let answer = '';
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString();
    });
    socket.write(`POST /orders HTTP/1.1\r\nHost: x\r\n${head}Content-Length: 7\r\n\r\n{"a"`);
    await sleep(700); // the timeout answers 503 meanwhile
    socket.end(':1}');
    await once(socket, 'close');
    expect(answer).toMatch(/^HTTP\/1\.1 503/);
    expect(t.ran()).toBe(0);
    const retry = await t.send();
    expect(retry.status).toBe(201);
    expect(t.ran()).toBe(1);
  });

  it("respond: false (the app answers, connect-timeout only sets req.timedout): the handler's own 5xx, sent once it ended, frees its key", async () => {
    const t = await app(async (n, res) => {
      if (n === 1) await sleep(150); // past the timeout: req.timedout is true
      res.status(n === 1 ? 500 : 201).json({ order: n });
    }, false);
    expect((await t.send()).status).toBe(500);
    const retry = await t.send();
    expect(retry.status).toBe(201);
    expect(retry.replayed).toBeNull();
    expect(t.ran()).toBe(2);
  });

  /**
   * connect-timeout's documented pattern: `haltOnTimedout` after each slow middleware, so nothing
   * after it runs once the 503 went out. A slow middleware between the idempotency middleware and
   * the handler: its 503 is stored, though the handler never ran, and the key replays it for its
   * TTL. Express gives no sign of which layer is the handler (a route's layers are run by a
   * closure of the router's, and `req.route` is set before the first of them): see the README.
   */
  it('a slow middleware between it and the handler, halted on the timeout: the 503 is stored though the handler never ran (a known limit)', async () => {
    const store = await memoryStores.make();
    const server = express();
    let ran = 0;
    let slow = 0;
    const halt: express.RequestHandler = (req, _res, next) => {
      if (!(req as { timedout?: boolean }).timedout) next();
    };
    server.post(
      '/orders',
      timeout('100ms'),
      expressIdempotency({ store, scope: 'global', bus: createBus() }),
      express.json(),
      (_req, _res, next) => {
        if (slow++ === 0) setTimeout(next, 200);
        else next();
      },
      halt,
      (_req, res) => {
        ran++;
        res.status(201).json({ order: ran });
      },
    );
    const listening = server.listen(0, '127.0.0.1');
    servers.push(listening);
    await once(listening, 'listening');
    const { port } = listening.address() as AddressInfo;
    const headers = order();
    const send = () => fetch(`http://127.0.0.1:${port}/orders`, { method: 'POST', headers, body: '{"a":1}' });
    const first = await send();
    expect(first.status).toBe(503);
    await first.text();
    await sleep(200); // the slow middleware ends; haltOnTimedout stops there
    const retry = await send();
    expect(retry.status).toBe(503);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    expect(ran).toBe(0);
  });

  it("a handler's own 503 (no timeout) frees its key: the retry runs", async () => {
    const t = await app(async (n, res) => {
      res.status(n === 1 ? 503 : 201).json({ order: n });
    });
    expect((await t.send()).status).toBe(503);
    expect((await t.send()).status).toBe(201);
    expect(t.ran()).toBe(2);
  });
});
