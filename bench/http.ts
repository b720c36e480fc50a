import { spawn } from 'node:child_process';
import { Agent, request } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { type IdempotencyStore, memoryStore, type RedisClient, redisStore } from '@holdfast/idempotency';
import { idempotency as expressIdempotency } from '@holdfast/idempotency/express';
import { idempotency as fastifyIdempotency } from '@holdfast/idempotency/fastify';
import { redisAvailable, startRedis, stopAllRedis } from '../test/support/redis.js';
import { median, printRows } from './harness.js';
import { floorPlugin } from './http-floor.js';

// The load comes from a keep-alive node:http client in this process (bounded in time, like
// autocannon -d); the frameworks are loaded lazily so `pnpm bench core` does not pay for them.
// The client shares the server's thread, so its work dilutes every ratio: each round also loads a
// bare server in a child process, where this process's CPU time is the client's alone, and the
// tables print the client's share of each row and the ratio of the server's own CPU time.
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

async function fastifyApp(store: IdempotencyStore | 'floor' | undefined): Promise<Server> {
  const Fastify = require('fastify') as () => FastifyLike;
  const app = Fastify();
  if (store === 'floor') await app.register(floorPlugin, {});
  else if (store) await app.register(fastifyIdempotency, { store, scope: 'global' });
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
  /** This process's CPU time (user + system) per request, in µs. */
  readonly cpu: number;
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
  const cpu = process.cpuUsage();
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const used = process.cpuUsage(cpu);
  const elapsed = performance.now() - started;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  return {
    rps: (latencies.length / elapsed) * 1000,
    p99: latencies[Math.floor(latencies.length * 0.99)] ?? Number.NaN,
    cpu: (used.user + used.system) / latencies.length,
  };
}

/**
 * The bare app in a child process: loading it, this process does only the client's work. The
 * child is plain CommonJS (no tsx) and ends with this process.
 */
async function childApp(framework: 'express' | 'fastify'): Promise<Server> {
  const source = `
    const respond = { id: 0, amount: 4200 };
    if (process.env.FRAMEWORK === 'express') {
      const express = require('express');
      const app = express();
      app.use(express.json());
      app.post('/orders', (_req, res) => { res.status(201).json({ ...respond, id: ++respond.id }); });
      const server = app.listen(0, '127.0.0.1', () => console.log(server.address().port));
    } else {
      const app = require('fastify')();
      app.post('/orders', async (_req, reply) => reply.code(201).send({ ...respond, id: ++respond.id }));
      app.listen({ port: 0, host: '127.0.0.1' }).then(() => console.log(app.server.address().port));
    }
    process.stdin.on('end', () => process.exit(0)).resume();`;
  const child = spawn(process.execPath, ['-e', source], {
    cwd: fileURLToPath(new URL('.', import.meta.url)),
    env: { ...process.env, FRAMEWORK: framework, NODE_OPTIONS: '' },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`the ${framework} child exited (${code})`)));
    child.stdout.once('data', (data: Buffer) => resolve(Number(data.toString().trim())));
  });
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        child.removeAllListeners('exit');
        child.once('exit', () => resolve());
        child.stdin.end();
      }),
  };
}

interface Case {
  readonly name: string;
  readonly server: Server;
  readonly key: (() => string) | undefined;
}

