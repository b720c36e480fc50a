import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createBus, type EventOf } from '@holdfast/core';
import express from 'express';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { redisAvailable } from '../../../test/support/redis.js';
import { idempotency } from '../src/express.js';
import { idempotency as fastifyIdempotency } from '../src/fastify.js';
import { type IdempotencyStore, memoryStore, redisStore } from '../src/index.js';
import { closeAll, closers, listenNode } from './http-support/body-apps.js';
import { expectLost, sendKeyed, tick } from './http-support/leave.js';
import { slowStore } from './http-support/slow-store.js';
import { useRedisServer } from './http-support/stores.js';

/**
 * A response the server closes once it began: the handler sent its headers (a 201: the payment
 * was made) and then threw, or a stream it sent failed part way. Express's final handler and
 * Fastify destroy the connection. The key was released, and the client's retry ran the handler
 * (the payment) a second time. Now, as when the client leaves, the response-lost problem is the
 * key's answer: the retry gets it, and never runs the handler again. A 5xx already sent is the
 * handler's failure: released, as a whole 5xx is. A safe method (GET, HEAD) is released: running
 * it again does no harm, and its retry gets a real answer.
 */
afterEach(closeAll);

const stores: [string, () => IdempotencyStore][] = [
  ['memoryStore()', () => memoryStore()],
  ['a store in another process', () => slowStore({ completeMs: 20 })],
];

/** Sends the keyed POST; a connection the server cut is 'cut off'. */
const post = (port: number, path = '/orders') =>
  sendKeyed(`http://127.0.0.1:${port}${path}`).catch(() => 'cut off' as const);

/** A failing readable: `first` goes out, then it errors. */
function failsAfter(first: string): Readable {
  let sent = false;
  return new Readable({
    read() {
      if (!sent) {
        sent = true;
        this.push(first);
      } else setTimeout(() => this.destroy(new Error('the source broke')), 10);
    },
  });
}

async function expressApp(store: IdempotencyStore, handler: express.RequestHandler, extra: object = {}) {
  const app = express();
  const bus = createBus();
  const lost: EventOf<'idempotency.lost'>[] = [];
  bus.on('idempotency.lost', (e) => lost.push(e));
  app.use(idempotency({ store, scope: 'global', bus, ...extra }));
  const ran = { count: 0, lost };
  app.all('/orders', (req, res, next) => {
    ran.count++;
    return handler(req, res, next);
  });
  return { port: await listenNode(createServer(app)), ran };
}

async function fastifyApp(store: IdempotencyStore, setup: (app: FastifyInstance, ran: { count: number }) => void) {
  const app = Fastify({ logger: false });
  closers.push(() => app.close());
  const bus = createBus();
  const lost: EventOf<'idempotency.lost'>[] = [];
  bus.on('idempotency.lost', (e) => lost.push(e));
  await app.register(fastifyIdempotency, { store, scope: 'global', bus });
  const ran = { count: 0, lost };
  setup(app, ran);
  await app.listen({ port: 0, host: '127.0.0.1' });
  return { port: (app.server.address() as AddressInfo).port, ran };
}

