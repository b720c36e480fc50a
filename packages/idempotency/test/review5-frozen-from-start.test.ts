import { once } from 'node:events';
import { createServer as createHttpServer } from 'node:http';
import { type AddressInfo, createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { createBus } from '@holdfast/core';
import express from 'express';
import Fastify from 'fastify';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runScript } from '../../../test/support/child.js';
import { type RedisServer, redisAvailable, startRedis } from '../../../test/support/redis.js';
import { idempotency } from '../src/express.js';
import { idempotency as fastifyIdempotency } from '../src/fastify.js';
import { idempotent, redisStore } from '../src/index.js';
import { closeAll, closers, listenNode } from './http-support/body-apps.js';
import { sendKeyed } from './http-support/leave.js';

// Redis frozen (SIGSTOP) from the start: its kernel still accepts the TCP connection, so the
// client sits in status "connect" (its handshake, CLIENT SETINFO and INFO, never answered); or
// Redis never started (ECONNREFUSED, a reconnect loop). A step waits for `ready` within its
// commandTimeout. These lock what happens when the client ends meanwhile (a shutdown's
// disconnect(), or ioredis giving up): the waiting step fails at once, so its timer (ref'd, a
// call's deadline) does not hold the process for the rest of commandTimeout after SIGINT.

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const clients = new Set<Redis>();
function client(port: number, options: RedisOptions = {}): Redis {
  // disconnectTimeout: how long ioredis waits for a frozen server to close the socket it ended.
  const c = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1, disconnectTimeout: 50, ...options });
  c.on('error', () => {});
  clients.add(c);
  return c;
}

// Not events.once: it rejects at the first 'error' (every refused reconnection attempt is one).
const ended = (c: Redis) =>
  new Promise<void>((resolve) => (c.status === 'end' ? resolve() : c.once('end', () => resolve())));
const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (error: Error & { code?: string }) => ({ code: error.code, message: error.message }),
  );