async function measure(title: string, cases: readonly Case[], client: Case): Promise<void> {
  const rps: Record<string, number[]> = {};
  const p99: Record<string, number[]> = {};
  const cpu: Record<string, number[]> = {};
  const ratios: Record<string, number[]> = {};
  const shares: Record<string, number[]> = {};
  const serverRatios: Record<string, number[]> = {};
  const all = [...cases, client];
  // Store the replayed key's record first, then let the JIT settle.
  for (const c of all) if (c.key) await send(c.server.port, c.key());
  for (const c of all) await load(c.server.port, c.key, WARMUP_MS);
  for (let round = 0; round < ROUNDS; round++) {
    const results: Record<string, LoadResult> = {};
    for (let i = 0; i < all.length; i++) {
      const c = all[(i + round) % all.length] as Case;
      results[c.name] = await load(c.server.port, c.key);
    }
    // Ratios are taken within the round: both ran under the same load from the rest of the machine.
    const base = results[cases[0]?.name ?? ''] as LoadResult;
    const clientCpu = (results[client.name] as LoadResult).cpu;
    for (const c of cases) {
      const r = results[c.name] as LoadResult;
      (rps[c.name] ??= []).push(r.rps);
      (p99[c.name] ??= []).push(r.p99);
      (cpu[c.name] ??= []).push(r.cpu);
      (ratios[c.name] ??= []).push(r.rps / base.rps);
      (shares[c.name] ??= []).push(clientCpu / r.cpu);
      (serverRatios[c.name] ??= []).push((base.cpu - clientCpu) / (r.cpu - clientCpu));
    }
  }
  printRows(
    title,
    ['variant', 'req/s', 'p99 ms', '× bare req/s', 'CPU µs/req', 'client share', '× bare server CPU'],
    cases.map((c) => [
      c.name,
      median(rps[c.name] ?? []).toFixed(0),
      median(p99[c.name] ?? []).toFixed(2),
      median(ratios[c.name] ?? []).toFixed(2),
      median(cpu[c.name] ?? []).toFixed(0),
      `${(100 * median(shares[c.name] ?? [])).toFixed(0)}%`,
      median(serverRatios[c.name] ?? []).toFixed(2),
    ]),
  );
  console.log(
    `(median of ${ROUNDS} rounds of ${DURATION_MS} ms, ${CONCURRENCY} keep-alive connections, order rotated each round; ` +
      `ratios taken within each round; the client's CPU per request measured against the bare app in a child process ` +
      `in the same rounds; "× bare server CPU" divides the bare server's CPU per request by this row's, client's taken out; ` +
      `load average ${loadAverage()})`,
  );
}

function loadAverage(): string {
  return os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
}

export async function benchHttp(): Promise<void> {
  let redis: { client: { disconnect(): void }; store: (prefix: string) => IdempotencyStore } | undefined;
  // BENCH_HTTP_REDIS=0 leaves Redis out (a shorter run).
  if (process.env.BENCH_HTTP_REDIS !== '0' && redisAvailable()) {
    const [server] = await startRedis(1);
    if (!server) throw new Error('no redis-server');
    const { Redis } = require('ioredis') as {
      Redis: new (port: number, host: string) => RedisClient & { disconnect(): void };
    };
    const client = new Redis(server.port, server.host);
    // A prefix per app: the replayed key's record is each app's own.
    redis = { client, store: (prefix: string) => redisStore({ client, prefix }) };
  }
  let fresh = 0;
  const unique = () => `key-${++fresh}`;
  const same = () => 'the-same-key';
  try {
    for (const [name, make, framework] of [
      ['Express 5', expressApp, 'express'],
      ['Fastify 5', fastifyApp, 'fastify'],
    ] as const) {
      const servers = [await make(undefined), await make(memoryStore({ maxEntries: 100_000 }))];
      const cases: Case[] = [
        // The same requests as the first-request rows (a fresh Idempotency-Key each), which the
        // bare app ignores: Node parses every header a request carries, whoever reads it, so a
        // bare row without the header would charge its parsing to the middleware.
        { name: `bare ${name}`, server: servers[0] as Server, key: unique },
        { name: 'memoryStore, first requests', server: servers[1] as Server, key: unique },
        { name: 'memoryStore, replays', server: servers[1] as Server, key: same },
      ];
      if (framework === 'fastify') {
        // What the hooks cost with the least work in them (see http-floor.ts): the floor to read the rows against.
        const server = await fastifyApp('floor');
        servers.push(server);
        cases.push(
          { name: 'floor: Map only, first requests', server, key: unique },
          { name: 'floor: Map only, replays', server, key: same },
        );
      }
      if (redis) {
        const server = await make(redis.store(`bench-http:${framework}:`));
        servers.push(server);
        cases.push(
          { name: 'redisStore, first requests', server, key: unique },
          { name: 'redisStore, replays', server, key: same },
        );
      }
      const child = await childApp(framework);
      servers.push(child);
      try {
        const client = { name: 'the client alone', server: child, key: unique };
        await measure(`${name} + Idempotency-Key middleware, POST /orders over loopback`, cases, client);
      } finally {
        for (const server of servers) await server.close();
      }
    }
  } finally {
    redis?.client.disconnect();
    await stopAllRedis();
  }
}
