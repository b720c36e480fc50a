import { once } from 'node:events';
import { connect as h2connect } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { createBus } from '@holdfast/core';
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
} from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/fastify.js';
import { type IdempotencyStore, memoryStore } from '../src/index.js';
import { closeAll, closers } from './http-support/body-apps.js';
import {
  expectLost,
  gate,
  keyedPost,
  leaveWhile,
  rawClient,
  sendKeyed,
  settledRetry,
  tick,
} from './http-support/leave.js';

// Attacks on 3c824926: the Fastify plugin adds its 'close' watch on a claimed response only once
// done() has returned (the handler's synchronous part has run) and only if the run is still open.
// Each test drives a real server on 127.0.0.1 and checks what a retry of the key gets, how often
// the handler ran, and that nothing stays claimed (a retry that gets 409 for the lease).

afterEach(closeAll);

type Handler = (request: FastifyRequest, reply: FastifyReply, ran: number) => unknown;

interface Setup {
  /** Hooks or plugins registered before the idempotency plugin (they run before its hooks). */
  before?: (app: FastifyInstance) => void | Promise<void>;
  /** Hooks registered after it (they run after its hooks). */
  after?: (app: FastifyInstance) => void | Promise<void>;
  store?: IdempotencyStore;
  leaseMs?: number;
  /** At leaseMs or less: a fixed lease, the response-lost problem stored shortly before it ends. */
  maxRunMs?: number;
  fastify?: FastifyServerOptions;
  route?: { handlerTimeout?: number };
  scope?: 'global' | ((request: FastifyRequest) => string | Promise<string>);
}