describe.each(stores)('Express, %s: a response the server closes once it began', (_name, makeStore) => {
  it('the handler sends 201 and a first chunk, then fails (next(err)): the retry gets the response-lost problem, not a second run', async () => {
    const { port, ran } = await expressApp(makeStore(), (_req, res, next) => {
      res.status(201).type('text/plain').write('payment made; receipt: ');
      next(new Error('the receipt renderer broke'));
    });
    expect(await post(port)).toBe('cut off');
    await tick(50);
    const retry = await post(port);
    expect(ran.count).toBe(1);
    expectLost(retry as Exclude<typeof retry, string>);
    expect(ran.lost.map((e) => e.sent)).toEqual([201]);
  });

  it('an async handler writes its headers (writeHead 200), then throws: the same', async () => {
    const { port, ran } = await expressApp(makeStore(), async (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      await tick(5);
      throw new Error('failed after the headers');
    });
    expect(await post(port)).toBe('cut off');
    await tick(50);
    const retry = await post(port);
    expect(ran.count).toBe(1);
    expectLost(retry as Exclude<typeof retry, string>);
  });

  it('a stream piped with pipeline() fails after its first chunk: the same', async () => {
    const { port, ran } = await expressApp(makeStore(), async (_req, res) => {
      res.status(201).type('text/plain');
      await pipeline(failsAfter('first chunk;'), res).catch(() => {});
    });
    expect(await post(port)).toBe('cut off');
    await tick(50);
    const retry = await post(port);
    expect(ran.count).toBe(1);
    expectLost(retry as Exclude<typeof retry, string>);
  });

  it('a stream piped with .pipe() fails after its first chunk, and the handler destroys the response: the same', async () => {
    const { port, ran } = await expressApp(makeStore(), (_req, res) => {
      res.status(201).type('text/plain');
      const source = failsAfter('first chunk;');
      source.on('error', (error) => res.destroy(error));
      source.pipe(res);
    });
    expect(await post(port)).toBe('cut off');
    await tick(50);
    const retry = await post(port);
    expect(ran.count).toBe(1);
    expectLost(retry as Exclude<typeof retry, string>);
  });

  it('a 5xx already sent, then a throw: released, as a whole 5xx is (the retry runs)', async () => {
    const { port, ran } = await expressApp(makeStore(), (_req, res, next) => {
      res.status(503).type('text/plain').write('down: ');
      next(new Error('and then it broke'));
    });
    expect(await post(port)).toBe('cut off');
    await tick(50);
    expect(await post(port)).toBe('cut off');
    expect(ran.count).toBe(2);
  });

  it('with store5xx, a 5xx already sent then cut off: the response-lost problem', async () => {
    const { port, ran } = await expressApp(
      makeStore(),
      (_req, res, next) => {
        res.status(503).type('text/plain').write('down: ');
        next(new Error('and then it broke'));
      },
      { store5xx: true },
    );
    expect(await post(port)).toBe('cut off');
    await tick(50);
    const retry = await post(port);
    expect(ran.count).toBe(1);
    expectLost(retry as Exclude<typeof retry, string>);
  });

  it('a safe method (GET guarded) cut off after its headers is released: the retry runs it again', async () => {
    const { port, ran } = await expressApp(
      makeStore(),
      (_req, res, next) => {
        res.status(200).type('text/plain').write('report: ');
        next(new Error('the report broke'));
      },
      { methods: ['GET', 'POST'] },
    );
    const get = () =>
      fetch(`http://127.0.0.1:${port}/orders`, {
        headers: { 'idempotency-key': 'g' },
        signal: AbortSignal.timeout(3_000),
      })
        .then((r) => r.text())
        .catch(() => 'cut off');
    expect(await get()).toBe('cut off');
    await tick(50);
    expect(await get()).toBe('cut off');
    expect(ran.count).toBe(2);
  });

  it('a handler that throws before its headers is still released (the 500 of the final handler): the retry runs', async () => {
    const { port, ran } = await expressApp(makeStore(), () => {
      throw new Error('failed before anything was sent');
    });
    const first = await post(port);
    expect(first !== 'cut off' && first.status).toBe(500);
    const retry = await post(port);
    expect(retry !== 'cut off' && retry.status).toBe(500);
    expect(ran.count).toBe(2);
  });
});