describe.skipIf(!redisAvailable())('redisStore() with Redis frozen from the start, its client ended', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    [redis] = (await startRedis(1)) as [RedisServer];
    redis.pause();
  });
  afterAll(async () => {
    for (const c of clients) c.disconnect();
    redis?.resume();
    await redis?.stop();
  });

  it('a claim waiting for the handshake fails at once when the client is disconnected (a shutdown)', async () => {
    const c = client(redis.port);
    await once(c, 'connect'); // TCP is up; the handshake will never be answered
    const store = redisStore({ client: c, commandTimeout: 3_000 });
    const claim = failure(store.claim('k', 'fp', 60_000));
    c.disconnect();
    await ended(c);
    // Before the fix it waited out commandTimeout, a ref'd timer holding the process after SIGINT.
    expect(await claim).toEqual({
      code: 'E_STORE_UNAVAILABLE',
      message: 'redisStore: claim of key "k" failed: the Redis client ended (quit, disconnect, or ioredis gave up)',
    });
    expect(c.listenerCount('ready') + c.listenerCount('end')).toBe(0);
  });

  it('a service stopped as on Ctrl-C (server closed, client disconnected) exits by itself, not after commandTimeout', async () => {
    process.env.REVIEW5_REDIS_PORT = String(redis.port);
    try {
      const run = await runScript(fileURLToPath(new URL('./fixtures/review5-shutdown-frozen.ts', import.meta.url)), {
        cwd: fileURLToPath(new URL('.', import.meta.url)),
        // Half its commandTimeout: before the fix the claim's timer held it 120 s. Room for a loaded
        // machine, where the child took over 10 s to start (its commandTimeout was 20 s then).
        killAfterMs: 60_000,
      });
      expect({ killed: run.killed, code: run.code, stdout: run.stdout.trim(), stderr: run.stderr }).toEqual({
        killed: false,
        code: 0,
        stdout: '{"status":503}',
        stderr: '',
      });
    } finally {
      delete process.env.REVIEW5_REDIS_PORT;
    }
  }, 90_000);

  it('Cluster: a claim waiting for a frozen startup node fails at once when the client is disconnected', async () => {
    const cluster = new Cluster([{ host: '127.0.0.1', port: redis.port }], { redisOptions: { disconnectTimeout: 50 } });
    cluster.on('error', () => {});
    // Its first slots refresh failed (it starts over) and the next round has begun: disconnected
    // before that, ioredis leaves a Cluster "disconnecting" with no `end` (the commandTimeout wait).
    // By condition: on a loaded machine the first refresh outlasted the first claim's 1.2 s.
    const pastFirstRefresh = new Promise<void>((resolve) =>
      cluster.once('reconnecting', () => cluster.once('connecting', () => setImmediate(resolve))),
    );
    try {
      // Refused within its bound first.
      const first = redisStore({ client: cluster, commandTimeout: 1_200 });
      expect((await failure(first.claim('k', 'fp', 60_000)))?.code).toBe('E_STORE_UNAVAILABLE');
      await pastFirstRefresh;
      const store = redisStore({ client: cluster, commandTimeout: 3_000 });
      const claim = failure(store.claim('k', 'fp', 60_000));
      cluster.disconnect();
      expect((await claim)?.message).toBe(
        'redisStore: claim of key "k" failed: the Redis client ended (quit, disconnect, or ioredis gave up)',
      );
      expect(cluster.listenerCount('ready') + cluster.listenerCount('end')).toBe(0);
    } finally {
      cluster.disconnect();
    }
  });

  it('Sentinel: disconnected while it asks a frozen sentinel for the master, ioredis never ends it: the wait is commandTimeout, no longer', async () => {
    // ioredis leaves such a client in "connecting" and emits no `end`: nothing tells the store it
    // is closed, so a step there waits out its commandTimeout (bounded), then lets go of the client.
    const sentinel = new Redis({ sentinels: [{ host: '127.0.0.1', port: redis.port }], name: 'mymaster' });
    sentinel.on('error', () => {});
    clients.add(sentinel);
    const store = redisStore({ client: sentinel, commandTimeout: 300 });
    const claim = failure(store.claim('k', 'fp', 60_000));
    sentinel.disconnect();
    expect(await claim).toEqual({
      code: 'E_STORE_UNAVAILABLE',
      message:
        'redisStore: claim of key "k" failed: Redis is not connected (client status "connecting") and did not reconnect within 300 ms',
    });
    expect(sentinel.listenerCount('ready') + sentinel.listenerCount('end')).toBe(0);
  });

  it('a claim waiting on a client that never connected fails at once when ioredis gives up', async () => {
    // Redis never started: one reconnection attempt, then retryStrategy gives up and the client ends.
    let attempts = 0;
    const c = client(await closedPort(), { retryStrategy: () => (++attempts <= 1 ? 100 : null) });
    const store = redisStore({ client: c, commandTimeout: 3_000 });
    const claims = [failure(store.claim('a', 'fp', 60_000)), failure(store.claim('b', 'fp', 60_000))];
    await ended(c);
    for (const claim of await Promise.all(claims)) {
      expect(claim?.code).toBe('E_STORE_UNAVAILABLE');
      expect(claim?.message).toContain('the Redis client ended');
    }
    // A step after that fails at once too (it did already).
    expect((await failure(store.claim('c', 'fp', 60_000)))?.message).toContain('the Redis client ended');
  });
});

/**
 * Each face (Express, Fastify, idempotent()) with Redis down or frozen at each moment: every call
 * ends within its bound (a 503 or E_STORE_UNAVAILABLE, the handler not run), a handler runs once
 * however the store fails around it, and everything closes. sendKeyed aborts after 3 s: a call
 * that hangs fails the test.
 */