/** A Fastify app listening on 127.0.0.1 with POST /orders guarded, its handler counted. */
async function serve(handler: Handler, setup: Setup = {}) {
  const app = Fastify(setup.fastify ?? {});
  // The memoryStore() made when none is given: the test reads what it holds in progress.
  const memory = setup.store === undefined ? memoryStore() : undefined;
  const store = setup.store ?? (memory as ReturnType<typeof memoryStore>);
  await setup.before?.(app);
  await app.register(idempotency, {
    store,
    scope: setup.scope ?? 'global',
    bus: createBus(),
    leaseMs: setup.leaseMs ?? 2_000,
    ...(setup.maxRunMs !== undefined && { maxRunMs: setup.maxRunMs }),
  });
  await setup.after?.(app);
  const counts = { ran: 0 };
  app.addContentTypeParser('text/plain', { parseAs: 'string' }, (_r, body, done) => done(null, body));
  app.post('/orders', { ...(setup.route ?? {}) }, (request, reply) => {
    counts.ran++;
    return handler(request, reply, counts.ran);
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  closers.push(() => app.close());
  return { app, port: (app.server.address() as AddressInfo).port, counts, memory };
}

/** What {@link settledRetry} gets, without its content type. */
const retryOf = async (port: number, key = 'k') => {
  const { status, replayed, body, conflicts } = await settledRetry(port, key);
  return { status, replayed, body, conflicts };
};

/**
 * The first keyed request gets `status` and `body`, its retry the same replayed (no 409 first),
 * and the handler ran `ran` times in all.
 */
async function expectReplayed(port: number, counts: { ran: number }, status: number, body: string, ran: number) {
  const first = await sendKeyed(`http://127.0.0.1:${port}/orders`);
  expect([first.status, first.body]).toEqual([status, body]);
  expect(await retryOf(port)).toEqual({ status, replayed: 'true', body, conflicts: 0 });
  expect(counts.ran).toBe(ran);
}

/**
 * The first keyed request gets a 500 and frees its key: its retry runs the handler, which answers
 * 201 `made`, not replayed (no 409 first); the handler ran `ran` times in all.
 */
async function expectFreed(port: number, counts: { ran: number }, ran: number) {
  const first = await sendKeyed(`http://127.0.0.1:${port}/orders`);
  expect(first.status).toBe(500);
  expect(await retryOf(port)).toEqual({ status: 201, replayed: null, body: 'made', conflicts: 0 });
  expect(counts.ran).toBe(ran);
}

/**
 * A keyed POST whose client leaves once `when` resolves; `settleMs` later, its retry gets the
 * handler's 201 `made`, replayed (no 409 first), and the handler ran once.
 */
async function leftThenReplayed(port: number, counts: { ran: number }, when: Promise<unknown>, settleMs: number) {
  await leaveWhile(port, keyedPost('/orders'), when);
  await tick(settleMs);
  expect(await retryOf(port)).toEqual({ status: 201, replayed: 'true', body: 'made', conflicts: 0 });
  expect(counts.ran).toBe(1);
}

/**
 * An async preHandler registered before the plugin's: on the first request, it returns once that
 * request's client has left.
 */
const waitsForLeave = (reached: { open: () => void }) => (app: FastifyInstance) => {
  let first = true;
  app.addHook('preHandler', async (request) => {
    if (!first) return;
    first = false;
    reached.open();
    if (!request.raw.socket.destroyed) await once(request.raw.socket, 'close');
    await tick(10);
  });
};

/**
 * A handler that, after an await, sets 201 and resolves with nothing on its first request (its
 * client is gone: Fastify sends nothing for it), and sends `again` on later ones.
 */
const resolvesWithNothing: Handler = async (_request, reply, ran) => {
  await tick(20);
  if (ran > 1) return reply.code(201).send('again');
  reply.code(201);
};

/** A store whose methods are not memoryStore's own (the plugin's async path), each call `ms` late. */
function laterStore(ms: number): IdempotencyStore & { inner: ReturnType<typeof memoryStore> } {
  const inner = memoryStore();
  const later = <T>(value: () => T | PromiseLike<T>) =>
    new Promise<T>((resolve) => setTimeout(() => resolve(value()), ms));
  return {
    inner,
    claim: (key, fingerprint, leaseMs) => later(() => inner.claim(key, fingerprint, leaseMs)),
    complete: (key, token, outcome, ttlMs) => later(() => inner.complete(key, token, outcome, ttlMs)),
    release: (key, token) => later(() => inner.release(key, token)),
  };
}

describe('close watch: a handler that answers in the tick the plugin hands it control', () => {
  it('reply.hijack() then writeHead and end on the raw response in the same tick: stored, the retry gets the replay, ran once', async () => {
    const { port, counts } = await serve((_request, reply) => {
      reply.hijack();
      reply.raw.writeHead(201, { 'content-type': 'text/plain' });
      reply.raw.end('made');
    });
    await expectReplayed(port, counts, 201, 'made', 1);
  });

  it('reply.hijack() and a raw head in the same tick, its client leaves, the async handler ends it later: stored whole, ran once', async () => {
    const wrote = gate();
    const release = gate();
    const { port, counts } = await serve(async (_request, reply, ran) => {
      if (ran > 1) return reply.code(201).send('again');
      reply.hijack();
      reply.raw.writeHead(201, { 'content-type': 'text/plain' });
      reply.raw.write('ma');
      wrote.open();
      await release.opened;
      reply.raw.end('de');
    });
    await leaveWhile(port, keyedPost('/orders'), wrote.opened, 'ma');
    release.open();
    expect(await retryOf(port)).toEqual({ status: 201, replayed: 'true', body: 'made', conflicts: 0 });
    expect(counts.ran).toBe(1);
  });

  it('a handler that throws before its first await: the 500 goes, the key is freed at once, the retry runs it again', async () => {
    const { port, counts } = await serve((_request, reply, ran) => {
      if (ran === 1) throw new Error('card declined');
      return reply.code(201).send('made');
    });
    await expectFreed(port, counts, 2);
  });

  /**
   * reply.raw.destroy() before the first await, nothing sent: the run is still open when done()
   * returns, so the close is watched (as before the change). The server refused to answer, its
   * client did not leave: the key stays claimed (a retry gets 409) until the lease's end is near,
   * then the response-lost problem is stored. The handler is never run twice.
   */
  it('reply.raw.destroy() before the first await: the retry waits, then gets the response-lost problem, never a second run', async () => {
    const { port, counts } = await serve(
      (_request, reply, ran) => {
        if (ran > 1) return reply.code(201).send('again');
        reply.raw.destroy();
      },
      { leaseMs: 1_500, maxRunMs: 1_500 },
    );
    const client = await rawClient(port);
    client.socket.write(keyedPost('/orders'));
    await once(client.socket, 'close');
    const retry = await settledRetry(port);
    expectLost(retry);
    expect(retry.conflicts).toBeGreaterThan(0);
    expect(counts.ran).toBe(1);
  });

  it("a synchronous reply.callNotFound() from the handler: the 404 is the key's answer, never a 409, ran once", async () => {
    const { port, counts } = await serve((_request, reply) => {
      reply.callNotFound();
    });
    const first = await sendKeyed(`http://127.0.0.1:${port}/orders`);
    expect(first.status).toBe(404);
    const retry = await retryOf(port);
    expect({ status: retry.status, conflicts: retry.conflicts }).toEqual({ status: 404, conflicts: 0 });
    expect(counts.ran).toBe(1);
  });

  it('a stream sent before the first await: stored once it has all gone, the retry gets its bytes, ran once', async () => {
    const { port, counts } = await serve((_request, reply) => {
      reply
        .code(201)
        .header('content-type', 'text/plain')
        .send(Readable.from(['ma', 'de']));
    });
    await expectReplayed(port, counts, 201, 'made', 1);
  });

  /**
   * The handler adds its own 'close' listener on the raw response before its first await (it now
   * runs before the plugin's, which is added after done() returns) and answers from it when its
   * client leaves. Whichever listener runs first, that answer is the key's.
   */
  it("a handler's own 'close' listener that answers when its client leaves: that answer is stored, ran once", async () => {
    const running = gate();
    const { port, counts } = await serve(async (_request, reply, ran) => {
      if (ran > 1) return reply.code(201).send('again');
      reply.raw.on('close', () => {
        if (!reply.sent) reply.code(499).send('cancelled');
      });
      running.open();
      await new Promise(() => {}); // waits for its client, which leaves
    });
    await leaveWhile(port, keyedPost('/orders'), running.opened);
    expect(await retryOf(port)).toEqual({ status: 499, replayed: 'true', body: 'cancelled', conflicts: 0 });
    expect(counts.ran).toBe(1);
  });
});

describe('close watch: a client that left before the plugin claimed its key', () => {
  it('a handler that sends before its first await: stored for the client that left, the retry gets the replay, ran once', async () => {
    const reached = gate();
    const { port, counts } = await serve((_request, reply, ran) => reply.code(201).send(ran === 1 ? 'made' : 'again'), {
      before: waitsForLeave(reached),
    });
    await leftThenReplayed(port, counts, reached.opened, 50);
  });

  it('a handler that sends after an await: stored as well, ran once', async () => {
    const reached = gate();
    const { port, counts } = await serve(
      async (_request, reply, ran) => {
        await tick(20);
        return reply.code(201).send(ran === 1 ? 'made' : 'again');
      },
      { before: waitsForLeave(reached) },
    );
    await leftThenReplayed(port, counts, reached.opened, 80);
  });

  it('an async scope and a store that answers later, the client gone meanwhile, a handler that sends at once: stored, ran once', async () => {
    const asked = gate();
    const store = laterStore(30);
    const { port, counts } = await serve((_request, reply, ran) => reply.code(201).send(ran === 1 ? 'made' : 'again'), {
      store,
      scope: async () => {
        asked.open();
        await tick(30);
        return 'account-1';
      },
    });
    await leftThenReplayed(port, counts, asked.opened, 150);
  });
});

describe("close watch: other plugins' preHandler hooks after the plugin's", () => {
  it("a synchronous one that answers 401: that answer is the key's (replayed), the handler never ran", async () => {
    const { port, counts } = await serve((_request, reply) => reply.code(201).send('made'), {
      after: (app) => {
        app.addHook('preHandler', (_request, reply, done) => {
          reply.code(401).send('who are you');
          done();
        });
      },
    });
    await expectReplayed(port, counts, 401, 'who are you', 0);
  });

  it('an async one its client leaves during, then a handler that sends at once: stored, ran once', async () => {
    const reached = gate();
    const { port, counts } = await serve((_request, reply, ran) => reply.code(201).send(ran === 1 ? 'made' : 'again'), {
      after: (app) => {
        app.addHook('preHandler', async (request) => {
          reached.open();
          if (!request.raw.socket.destroyed) await once(request.raw.socket, 'close');
        });
      },
    });
    await leftThenReplayed(port, counts, reached.opened, 50);
  });
});

/**
 * Fastify's handlerTimeout, on keyed POSTs without a body: on a request with one, Fastify 5.12.8
 * clears its timer when the request stream closes once its body is read (Node emits 'close' on a
 * consumed request), and the timeout never fires over a real socket.
 */
describe("close watch: Fastify's handlerTimeout", () => {
  const bodiless = async (port: number) => {
    const response = await fetch(`http://127.0.0.1:${port}/orders`, {
      method: 'POST',
      headers: { 'idempotency-key': 't' },
      signal: AbortSignal.timeout(3_000),
    });
    return {
      status: response.status,
      replayed: response.headers.get('idempotent-replayed'),
      body: await response.text(),
    };
  };
  const settledBodiless = async (port: number) => {
    let answer = await bodiless(port);
    for (let turn = 0; turn < 150 && answer.status === 409; turn++) {
      await tick(20);
      answer = await bodiless(port);
    }
    return answer;
  };

  it('a handler that answers before its first await on a route with handlerTimeout: stored, ran once, no timeout answer later', async () => {
    const { port, counts } = await serve((_request, reply) => reply.code(201).send('made'), {
      route: { handlerTimeout: 50 },
    });
    const first = await bodiless(port);
    expect([first.status, first.body]).toEqual([201, 'made']);
    await tick(100);
    expect(await settledBodiless(port)).toEqual({ status: 201, replayed: 'true', body: 'made' });
    expect(counts.ran).toBe(1);
  });

  it("a handler that outlives handlerTimeout and then succeeds: the timeout's 503 is the key's answer, ran once", async () => {
    const { port, counts } = await serve(
      async (_request, reply) => {
        await tick(150);
        return reply.code(201).send('made');
      },
      { route: { handlerTimeout: 50 } },
    );
    const first = await bodiless(port);
    expect(first.status).toBe(503);
    const retry = await settledBodiless(port);
    expect({ status: retry.status, replayed: retry.replayed }).toEqual({ status: 503, replayed: 'true' });
    expect(JSON.parse(retry.body)).toMatchObject({ code: 'FST_ERR_HANDLER_TIMEOUT' });
    expect(counts.ran).toBe(1);
  });
});

describe('close watch: pipelined HTTP/1.1', () => {
  it('the second request answers before its first await while the first still runs; the client leaves: both stored, each ran once', async () => {
    const running = gate();
    const release = gate();
    const ran = new Map<string, number>();
    const { port } = await serve(async (request, reply) => {
      const key = String(request.headers['idempotency-key']);
      ran.set(key, (ran.get(key) ?? 0) + 1);
      if (key === 'a') {
        running.open();
        await release.opened;
      }
      return reply.code(201).send(`made ${key}`);
    });
    const { socket } = await rawClient(port);
    socket.write(keyedPost('/orders', 'a') + keyedPost('/orders', 'b'));
    await running.opened;
    await tick(30); // b is parsed and answered (queued behind a) meanwhile
    socket.destroy();
    await tick(30);
    release.open();
    const a = await retryOf(port, 'a');
    const b = await retryOf(port, 'b');
    expect([a.status, a.body, a.replayed, b.status, b.body, b.replayed]).toEqual([
      201,
      'made a',
      'true',
      201,
      'made b',
      'true',
    ]);
    expect(Object.fromEntries(ran)).toEqual({ a: 1, b: 1 });
  });
});

describe('close watch: pipelined HTTP/1.1, the connection gone before the second claim', () => {
  /**
   * b is queued behind a (no socket yet) and waits in an async preHandler before the plugin's
   * until its connection has closed: no 'close' comes for a queued response, and the
   * connection's came before the plugin could watch for it. Both handlers then resolve with
   * nothing (their status set): each key gets its status, none is held for its lease.
   */
  it('both handlers resolve with nothing: both stored, each ran once, nothing held', async () => {
    const running = gate();
    const release = gate();
    const ran = new Map<string, number>();
    const { port, memory } = await serve(
      async (request, reply) => {
        const key = String(request.headers['idempotency-key']);
        ran.set(key, (ran.get(key) ?? 0) + 1);
        if ((ran.get(key) ?? 0) > 1) return reply.code(201).send('again');
        if (key === 'a') running.open();
        await release.opened;
        reply.code(201);
      },
      {
        before: (app) => {
          app.addHook('preHandler', async (request) => {
            if (request.headers['idempotency-key'] !== 'b' || ran.has('b')) return;
            const connection = request.raw.socket;
            if (!connection.closed) await once(connection, 'close');
            await tick(10);
          });
        },
        leaseMs: 1_500,
        maxRunMs: 1_500,
      },
    );
    const { socket } = await rawClient(port);
    socket.write(keyedPost('/orders', 'a') + keyedPost('/orders', 'b'));
    await running.opened;
    await tick(30);
    socket.destroy();
    await tick(50);
    release.open();
    await tick(50);
    expect(memory?.snapshot().inProgress).toBe(0);
    const a = await retryOf(port, 'a');
    const b = await retryOf(port, 'b');
    expect([a.status, a.replayed, a.conflicts, b.status, b.replayed, b.conflicts]).toEqual([
      201,
      'true',
      0,
      201,
      'true',
      0,
    ]);
    expect(Object.fromEntries(ran)).toEqual({ a: 1, b: 1 });
  });
});

describe('close watch: HTTP/2', () => {
  const post = (port: number, options: { cancelWhen?: Promise<void> } = {}) => {
    const client = h2connect(`http://127.0.0.1:${port}`);
    client.on('error', () => {});
    return new Promise<{ status: number | undefined; body: string; replayed: unknown }>((resolve) => {
      const stream = client.request({
        ':method': 'POST',
        ':path': '/orders',
        'content-type': 'text/plain',
        'content-length': '2',
        'idempotency-key': 'h2',
      });
      let body = '';
      let status: number | undefined;
      let replayed: unknown;
      stream.on('response', (headers) => {
        status = Number(headers[':status']);
        replayed = headers['idempotent-replayed'];
      });
      stream.setEncoding('utf8');
      stream.on('data', (d: string) => {
        body += d;
      });
      stream.on('error', () => {});
      stream.on('close', () => {
        client.close();
        resolve({ status, body, replayed });
      });
      stream.end('hi');
      options.cancelWhen?.then(() => {
        stream.close();
        client.destroy();
      });
    });
  };

  it('a handler that answers before its first await: stored, the retry gets the replay, ran once', async () => {
    const { port, counts } = await serve((_request, reply) => reply.code(201).send('made'), {
      fastify: { http2: true } as FastifyServerOptions,
    });
    expect(await post(port)).toEqual({ status: 201, body: 'made', replayed: undefined });
    expect(await post(port)).toEqual({ status: 201, body: 'made', replayed: 'true' });
    expect(counts.ran).toBe(1);
  });

  /**
   * Its stream cancelled before the plugin's preHandler (an async preHandler before it): no
   * 'close' reaches the plugin's watch. An async handler that then resolves with nothing is sent
   * nothing by Fastify: its status must be stored all the same, not its key held.
   */
  it('a stream cancelled before the claim, an async handler that resolves with nothing: its status is stored, ran once', async () => {
    const reached = gate();
    const { port, counts, memory } = await serve(resolvesWithNothing, {
      fastify: { http2: true } as FastifyServerOptions,
      before: (app) => {
        let first = true;
        app.addHook('preHandler', async (request) => {
          if (!first) return;
          first = false;
          reached.open();
          if (!request.raw.aborted) await once(request.raw, 'aborted');
          await tick(10);
        });
      },
      leaseMs: 1_500,
      maxRunMs: 1_500,
    });
    const cancelled = await post(port, { cancelWhen: reached.opened });
    expect(cancelled.status).toBeUndefined();
    await tick(100);
    expect(memory?.snapshot().inProgress).toBe(0);
    let retry = await post(port);
    for (let turn = 0; turn < 100 && retry.status === 409; turn++) {
      await tick(20);
      retry = await post(port);
    }
    expect(retry).toEqual({ status: 201, body: '', replayed: 'true' });
    expect(counts.ran).toBe(1);
  });

  it('a stream its client cancels while the handler runs, which then answers: stored, the retry gets the replay, ran once', async () => {
    const running = gate();
    const release = gate();
    const { port, counts } = await serve(
      async (_request, reply, ran) => {
        if (ran === 1) {
          running.open();
          await release.opened;
        }
        return reply.code(201).send(ran === 1 ? 'made' : 'again');
      },
      { fastify: { http2: true } as FastifyServerOptions },
    );
    const cancelled = await post(port, { cancelWhen: running.opened });
    expect(cancelled.status).toBeUndefined();
    await tick(30);
    release.open();
    let retry = await post(port);
    for (let turn = 0; turn < 100 && retry.status === 409; turn++) {
      await tick(20);
      retry = await post(port);
    }
    expect(retry).toEqual({ status: 201, body: 'made', replayed: 'true' });
    expect(counts.ran).toBe(1);
  });
});

describe('close watch: more of what production does around the handler', () => {
  it('reply.hijack() then a throw before the first await: nothing was written, the key is freed, the retry runs it again', async () => {
    const { port, counts } = await serve(async (_request, reply, ran) => {
      if (ran > 1) return reply.code(201).send('again');
      reply.hijack();
      throw new Error('card declined');
    });
    // Fastify leaves a hijacked reply to its handler: nothing is sent, the client gives up.
    const client = await rawClient(port);
    client.socket.write(keyedPost('/orders'));
    await tick(100);
    client.socket.destroy();
    expect(client.read()).toBe('');
    expect(await retryOf(port)).toEqual({ status: 201, replayed: null, body: 'again', conflicts: 0 });
    expect(counts.ran).toBe(2);
  });

  /**
   * An async onSend hook registered before the plugin's: the plugin's onSend (which stores the
   * reply and clears the run) runs a tick later, so the run is open when done() returns and the
   * close is watched. Its client leaves meanwhile: the reply is still stored when it comes.
   */
  it('a handler that sends at once behind an async onSend hook its client leaves during: stored, ran once', async () => {
    const reached = gate();
    const { port, counts } = await serve((_request, reply, ran) => reply.code(201).send(ran === 1 ? 'made' : 'again'), {
      before: (app) => {
        let first = true;
        app.addHook('onSend', async (request, _reply, payload) => {
          if (!first) return payload;
          first = false;
          reached.open();
          if (!request.raw.socket.destroyed) await once(request.raw.socket, 'close');
          await tick(10);
          return payload;
        });
      },
    });
    await leftThenReplayed(port, counts, reached.opened, 50);
  });

  /**
   * Two registrations, one inside the other, both guarding the route: each adds its watch after
   * done() returns, the inner one's first now (before: the outer one's). The client leaves while
   * the async handler runs, which then resolves with nothing: each key gets the handler's status.
   */
  it('two nested registrations, the client leaves, the handler resolves with nothing: both stores keep its 201, ran once', async () => {
    const outer = memoryStore();
    const inner = memoryStore();
    const running = gate();
    const release = gate();
    const app = Fastify();
    await app.register(idempotency, { store: outer, scope: 'global', bus: createBus(), leaseMs: 2_000 });
    let ran = 0;
    await app.register(async (child) => {
      await child.register(idempotency, { store: inner, scope: 'global', bus: createBus(), leaseMs: 2_000 });
      child.addContentTypeParser('text/plain', { parseAs: 'string' }, (_r, body, done) => done(null, body));
      child.post('/orders', async (_request, reply) => {
        ran++;
        if (ran === 1) {
          running.open();
          await release.opened;
        }
        reply.code(201);
      });
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    closers.push(() => app.close());
    const { port } = app.server.address() as AddressInfo;
    await leaveWhile(port, keyedPost('/orders'), running.opened);
    await tick(30);
    release.open();
    const retry = await retryOf(port);
    expect({ status: retry.status, replayed: retry.replayed, conflicts: retry.conflicts }).toEqual({
      status: 201,
      replayed: 'true',
      conflicts: 0,
    });
    expect(ran).toBe(1);
    expect([outer.snapshot().inProgress, inner.snapshot().inProgress]).toEqual([0, 0]);
  });

  it('a guarded HEAD request answered before the first await: stored, its retry gets the replayed head, ran once', async () => {
    const app = Fastify();
    await app.register(idempotency, {
      store: memoryStore(),
      scope: 'global',
      bus: createBus(),
      methods: ['GET', 'HEAD'],
    });
    let ran = 0;
    app.get('/orders/1', (_request, reply) => {
      ran++;
      reply.code(200).header('location', `/orders/${ran}`).send('order one');
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    closers.push(() => app.close());
    const { port } = app.server.address() as AddressInfo;
    const head = () =>
      fetch(`http://127.0.0.1:${port}/orders/1`, {
        method: 'HEAD',
        headers: { 'idempotency-key': 'h' },
        signal: AbortSignal.timeout(3_000),
      });
    const first = await head();
    const retry = await head();
    expect([first.status, first.headers.get('location')]).toEqual([200, '/orders/1']);
    expect([retry.status, retry.headers.get('location'), retry.headers.get('idempotent-replayed')]).toEqual([
      200,
      '/orders/1',
      'true',
    ]);
    expect(ran).toBe(1);
  });

  /**
   * Its client left before the plugin's preHandler (an async preHandler before it): the response
   * had closed already when the run was claimed, so no 'close' reaches the plugin's watch,
   * before 3c824926 or after. An async handler that then resolves with nothing (its status set)
   * is sent nothing by Fastify (its client is gone).
   */
  it('a client gone before the claim, an async handler that resolves with nothing: the key is not held for its lease, ran once', async () => {
    const reached = gate();
    const { port, counts, memory } = await serve(resolvesWithNothing, {
      before: waitsForLeave(reached),
      leaseMs: 1_500,
      maxRunMs: 1_500,
    });
    await leaveWhile(port, keyedPost('/orders'), reached.opened);
    await tick(100);
    expect(memory?.snapshot().inProgress).toBe(0);
    const retry = await retryOf(port);
    expect({ status: retry.status, replayed: retry.replayed, conflicts: retry.conflicts }).toEqual({
      status: 201,
      replayed: 'true',
      conflicts: 0,
    });
    expect(counts.ran).toBe(1);
  });
});

describe("close watch: the premise, Node emits no response 'close' inside the handler's synchronous part", () => {
  /**
   * 3c824926 adds the plugin's 'close' watch only after done() returns: a 'close' emitted while
   * the handler's synchronous part runs would never reach it. The ways a handler closes its
   * response at once (destroy, or end after a hijack), over HTTP/1.1 and HTTP/2: none emits it
   * before the handler returns, and the watch added after still gets it.
   */
  for (const http2 of [false, true]) {
    for (const how of ['destroy', 'hijack and end'] as const) {
      it(`${http2 ? 'HTTP/2' : 'HTTP/1.1'}, ${how}: no 'close' before the handler returns, one after`, async () => {
        const seen: string[] = [];
        const { port } = await serve(
          (_request, reply) => {
            reply.raw.on('close', () => seen.push('close'));
            if (how === 'destroy') reply.raw.destroy();
            else {
              reply.hijack();
              reply.raw.writeHead(201, { 'content-type': 'text/plain' });
              reply.raw.end('made');
            }
            seen.push('returned');
          },
          http2 ? { fastify: { http2: true } as FastifyServerOptions } : {},
        );
        if (http2) {
          const client = h2connect(`http://127.0.0.1:${port}`);
          client.on('error', () => {});
          const stream = client.request({
            ':method': 'POST',
            ':path': '/orders',
            'content-type': 'text/plain',
            'content-length': '2',
            'idempotency-key': 'p',
          });
          stream.on('error', () => {});
          stream.resume();
          stream.end('hi');
          await once(stream, 'close');
          client.destroy();
        } else {
          const client = await rawClient(port);
          client.socket.write(keyedPost('/orders', 'p'));
          for (let turn = 0; turn < 100 && !seen.includes('close'); turn++) await tick(10);
          client.socket.destroy();
        }
        for (let turn = 0; turn < 100 && !seen.includes('close'); turn++) await tick(10);
        expect(seen).toEqual(['returned', 'close']);
      });
    }
  }
});

describe('close watch: errors thrown around the claim', () => {
  it('a later synchronous preHandler hook that throws: its 500 goes, the key is freed, the retry runs the handler', async () => {
    let thrown = 0;
    const { port, counts } = await serve((_request, reply) => reply.code(201).send('made'), {
      after: (app) => {
        app.addHook('preHandler', (_request, _reply, done) => {
          if (thrown++ === 0) throw new Error('session store down');
          done();
        });
      },
    });
    await expectFreed(port, counts, 1);
  });
});
