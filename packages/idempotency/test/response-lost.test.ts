import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createBus, type EventOf } from '@holdfast/core';
import express from 'express';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { idempotency as fastifyIdempotency } from '../src/fastify.js';
import { type IdempotencyStore, memoryStore } from '../src/index.js';
import { closeAll, closers, listenNode } from './http-support/body-apps.js';
import { expectLost, gate, keyedPost, leaveWhile, sendKeyed, settledRetry } from './http-support/leave.js';
import { slowStore } from './http-support/slow-store.js';

/**
 * A keyed request whose effect happened, and whose response its client did not get whole: the
 * client left part way through a streamed response, or the handler wrote where the middleware
 * does not look (Fastify's `reply.raw`, unhijacked). Its key was released, and the client's
 * retry ran the handler a second time. Now the response is stored whole when the handler ends
 * it; when it never will, a problem that says the request was processed and its response lost
 * is stored for the key: the retry gets it, and never runs the handler again.
 */
afterEach(closeAll);

const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const stores: [string, () => IdempotencyStore][] = [
  ['memoryStore()', () => memoryStore()],
  ['a store in another process', () => slowStore({ completeMs: 20 })],
];

/** A bus, and the `idempotency.lost` events it carried: each run whose response was lost, once. */
function watchLost() {
  const bus = createBus();
  const lost: EventOf<'idempotency.lost'>[] = [];
  bus.on('idempotency.lost', (e) => lost.push(e));
  return { bus, lost };
}

const retry = (port: number) => sendKeyed(`http://127.0.0.1:${port}/orders`);

async function expressApp(
  store: IdempotencyStore,
  handler: express.RequestHandler,
  leaseMs = 60_000,
  store5xx = false,
) {
  const app = express();
  const { bus, lost } = watchLost();
  app.use(idempotency({ store, scope: 'global', bus, leaseMs, maxRunMs: leaseMs, store5xx }));
  const ran = { count: 0, lost };
  app.post('/orders', (req, res, next) => {
    ran.count++;
    handler(req, res, next);
  });
  return { port: await listenNode(createServer(app)), ran };
}

async function fastifyApp(
  setup: (app: FastifyInstance, ran: { count: number }) => void,
  leaseMs = 60_000,
  store5xx = false,
) {
  const app = Fastify();
  closers.push(() => app.close());
  const { bus, lost } = watchLost();
  await app.register(fastifyIdempotency, {
    store: memoryStore(),
    scope: 'global',
    bus,
    leaseMs,
    maxRunMs: leaseMs,
    store5xx,
  });
  const ran = { count: 0, lost };
  setup(app, ran);
  await app.listen({ port: 0, host: '127.0.0.1' });
  return { port: (app.server.address() as AddressInfo).port, ran };
}

describe('express: a streamed response whose client leaves part way', () => {
  it.each(stores)(
    'the handler then ends it: stored whole (%s); the retry gets the replay, the handler ran once',
    async (_, store) => {
      const wrote = gate();
      const more = gate();
      const { port, ran } = await expressApp(store(), async (_req, res) => {
        res.status(201).type('text/plain');
        res.write('part one, ');
        wrote.open();
        await more.opened; // the order is made while the client is away
        res.write('part two');
        res.end();
      });
      const read = await leaveWhile(
        port,
        keyedPost('/orders'),
        wrote.opened.then(() => tick(20)),
        'part one',
      );
      expect(read).toContain('part one');
      await tick(20);
      more.open();
      const answer = await settledRetry(port);
      expect(answer).toMatchObject({
        status: 201,
        replayed: 'true',
        type: 'text/plain; charset=utf-8',
        body: 'part one, part two',
      });
      expect(ran.count).toBe(1);
      expect(ran.lost).toEqual([]);
    },
  );

  it.each([
    ['pipe', (source: Readable, res: express.Response) => source.pipe(res)],
    ['pipeline', (source: Readable, res: express.Response) => pipeline(source, res).catch(() => {})],
  ])(
    'a stream %s()d to it, which the client leaving stops (never ended): the response-lost problem at once, not a 409 for the lease; never a second run',
    async (_, pipe) => {
      const wrote = gate();
      const { port, ran } = await expressApp(
        memoryStore(),
        (_req, res) => {
          const source = new Readable({ read() {} });
          res.status(201).type('text/plain');
          pipe(source, res);
          source.push('report line 1\n');
          wrote.open();
        },
        400,
      );
      await leaveWhile(
        port,
        keyedPost('/orders'),
        wrote.opened.then(() => tick(20)),
      );
      let answer = await retry(port);
      // Settled as the server sees the client go: at most a few turns, far below the 400 ms lease.
      for (let turn = 0; turn < 10 && answer.status === 409; turn++) answer = await tick(10).then(() => retry(port));
      expectLost(answer);
      await tick(450); // past the lease: no takeover
      expectLost(await retry(port));
      expect(ran.count).toBe(1);
      expect(ran.lost.map((e) => [e.type, e.sent])).toEqual([['idempotency.lost', 201]]);
    },
  );

  it('a handler that stops without answering once its client left: the response-lost problem at its lease end, not a takeover', async () => {
    const running = gate();
    const { port, ran } = await expressApp(
      memoryStore(),
      (req) => {
        running.open();
        req.once('close', () => {}); // the charge was made; nobody to answer
      },
      400,
    );
    await leaveWhile(port, keyedPost('/orders'), running.opened);
    expectLost(await settledRetry(port));
    expect(ran.count).toBe(1);
    expect(ran.lost.map((e) => e.sent)).toEqual([undefined]);
  });
});