describe.skipIf(!redisAvailable())('each face with Redis frozen or down from the start', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    [redis] = (await startRedis(1)) as [RedisServer];
  });
  afterEach(async () => {
    redis.resume();
    await closeAll();
    for (const c of clients) c.disconnect();
    clients.clear();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  /** Called inside the handler, before it returns (mid-complete freezes Redis there). */
  let during: () => void = () => {};
  type Face = (c: Redis) => Promise<{ call(key: string): Promise<string>; ran: Map<string, number> }>;
  const count = (ran: Map<string, number>, key: string) => ran.set(key, (ran.get(key) ?? 0) + 1);
  const storeOf = (c: Redis) =>
    redisStore({ client: c, prefix: `review5:${Math.random().toString(36).slice(2)}:`, commandTimeout: 300 });
  const httpOptions = (c: Redis) => ({
    store: storeOf(c),
    scope: 'global' as const,
    bus: createBus(),
    storeTimeoutMs: 300,
    completeTimeoutMs: 1_000,
  });
  const http = async (port: number, key: string) => {
    const { status, replayed, body } = await sendKeyed(`http://127.0.0.1:${port}/orders`, key);
    return status === 503 ? '503' : `${status}${replayed === 'true' ? ' replayed' : ''} ${body}`;
  };
  const faces: [string, Face][] = [
    [
      'Express',
      async (c) => {
        const app = express();
        app.use(idempotency(httpOptions(c)));
        const ran = new Map<string, number>();
        app.post('/orders', (req, res) => {
          const key = String(req.headers['idempotency-key']);
          count(ran, key);
          during();
          res.status(201).send(`made ${key}`);
        });
        const port = await listenNode(createHttpServer(app));
        return { call: (key) => http(port, key), ran };
      },
    ],
    [
      'Fastify',
      async (c) => {
        const app = Fastify();
        await app.register(fastifyIdempotency, httpOptions(c));
        app.addContentTypeParser('text/plain', { parseAs: 'string' }, (_r, body, done) => done(null, body));
        const ran = new Map<string, number>();
        app.post('/orders', async (req, reply) => {
          const key = String(req.headers['idempotency-key']);
          count(ran, key);
          during();
          return reply.code(201).send(`made ${key}`);
        });
        await app.listen({ port: 0, host: '127.0.0.1' });
        closers.push(() => app.close());
        const { port } = app.server.address() as AddressInfo;
        return { call: (key) => http(port, key), ran };
      },
    ],
    [
      'idempotent()',
      async (c) => {
        const ran = new Map<string, number>();
        const run = idempotent(
          (key: string) => {
            count(ran, key);
            during();
            return `made ${key}`;
          },
          { store: storeOf(c), key: (key) => key, bus: createBus() },
        );
        const call = (key: string): Promise<string> =>
          run(key).then(
            (value) => value,
            (error: { code?: string }) => String(error.code),
          );
        return { call, ran };
      },
    ],
  ];

  describe.each(faces)('%s', (name, face) => {
    const refused = name === 'idempotent()' ? 'E_STORE_UNAVAILABLE' : '503';
    const made = (key: string) => (name === 'idempotent()' ? `made ${key}` : `201 made ${key}`);

    it('Redis never started: refused within the bound, not run', async () => {
      const { call, ran } = await face(client(await closedPort()));
      expect(await call('a')).toBe(refused);
      expect(await call('a')).toBe(refused);
      expect(ran.size).toBe(0);
    });

    it('Redis frozen before the client connected (handshake never answered): refused, not run; run once when back', async () => {
      redis.pause();
      const c = client(redis.port);
      const { call, ran } = await face(c);
      expect(await call('a')).toBe(refused);
      expect(c.status).toBe('connect');
      redis.resume();
      await new Promise<void>((resolve) => (c.status === 'ready' ? resolve() : c.once('ready', () => resolve())));
      expect(await call('a')).toBe(made('a'));
      expect(Object.fromEntries(ran)).toEqual({ a: 1 });
    });

    it('Redis frozen just after ready (the claim sent, never answered): refused, not run; once when back', async () => {
      const c = client(redis.port);
      await new Promise<void>((resolve) => c.once('ready', () => resolve()));
      const { call, ran } = await face(c);
      redis.pause();
      expect(await call('a')).toBe(refused);
      expect(await call('b')).toBe(refused);
      redis.resume();
      // The claims land once Redis is back, each withdrawn behind it: 'a' runs once (409s meanwhile).
      let answer = await call('a');
      for (let i = 0; i < 100 && answer !== made('a'); i++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        answer = await call('a');
      }
      expect(answer).toBe(made('a'));
      expect(Object.fromEntries(ran)).toEqual({ a: 1 });
    });

    it('Redis frozen mid-complete: the result goes out within the bound, and the handler never runs again', async () => {
      const c = client(redis.port);
      await new Promise<void>((resolve) => c.once('ready', () => resolve()));
      const { call, ran } = await face(c);
      during = () => redis.pause();
      try {
        expect(await call('a')).toBe(made('a'));
      } finally {
        during = () => {};
      }
      redis.resume();
      let answer = await call('a');
      for (let i = 0; i < 100 && !answer.startsWith(name === 'idempotent()' ? 'made' : '201'); i++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        answer = await call('a');
      }
      // The completion queued on the frozen connection landed once Redis was back: a replay.
      expect(answer).toBe(name === 'idempotent()' ? 'made a' : '201 replayed made a');
      expect(Object.fromEntries(ran)).toEqual({ a: 1 });
    });
  });
});
