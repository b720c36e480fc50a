import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBus } from '@holdfast/core';
import express from 'express';
import Fastify from 'fastify';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis } from '../../../test/support/redis.js';
import { idempotency } from '../src/express.js';
import { idempotency as fastifyIdempotency } from '../src/fastify.js';
import { redisStore } from '../src/index.js';
import { closeAll, closers, listenNode } from './http-support/body-apps.js';
import { gate, keyedPost, rawClient, settledRetry, tick } from './http-support/leave.js';

const settled = async (port: number, key: string) => {
  const { status, replayed, body } = await settledRetry(port, key);
  return { status, replayed, body };
};

describe.skipIf(!redisAvailable())('Redis freezing while pipelined keyed requests run', () => {
  let server: RedisServer;
  const clients: Redis[] = [];
  beforeAll(async () => {
    [server] = (await startRedis(1)) as [RedisServer];
  });
  afterEach(async () => {
    server.resume();
    await closeAll();
  });
  afterAll(async () => {
    for (const client of clients) client.disconnect();
    await server?.stop();
  });
  const store = () => {
    const client = new Redis(server.url, { maxRetriesPerRequest: 1 });
    client.on('error', () => {});
    clients.push(client);
    return redisStore({ client, prefix: `review4:${Math.random().toString(36).slice(2)}:`, commandTimeout: 300 });
  };
  const options = () => ({
    store: store(),
    scope: 'global' as const,
    bus: createBus(),
    leaseMs: 5_000,
    storeTimeoutMs: 300,
    completeTimeoutMs: 3_000,
  });

  type Start = (handler: (key: string) => Promise<void>) => Promise<{ port: number; ran: Map<string, number> }>;
  const starts: [string, Start][] = [
    [
      'Express',
      async (wait) => {
        const app = express();
        app.use(idempotency(options()));
        const ran = new Map<string, number>();
        app.post('/orders', async (req, res) => {
          const key = String(req.headers['idempotency-key']);
          ran.set(key, (ran.get(key) ?? 0) + 1);
          await wait(key);
          res.status(201).send(`made ${key}`);
        });
        return { port: await listenNode(createServer(app)), ran };
      },
    ],
    [
      'Fastify',
      async (wait) => {
        const app = Fastify();
        await app.register(fastifyIdempotency, options());
        app.addContentTypeParser('text/plain', { parseAs: 'string' }, (_r, body, done) => done(null, body));
        const ran = new Map<string, number>();
        app.post('/orders', async (req, reply) => {
          const key = String(req.headers['idempotency-key']);
          ran.set(key, (ran.get(key) ?? 0) + 1);
          await wait(key);
          return reply.code(201).send(`made ${key}`);
        });
        await app.listen({ port: 0, host: '127.0.0.1' });
        closers.push(() => app.close());
        return { port: (app.server.address() as AddressInfo).port, ran };
      },
    ],
  ];

  describe.each(starts)('%s', (_, start) => {
    it('frozen while both responses are stored, the client leaving meanwhile: each stored once back, ran once', async () => {
      const both = gate();
      const release = gate();
      let started = 0;
      const { port, ran } = await start(async () => {
        if (++started === 2) both.open();
        await release.opened;
      });
      const { socket, read } = await rawClient(port);
      socket.write(keyedPost('/orders', 'a') + keyedPost('/orders', 'b'));
      await both.opened;
      server.pause();
      release.open();
      await tick(400);
      socket.destroy();
      await tick(300);
      server.resume();
      await tick(300);
      const a = await settled(port, 'a');
      const b = await settled(port, 'b');
      expect(read()).toBe(''); // nothing went before it was stored
      expect(Object.fromEntries(ran)).toEqual({ a: 1, b: 1 });
      expect([a, b]).toEqual([
        { status: 201, replayed: 'true', body: 'made a' },
        { status: 201, replayed: 'true', body: 'made b' },
      ]);
    }, 15_000);

    it('frozen while both are claimed: 503 for both, nothing ran, and the retries run each once', async () => {
      const { port, ran } = await start(async () => {});
      server.pause();
      const { socket, read } = await rawClient(port);
      socket.write(keyedPost('/orders', 'a') + keyedPost('/orders', 'b'));
      for (let i = 0; i < 100 && (read().match(/HTTP\/1\.1 /g) ?? []).length < 2; i++) await tick(20);
      socket.destroy();
      expect([...read().matchAll(/HTTP\/1\.1 (\d+)/g)].map((m) => m[1])).toEqual(['503', '503']);
      server.resume();
      await tick(300);
      const a = await settled(port, 'a');
      const b = await settled(port, 'b');
      expect(Object.fromEntries(ran)).toEqual({ a: 1, b: 1 });
      expect([a.status, b.status]).toEqual([201, 201]);
    }, 15_000);
  });
});