describe('fastify: a response the plugin cannot store whole', () => {
  it.each([
    ['async', true],
    ['sync', false],
  ])(
    'written on reply.raw without reply.hijack() (%s handler): the retry gets the response-lost problem, the handler ran once',
    async (_, isAsync) => {
      const { port, ran } = await fastifyApp((app, ran) => {
        const answer = (reply: { raw: import('node:http').ServerResponse }) => {
          ran.count++;
          reply.raw.writeHead(201, { 'content-type': 'text/plain' });
          reply.raw.end('made');
        };
        if (isAsync) {
          app.post('/orders', async (_request, reply) => {
            answer(reply);
          });
        } else {
          app.post('/orders', (_request, reply) => {
            answer(reply);
          });
        }
      });
      const first = await retry(port);
      expect({ status: first.status, body: first.body }).toEqual({ status: 201, body: 'made' });
      expectLost(await settledRetry(port));
      expect(ran.count).toBe(1);
      expect(ran.lost.map((e) => e.sent)).toEqual([201]);
    },
  );

  it.each([
    ['a sync handler that never answers', false],
    ['an async handler whose promise never settles', true],
  ])('%s once its client left: the response-lost problem at its lease end, not a takeover', async (_, isAsync) => {
    const running = gate();
    const { port, ran } = await fastifyApp((app, ran) => {
      if (isAsync) {
        app.post('/orders', async () => {
          ran.count++;
          running.open();
          await new Promise(() => {}); // waits on a lock that is never freed
        });
      } else {
        app.post('/orders', () => {
          ran.count++;
          running.open(); // answers from a callback that never comes
        });
      }
    }, 400);
    await leaveWhile(port, keyedPost('/orders'), running.opened);
    expectLost(await settledRetry(port));
    expect(ran.count).toBe(1);
    expect(ran.lost.map((e) => e.sent)).toEqual([undefined]);
  });

  it('a reply.send(stream) whose client leaves part way: the response-lost problem, the handler ran once', async () => {
    const wrote = gate();
    const { port, ran } = await fastifyApp((app, ran) => {
      app.post('/orders', async (_request, reply) => {
        ran.count++;
        const source = new Readable({ read() {} });
        source.push('report line 1\n');
        setImmediate(() => wrote.open());
        return reply.code(201).type('text/plain').send(source);
      });
    });
    await leaveWhile(
      port,
      keyedPost('/orders'),
      wrote.opened.then(() => tick(20)),
    );
    expectLost(await settledRetry(port));
    expect(ran.count).toBe(1);
    expect(ran.lost.map((e) => e.sent)).toEqual([201]);
  });

  it('hijacked, its client leaves part way, then the handler ends it: stored whole, the handler ran once', async () => {
    const wrote = gate();
    const more = gate();
    const { port, ran } = await fastifyApp((app, ran) => {
      app.post('/orders', async (_request, reply) => {
        ran.count++;
        reply.hijack();
        reply.raw.writeHead(201, { 'content-type': 'text/plain' });
        reply.raw.write('part one, ');
        wrote.open();
        await more.opened;
        reply.raw.end('part two');
      });
    });
    await leaveWhile(
      port,
      keyedPost('/orders'),
      wrote.opened.then(() => tick(20)),
    );
    await tick(20);
    more.open();
    expect(await settledRetry(port)).toMatchObject({
      status: 201,
      replayed: 'true',
      type: 'text/plain',
      body: 'part one, part two',
    });
    expect(ran.count).toBe(1);
    expect(ran.lost).toEqual([]);
  });

  /**
   * A 5xx the handler sent is its failure, whether or not its client got all of it: released by
   * default (store5xx off), as a whole one is, so the retry runs; the response-lost problem with
   * store5xx. (The response-lost problem made it the key's answer, and the retry never ran.)
   */
  it.each([
    [false, 2],
    [true, 1],
  ])('written on reply.raw unhijacked with a 502, store5xx %s: the handler ran %i times', async (store5xx, runs) => {
    const { port, ran } = await fastifyApp(
      (app, ran) => {
        app.post('/orders', async (_request, reply) => {
          ran.count++;
          reply.raw.writeHead(502, { 'content-type': 'text/plain' });
          reply.raw.end('upstream failed');
        });
      },
      60_000,
      store5xx,
    );
    expect((await retry(port)).status).toBe(502);
    const second = await settledRetry(port);
    if (store5xx) expectLost(second);
    else expect(second).toMatchObject({ status: 502, replayed: null });
    expect(ran.count).toBe(runs);
    expect(ran.lost.map((e) => e.sent)).toEqual(store5xx ? [502] : []);
  });
});

describe('express: a streamed 5xx whose client leaves part way', () => {
  it.each([
    [false, 2],
    [true, 1],
  ])('a stream piped under a 503, store5xx %s: the handler ran %i times', async (store5xx, runs) => {
    const wrote = gate();
    const { port, ran } = await expressApp(
      memoryStore(),
      (_req, res) => {
        const source = new Readable({ read() {} });
        res.status(503).type('text/plain');
        source.pipe(res);
        source.push('partial failure report\n');
        if (ran.count === 1) wrote.open();
        else source.push(null);
      },
      60_000,
      store5xx,
    );
    await leaveWhile(
      port,
      keyedPost('/orders'),
      wrote.opened.then(() => tick(20)),
    );
    const second = await settledRetry(port);
    if (store5xx) expectLost(second);
    else expect(second).toMatchObject({ status: 503, replayed: null });
    expect(ran.count).toBe(runs);
  });
});
