import { Agent, request } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { type IdempotencyStore, memoryStore, type RedisClient, redisStore } from '@holdfast/idempotency';
import { idempotency as expressIdempotency } from '@holdfast/idempotency/express';
import { idempotency as fastifyIdempotency } from '@holdfast/idempotency/fastify';
import { redisAvailable, startRedis, stopAllRedis } from '../test/support/redis.js';
import { median, printRows } from './harness.js';

// The load comes from a keep-alive node:http client in this process (bounded in time, like
// autocannon -d); the frameworks are loaded lazily so `pnpm bench core` does not pay for them.
const require = createRequire(import.meta.url);

type Handler = (req: unknown, res: unknown) => void;
interface Server {
  readonly port: number;
  close(): Promise<void>;
}

const DURATION_MS = 1_000;
const WARMUP_MS = 500;
const CONCURRENCY = 32;
const ROUNDS = 5;
const BODY = JSON.stringify({ amount: 4200, currency: 'eur', customer: 'cus_123' });

async function expressApp(store: IdempotencyStore | undefined): Promise<Server> {
  const express = require('express') as {
    (): { use(...h: unknown[]): void; post(path: string, h: Handler): void; listen(port: number, host: string): never };
    json(): unknown;
  };
  const app = express();
  // The recommended order: the middleware reads the body's bytes, then the parser.
  if (store) app.use(expressIdempotency({ store, scope: 'global' }));
  app.use(express.json());
  let n = 0;
  app.post('/orders', (_req, res) => {
    (res as { status(s: number): { json(b: unknown): void } }).status(201).json({ id: ++n, amount: 4200 });
  });
  const server = app.listen(0, '127.0.0.1') as import('node:http').Server;
  await new Promise<void>((resolve) => server.once('listening', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function fastifyApp(store: IdempotencyStore | undefined): Promise<Server> {
  const Fastify = require('fastify') as () => FastifyLike;
  const app = Fastify();
  if (store) await app.register(fastifyIdempotency, { store, scope: 'global' });
  let n = 0;
  app.post('/orders', async (_req, reply) => reply.code(201).send({ id: ++n, amount: 4200 }));
  await app.listen({ port: 0, host: '127.0.0.1' });
  return { port: (app.server.address() as AddressInfo).port, close: () => app.close() };
}

/** The little of Fastify this bench uses (its types do not resolve from bench/). */
interface FastifyLike {
  register(plugin: unknown, options: unknown): PromiseLike<unknown>;
  post(
    path: string,
    handler: (req: unknown, reply: { code(status: number): { send(body: unknown): unknown } }) => unknown,
  ): void;
  listen(options: { port: number; host: string }): Promise<string>;
  readonly server: import('node:http').Server;
  close(): Promise<void>;
}

interface LoadResult {
  readonly rps: number;
  readonly p99: number;
}

/** One request, awaited: its status must be 201. */
function send(port: number, key: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const headers = { 'content-type': 'application/json', 'idempotency-key': key };
    const req = request({ port, host: '127.0.0.1', path: '/orders', method: 'POST', headers }, (res) => {
      res.resume();
      res.once('end', () => (res.statusCode === 201 ? resolve() : reject(new Error(`status ${res.statusCode}`))));
    });
    req.once('error', reject);
    req.end(BODY);
  });
}

/** `CONCURRENCY` keep-alive connections sending POSTs back to back for `duration` ms. */
async function load(port: number, key: (() => string) | undefined, duration = DURATION_MS): Promise<LoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const latencies: number[] = [];
  const deadline = performance.now() + duration;
  const one = () =>
    new Promise<void>((resolve, reject) => {
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (key) headers['idempotency-key'] = key();
      const start = performance.now();
      const req = request({ port, host: '127.0.0.1', path: '/orders', method: 'POST', agent, headers }, (res) => {
        if (res.statusCode !== 201) reject(new Error(`status ${res.statusCode}`));
        res.resume();
        res.once('end', () => {
          latencies.push(performance.now() - start);
          resolve();
        });
      });
      req.once('error', reject);
      req.end(BODY);
    });
  const worker = async () => {
    while (performance.now() < deadline) await one();
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const elapsed = performance.now() - started;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  return {
    rps: (latencies.length / elapsed) * 1000,
    p99: latencies[Math.floor(latencies.length * 0.99)] ?? Number.NaN,
  };
}

interface Case {
  readonly name: string;
  readonly server: Server;
  readonly key: (() => string) | undefined;
}

async function measure(title: string, cases: readonly Case[]): Promise<void> {
  const rps: Record<string, number[]> = {};
  const p99: Record<string, number[]> = {};
  // Store the replayed key's record first, then let the JIT settle.
  for (const c of cases) if (c.key) await send(c.server.port, c.key());
  for (const c of cases) await load(c.server.port, c.key, WARMUP_MS);
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < cases.length; i++) {
      const c = cases[(i + round) % cases.length] as Case;
      const result = await load(c.server.port, c.key);
      (rps[c.name] ??= []).push(result.rps);
      (p99[c.name] ??= []).push(result.p99);
    }
  }
  const base = median(rps[cases[0]?.name ?? ''] ?? []);
  printRows(
    title,
    ['variant', 'req/s', 'p99 ms', '× bare req/s'],
    cases.map((c) => {
      const r = median(rps[c.name] ?? []);
      return [c.name, r.toFixed(0), median(p99[c.name] ?? []).toFixed(2), (r / base).toFixed(2)];
    }),
  );
  console.log(
    `(median of ${ROUNDS} rounds of ${DURATION_MS} ms, ${CONCURRENCY} keep-alive connections, order rotated each round)`,
  );
}

export async function benchHttp(): Promise<void> {
  let redis: { client: { disconnect(): void }; store: () => IdempotencyStore } | undefined;
  if (redisAvailable()) {
    const [server] = await startRedis(1);
    if (!server) throw new Error('no redis-server');
    const { Redis } = require('ioredis') as {
      Redis: new (port: number, host: string) => RedisClient & { disconnect(): void };
    };
    const client = new Redis(server.port, server.host);
    redis = { client, store: () => redisStore({ client, prefix: 'bench-http:' }) };
  }
  let fresh = 0;
  const unique = () => `key-${++fresh}`;
  const same = () => 'the-same-key';
  try {
    for (const [name, make] of [
      ['Express 5', expressApp],
      ['Fastify 5', fastifyApp],
    ] as const) {
      const servers = [await make(undefined), await make(memoryStore({ maxEntries: 100_000 }))];
      const cases: Case[] = [
        { name: `bare ${name}`, server: servers[0] as Server, key: undefined },
        { name: 'memoryStore, first requests', server: servers[1] as Server, key: unique },
        { name: 'memoryStore, replays', server: servers[1] as Server, key: same },
      ];
      if (redis) {
        const server = await make(redis.store());
        servers.push(server);
        cases.push(
          { name: 'redisStore, first requests', server, key: unique },
          { name: 'redisStore, replays', server, key: same },
        );
      }
      try {
        await measure(`${name} + Idempotency-Key middleware, POST /orders over loopback`, cases);
      } finally {
        for (const server of servers) await server.close();
      }
    }
  } finally {
    redis?.client.disconnect();
    await stopAllRedis();
  }
}