describe.each(stores)('Fastify, %s: a response the server closes once it began', (_name, makeStore) => {
  it('a stream reply that fails after its first chunk: the retry gets the response-lost problem, not a second run', async () => {
    const { port, ran } = await fastifyApp(makeStore(), (app, ran) => {
      app.post('/orders', async (_req, reply) => {
        ran.count++;
        return reply.code(201).type('text/plain').send(failsAfter('first chunk;'));
      });
    });
    expect(await post(port)).toBe('cut off');
    await tick(50);
    const retry = await post(port);
    expect(ran.count).toBe(1);
    expectLost(retry as Exclude<typeof retry, string>);
  });

  it('a stream reply that fails before any byte went: Fastify answers with its error handler, and the key is released (as a handler that throws)', async () => {
    const { port, ran } = await fastifyApp(makeStore(), (app, ran) => {
      app.post('/orders', async (_req, reply) => {
        ran.count++;
        const source = new Readable({ read() {} });
        setTimeout(() => source.destroy(new Error('could not open')), 10);
        return reply.code(201).type('text/plain').send(source);
      });
    });
    const first = await post(port);
    expect(first !== 'cut off' && first.status).toBe(500);
    const retry = await post(port);
    expect(retry !== 'cut off' && retry.status).toBe(500);
    expect(ran.count).toBe(2);
  });

  it('a stream reply destroyed without an error part way (premature close): the response-lost problem', async () => {
    const { port, ran } = await fastifyApp(makeStore(), (app, ran) => {
      app.post('/orders', async (_req, reply) => {
        ran.count++;
        const source = new Readable({ read() {} });
        source.push('first chunk;');
        setTimeout(() => source.destroy(), 30);
        return reply.code(201).type('text/plain').send(source);
      });
    });
    expect(await post(port)).toBe('cut off');
    await tick(50);
    const retry = await post(port);
    expect(ran.count).toBe(1);
    expectLost(retry as Exclude<typeof retry, string>);
  });

  it('reply.raw written (201) then the handler throws: the response-lost problem', async () => {
    const { port, ran } = await fastifyApp(makeStore(), (app, ran) => {
      app.post('/orders', async (_req, reply) => {
        ran.count++;
        reply.raw.writeHead(201, { 'content-type': 'text/plain' });
        reply.raw.write('payment made; ');
        await tick(5);
        throw new Error('failed after the headers');
      });
    });
    expect(await post(port)).toBe('cut off');
    await tick(50);
    const retry = await post(port);
    expect(ran.count).toBe(1);
    expectLost(retry as Exclude<typeof retry, string>);
  });

  it('reply.raw written (503) then the handler throws: released, as a 5xx is (the retry runs)', async () => {
    const { port, ran } = await fastifyApp(makeStore(), (app, ran) => {
      app.post('/orders', async (_req, reply) => {
        ran.count++;
        reply.raw.writeHead(503, { 'content-type': 'text/plain' });
        reply.raw.write('down; ');
        await tick(5);
        throw new Error('failed after the headers');
      });
    });
    expect(await post(port)).toBe('cut off');
    await tick(50);
    expect(await post(port)).toBe('cut off');
    expect(ran.count).toBe(2);
  });

  it('hijacked, reply.raw written (201) then the handler throws: the response-lost problem', async () => {
    const { port, ran } = await fastifyApp(makeStore(), (app, ran) => {
      app.post('/orders', async (_req, reply) => {
        ran.count++;
        reply.hijack();
        reply.raw.writeHead(201, { 'content-type': 'text/plain' });
        reply.raw.write('payment made; ');
        await tick(5);
        reply.raw.destroy();
        throw new Error('failed after the headers');
      });
    });
    expect(await post(port)).toBe('cut off');
    await tick(50);
    const retry = await post(port);
    expect(ran.count).toBe(1);
    expectLost(retry as Exclude<typeof retry, string>);
  });
});

describe.skipIf(!redisAvailable())('two instances on one Redis: a response cut off by one', () => {
  const redis = useRedisServer();
  // Each test's key 'k' starts unused.
  afterEach(async () => {
    await redis.clients[0]?.flushall();
  });
  const store = () => redisStore({ client: redis.connect() });

  it('Express: the 201 cut off on instance A; the retry on instance B gets the response-lost problem, one run in all', async () => {
    let runs = 0;
    const handler: express.RequestHandler = (_req, res, next) => {
      runs++;
      res.status(201).type('text/plain').write('payment made; ');
      next(new Error('the receipt renderer broke'));
    };
    const a = await expressApp(store(), handler);
    const b = await expressApp(store(), handler);
    expect(await post(a.port)).toBe('cut off');
    await tick(100);
    const retry = await post(b.port);
    expect(runs).toBe(1);
    expectLost(retry as Exclude<typeof retry, string>);
  });

  it('Fastify: a stream reply that fails midway on A; the retry on B gets the problem', async () => {
    let runs = 0;
    const setup = (app: FastifyInstance) =>
      app.post('/orders', async (_req, reply) => {
        runs++;
        return reply.code(201).type('text/plain').send(failsAfter('first chunk;'));
      });
    const a = await fastifyApp(store(), setup);
    const b = await fastifyApp(store(), setup);
    expect(await post(a.port)).toBe('cut off');
    await tick(100);
    const retry = await post(b.port);
    expect(runs).toBe(1);
    expectLost(retry as Exclude<typeof retry, string>);
  });
});
