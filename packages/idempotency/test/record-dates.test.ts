import type { AddressInfo } from 'node:net';
import { createBus, ManualClock } from '@holdfast/core';
import express from 'express';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency as expressIdempotency } from '../src/express.js';
import { idempotency as fastifyIdempotency } from '../src/fastify.js';
import { memoryStore } from '../src/index.js';
import { send, settableClock } from './http-support/support.js';

// A memoryStore() record keeps its times as milliseconds since the store was made (a small
// integer V8 keeps in the record itself, where epoch ms were a number object of their own per
// record), and shows them as epoch ms. What a user sees must not change: the records' createdAt
// and completedAt, and the createdAt of the 'idempotency.replay' event, which the HTTP middleware
// reads from the store's own record (on Fastify, also when it replays before parsing the body).

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((close) => close()));
});

const BODY = '{"amount":4200}';
const EPOCH = 1_765_000_000_000;

/** The status of a POST of BODY under `key` (send() of http-support). */
async function post(url: string, key: string): Promise<number> {
  return (await send(url, { key, raw: BODY, contentType: 'application/json' })).status;
}

describe('memoryStore record dates', () => {
  it('are epoch ms as the clock read them, also 2^31 ms and more after the store was made, and fractions', async () => {
    const clock = new ManualClock(EPOCH + 0.25);
    const store = memoryStore({ clock });
    for (const [key, after] of [
      ['a', 1_000],
      ['b', 2 ** 31 + 7],
      ['c', 3e9 + 0.5],
      ['d', -5_000],
    ] as const) {
      const claimedAt = EPOCH + 0.25 + after;
      await clock.advance(claimedAt - clock.now());
      const claim = await store.claim(key, 'f', 60_000);
      if (claim.status !== 'claimed') throw new Error(claim.status);
      await clock.advance(125);
      await store.complete(key, claim.token, { kind: 'value', value: 1 }, 60_000);
      const replay = await store.claim(key, 'f', 60_000);
      if (replay.status !== 'completed') throw new Error(`${key}: ${replay.status}`);
      expect([key, replay.record.createdAt, replay.record.completedAt]).toEqual([key, claimedAt, claimedAt + 125]);
    }
    store.dispose();
  });

  for (const framework of ['fastify', 'express'] as const) {
    it(`${framework}: the replay event's createdAt is the first request's claim, in epoch ms`, async () => {
      const wall = settableClock(EPOCH);
      const store = memoryStore({ clock: wall.clock });
      const bus = createBus();
      const replays: { key: string; createdAt?: number }[] = [];
      bus.on('idempotency.replay', (event) => replays.push(event));
      let runs = 0;
      let url: string;
      if (framework === 'fastify') {
        const app = Fastify();
        closers.push(() => app.close());
        await app.register(fastifyIdempotency, { store, scope: 'global', bus });
        app.post('/orders', async (_request, reply) => reply.code(201).send({ id: ++runs }));
        await app.listen({ port: 0, host: '127.0.0.1' });
        url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/orders`;
      } else {
        const app = express();
        app.use(expressIdempotency({ store, scope: 'global', bus }));
        app.use(express.json());
        app.post('/orders', (_req, res) => {
          res.status(201).json({ id: ++runs });
        });
        const server = app.listen(0, '127.0.0.1');
        await new Promise((resolve) => server.once('listening', resolve));
        closers.push(() => new Promise((resolve) => server.close(resolve)));
        url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/orders`;
      }
      wall.set(EPOCH + 3_000_000_123);
      expect(await post(url, 'k-1')).toBe(201);
      wall.set(EPOCH + 3_000_009_999);
      // Over a socket: on Fastify, answered before the body is parsed (the early replay).
      expect(await post(url, 'k-1')).toBe(201);
      expect(runs).toBe(1);
      expect(replays.map((event) => [event.key, event.createdAt])).toEqual([['k-1', EPOCH + 3_000_000_123]]);
      if (framework === 'fastify') {
        // Decided after parsing too (inject's body is pushed only when read: no early replay).
        const app = Fastify();
        closers.push(() => app.close());
        await app.register(fastifyIdempotency, { store, scope: 'global', bus });
        app.post('/orders', async (_request, reply) => reply.code(201).send({ id: ++runs }));
        const injected = await app.inject({
          method: 'POST',
          url: '/orders',
          headers: { 'content-type': 'application/json', 'idempotency-key': 'k-1' },
          payload: BODY,
        });
        expect(injected.statusCode).toBe(201);
        expect(replays.map((event) => event.createdAt)).toEqual([EPOCH + 3_000_000_123, EPOCH + 3_000_000_123]);
      }
      store.dispose();
    });
  }
});
