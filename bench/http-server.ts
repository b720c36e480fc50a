import { type ChildProcess, spawn } from 'node:child_process';
import { Agent, request } from 'node:http';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { median, pin, printRows } from './harness.js';

// The server's own cost per request, with the server alone in a child process: its CPU time and
// the bytes it allocates per request (summed from V8's --trace-gc-nvp between two forced
// collections, so the figure does not depend on how busy the machine is). The load comes from
// this process. The child loads the built packages (run `pnpm run build` first): what users get.

const REQUESTS = Number(process.env.REQUESTS ?? 4_000);
// Requests sent between each sample's forced collection and its CPU window. A forced full
// collection (gc(), which the bytes measure needs at both ends) leaves a server slow for
// thousands of requests: bare Fastify took 50–62 µs of CPU a request in the 4,000 after it,
// against 17.5 µs after 8,000 more, and a server that keeps records more so (until this re-warm,
// the table read those 4,000 alone: Fastify first requests 0.66× bare, 0.82× in steady state).
const REWARM = Number(process.env.REWARM ?? 8_000);
const WARMUP = Number(process.env.WARMUP ?? 10_000);
const ROUNDS = Number(process.env.ROUNDS ?? 11);
/** FRAMEWORKS=fastify (or express) measures one. */
const FRAMEWORKS = (process.env.FRAMEWORKS ?? 'express,fastify').split(',');
// SCOPE=function mounts the middleware with a scope function (`() => 'user-4711'`), as a service
// with users does; by default `scope: 'global'`. MAX_ENTRIES: the store's maxEntries (100,000).
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 16);
/**
 * INTERLEAVE=<n>: instead of the rounds, each row and its bare row take turns, n requests at a
 * time (PAIRS turns each, no forced collection in between), and the table gives the ratio of
 * their summed CPU times and the quartiles of the turns' ratios. On a machine whose speed drifts
 * within seconds (a bare Fastify server's CPU per request moved between 33 and 74 µs from one
 * batch of 10,000 to the next on 2026-12-07), turns of a few tens of milliseconds put both
 * servers under the same drift.
 */
const INTERLEAVE = Number(process.env.INTERLEAVE ?? 0);
const PAIRS = Number(process.env.PAIRS ?? 200);
const BODY = JSON.stringify({ amount: 4200, currency: 'eur', customer: 'cus_123' });

// With two or more CPUs (and Linux's taskset), the server runs on one CPU and this process (the
// client) on another. Sharing CPUs, the server's CPU time counts the client's wake-ups its
// writes cause whenever the client sleeps on the same CPU, and that grows with the server's own
// cost: a bare Fastify server that spins 15 µs per request measured +26 µs of server CPU per
// request unpinned, +17 µs pinned (scratch runs of this harness, 60,000 requests each).
// Pinned only while benchHttpServer() runs, then put back: bench/index.ts imports every suite
// before it runs any, and the others (and the server child bench/http.ts spawns, which inherits
// this process's CPUs) must not run on CPU 0 alone.
let PIN = false;

// The child: an app, bare or with the middleware on memoryStore(); 'start' and 'stop' bracket
// the re-warm and the measured requests with a full collection each (for the bytes), 'cpu'
// marks where the measured ones begin, and 'stop' answers with the CPU time since.
const SERVER = `
const [framework, guarded] = process.argv.slice(1);
const { memoryStore } = require('@holdfast/idempotency');
// MAX_ENTRIES=1000 keeps the store small (the least recently used records go): what the records a
// store keeps cost the server, by difference with the default run (it made no difference to
// Fastify's first requests on 2026-12-06: 0.66× both ways, before the re-warm).
const store = guarded === 'yes' ? memoryStore({ maxEntries: Number(process.env.MAX_ENTRIES || 100000) }) : undefined;
// SCOPE=function: as a service with users mounts it, a scope function (one caller for all here).
const scope = process.env.SCOPE === 'function' ? () => 'user-4711' : 'global';
let n = 0;
async function main() {
  let server;
  if (framework === 'fastify') {
    const app = require('fastify')();
    if (store) await app.register(require('@holdfast/idempotency/fastify').idempotency, { store, scope });
    app.post('/orders', async (_req, reply) => reply.code(201).send({ id: ++n, amount: 4200 }));
    await app.listen({ port: 0, host: '127.0.0.1' });
    server = app.server;
  } else {
    const express = require('express');
    const app = express();
    if (store) app.use(require('@holdfast/idempotency/express').idempotency({ store, scope }));
    app.use(express.json());
    app.post('/orders', (_req, res) => { res.status(201).json({ id: ++n, amount: 4200 }); });
    server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
  }
  let cpu;
  process.on('message', (m) => {
    if (m === 'start') { gc(); console.log('@start'); process.send('started'); }
    if (m === 'cpu') { cpu = process.cpuUsage(); process.send('cpu'); }
    if (m === 'stop') { const used = process.cpuUsage(cpu); gc(); console.log('@stop'); process.send({ user: used.user, system: used.system }); }
    if (m === 'lap') { const used = process.cpuUsage(cpu); process.send({ user: used.user, system: used.system }); }
  });
  process.send({ port: server.address().port });
}
main();
`;

type Variant = {
  readonly name: string;
  readonly guarded: boolean;
  readonly key: (() => string) | undefined;
  /** The bare row this one is read against: the one sent the same kind of requests. */
  readonly against: string;
};

interface Sample {
  /** User + system CPU time per request, µs. */
  readonly cpu: number;
  /** User CPU time per request, µs. */
  readonly user: number;
  readonly bytes: number;
}

async function serve(
  framework: string,
  guarded: boolean,
): Promise<{ child: ChildProcess; port: number; log: () => string }> {
  const args = ['--expose-gc', '--trace-gc-nvp', '-e', SERVER, framework, guarded ? 'yes' : 'no'];
  const child = spawn(PIN ? 'taskset' : process.execPath, PIN ? ['-c', '1', process.execPath, ...args] : args, {
    cwd: fileURLToPath(new URL('.', import.meta.url)),
    env: { ...process.env, NODE_OPTIONS: '' },
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
  });
  let log = '';
  child.stdout?.on('data', (d: Buffer) => {
    log += d.toString();
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`the ${framework} server exited (${code})`)));
    child.once('message', (m: { port: number }) => resolve(m.port));
  });
  return { child, port, log: () => log };
}

function ask<T>(child: ChildProcess, message: string): Promise<T> {
  return new Promise((resolve) => {
    child.once('message', (m: T) => resolve(m));
    child.send(message);
  });
}

/**
 * `count` POSTs of BODY over `connections` keep-alive connections, each with `key()` if given; each
 * must get 201. `agent`: the caller's, kept open after (its connections go on serving the next
 * call); by default, one made for this call and destroyed at its end.
 */
export async function load(
  port: number,
  count: number,
  key: (() => string) | undefined,
  connections = CONNECTIONS,
  shared?: Agent,
): Promise<void> {
  const agent = shared ?? new Agent({ keepAlive: true, maxSockets: connections });
  let left = count;
  const one = () =>
    new Promise<void>((resolve, reject) => {
      const headers: Record<string, string | number> = {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(BODY),
      };
      if (key) headers['idempotency-key'] = key();
      const req = request({ port, host: '127.0.0.1', path: '/orders', method: 'POST', agent, headers }, (res) => {
        res.resume();
        res.once('end', () => (res.statusCode === 201 ? resolve() : reject(new Error(`status ${res.statusCode}`))));
      });
      req.once('error', reject);
      req.end(BODY);
    });
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (left-- > 0) await one();
    }),
  );
  if (shared === undefined) agent.destroy();
}

/** Bytes allocated between the '@start' and '@stop' marks of an nvp log. */
function allocatedBetween(log: string): number {
  const part = log.slice(log.lastIndexOf('@start'), log.lastIndexOf('@stop'));
  let bytes = 0;
  for (const match of part.matchAll(/allocated=(\d+)/g)) bytes += Number(match[1]);
  return bytes;
}

/** A variant's server, started once and warmed, then sampled once a round. */
interface Running {
  readonly variant: Variant;
  readonly child: ChildProcess;
  readonly port: number;
  readonly log: () => string;
  readonly agent: Agent;
}

async function start(framework: string, variant: Variant): Promise<Running> {
  const { child, port, log } = await serve(framework, variant.guarded);
  // One agent for the server's life: every sample reuses its warm connections.
  const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  if (variant.key) await load(port, 1, variant.key, CONNECTIONS, agent);
  await load(port, WARMUP, variant.key, CONNECTIONS, agent);
  return { variant, child, port, log, agent };
}

async function sample(server: Running): Promise<Sample> {
  const { child, port, log, agent, variant } = server;
  await ask(child, 'start');
  await load(port, REWARM, variant.key, CONNECTIONS, agent);
  await ask(child, 'cpu');
  await load(port, REQUESTS, variant.key, CONNECTIONS, agent);
  const { user, system } = await ask<{ user: number; system: number }>(child, 'stop');
  // The last nvp line (the stop's collection) may still be on its way.
  await new Promise((resolve) => setTimeout(resolve, 100));
  return {
    cpu: (user + system) / REQUESTS,
    user: user / REQUESTS,
    // Between the two forced collections: the re-warm's requests and the measured ones.
    bytes: allocatedBetween(log()) / (REWARM + REQUESTS),
  };
}

/** CPU time (µs) `server` spends on `count` requests, without a forced collection: user and system. */
async function turn(server: Running, count: number): Promise<{ user: number; system: number }> {
  await ask(server.child, 'cpu');
  await load(server.port, count, server.variant.key, CONNECTIONS, server.agent);
  return ask<{ user: number; system: number }>(server.child, 'lap');
}

/** Each row against its bare row, in turns of INTERLEAVE requests (see INTERLEAVE). */
async function measureInterleaved(framework: string, variants: readonly Variant[]): Promise<void> {
  const servers = new Map<string, Running>();
  const rows: string[][] = [];
  try {
    for (const v of variants) servers.set(v.name, await start(framework, v));
    for (const v of variants) {
      if (v.name === v.against) continue;
      const row = servers.get(v.name) as Running;
      const bare = servers.get(v.against) as Running;
      let rowSum = 0;
      let bareSum = 0;
      let rowSystem = 0;
      let bareSystem = 0;
      const ratios: number[] = [];
      for (let pair = 0; pair < PAIRS; pair++) {
        // Which goes first alternates: a drift within a pair falls on each side alike.
        const first = pair % 2 === 0;
        const a = await turn(first ? bare : row, INTERLEAVE);
        const b = await turn(first ? row : bare, INTERLEAVE);
        const [bareCpu, rowCpu] = first ? [a, b] : [b, a];
        bareSum += bareCpu.user + bareCpu.system;
        rowSum += rowCpu.user + rowCpu.system;
        bareSystem += bareCpu.system;
        rowSystem += rowCpu.system;
        ratios.push((bareCpu.user + bareCpu.system) / (rowCpu.user + rowCpu.system));
      }
      const [low, mid, high] = quartiles(ratios);
      const perRequest = (us: number) => (us / (PAIRS * INTERLEAVE)).toFixed(1);
      rows.push([
        `${v.name} (÷ ${v.against})`,
        perRequest(rowSum),
        perRequest(bareSum),
        `${perRequest(rowSystem)} / ${perRequest(bareSystem)}`,
        (bareSum / rowSum).toFixed(3),
        `${mid.toFixed(2)} (${low.toFixed(2)}–${high.toFixed(2)})`,
      ]);
    }
  } finally {
    for (const server of servers.values()) {
      server.agent.destroy();
      server.child.kill();
    }
  }
  printRows(
    `${framework === 'express' ? 'Express 5' : 'Fastify 5'} server alone, POST /orders, memoryStore(): each row and its bare row in turns`,
    [
      'variant',
      'server CPU µs/req',
      'bare µs/req',
      'of which system: row / bare',
      'bare ÷ row (sums)',
      'turns: median (IQR)',
    ],
    rows,
  );
  console.log(
    `(${PAIRS} pairs of turns of ${INTERLEAVE} requests, each server warmed by ${WARMUP} first, ${CONNECTIONS} ` +
      `keep-alive connections, no forced collection between turns; ` +
      `${PIN ? 'servers on CPU 1, client on CPU 0' : 'CPUs not pinned'}; load average ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')})`,
  );
}

export async function benchHttpServer(): Promise<void> {
  const unpin = pin();
  PIN = unpin !== undefined;
  try {
    await measureAll();
  } finally {
    PIN = false;
    unpin?.();
  }
}

/** The lower quartile, the median and the upper quartile of a list (nearest rank). */
function quartiles(values: readonly number[]): [number, number, number] {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
  return [at(0.25), median(sorted), at(0.75)];
}

async function measureAll(): Promise<void> {
  let fresh = 0;
  const variants: Variant[] = [
    // Each row is read against a bare app sent the same requests: Node parses every header a
    // request carries, whoever reads it (see http-instructions.ts's `bare-key`). The keyed bare
    // one ignores a fresh Idempotency-Key each.
    { name: 'bare, no key', guarded: false, key: undefined, against: 'bare, no key' },
    { name: 'bare, keyed', guarded: false, key: () => `key-${++fresh}`, against: 'bare, keyed' },
    { name: 'middleware, no key', guarded: true, key: undefined, against: 'bare, no key' },
    { name: 'middleware, first requests', guarded: true, key: () => `key-${++fresh}`, against: 'bare, keyed' },
    { name: 'middleware, replays', guarded: true, key: () => 'the-same-key', against: 'bare, keyed' },
  ];
  for (const framework of FRAMEWORKS) {
    if (INTERLEAVE > 0) {
      await measureInterleaved(framework, variants);
      continue;
    }
    // Every variant's server runs for the whole table, warmed once; each round samples each of
    // them back to back, the order rotated, so a drift in the machine's load falls on all of a
    // round's samples alike, and each round's ratio is taken within it.
    const servers: Running[] = [];
    const samples = new Map<string, Sample[]>();
    try {
      for (const v of variants) servers.push(await start(framework, v));
      for (let round = 0; round < ROUNDS; round++) {
        for (let i = 0; i < servers.length; i++) {
          const server = servers[(i + round) % servers.length] as Running;
          const list = samples.get(server.variant.name) ?? [];
          list.push(await sample(server));
          samples.set(server.variant.name, list);
        }
      }
    } finally {
      for (const server of servers) {
        server.agent.destroy();
        server.child.kill();
      }
    }
    // Each round's ratio to that round's bare server: on a shared machine the load drifts
    // between rounds (one configuration measured 175 to 230 µs/req within minutes), and a ratio
    // of two medians taken from different rounds swung by up to 0.5 between runs.
    const ratios = (bare: readonly Sample[], list: readonly Sample[], of: (s: Sample) => number) =>
      quartiles(list.map((s, round) => of(bare[round] as Sample) / of(s)));
    const spread = ([low, mid, high]: [number, number, number]) =>
      `${mid.toFixed(2)} (${low.toFixed(2)}–${high.toFixed(2)})`;
    printRows(
      `${framework === 'express' ? 'Express 5' : 'Fastify 5'} server alone in a child process, POST /orders, memoryStore()`,
      [
        'variant',
        'server CPU µs/req',
        '× bare CPU (IQR)',
        'user µs/req',
        '× bare user',
        'bytes allocated/req',
        'over bare',
      ],
      variants.map((v) => {
        const list = samples.get(v.name) ?? [];
        const bare = samples.get(v.against) ?? [];
        const bytes = median(list.map((s) => s.bytes));
        return [
          v.name === v.against ? v.name : `${v.name} (÷ ${v.against})`,
          median(list.map((s) => s.cpu)).toFixed(1),
          spread(ratios(bare, list, (s) => s.cpu)),
          median(list.map((s) => s.user)).toFixed(1),
          (ratios(bare, list, (s) => s.user)[1] as number).toFixed(2),
          bytes.toFixed(0),
          (bytes - median(bare.map((s) => s.bytes))).toFixed(0),
        ];
      }),
    );
    console.log(
      `(${ROUNDS} rounds of ${REQUESTS} requests per variant, each after a forced collection and ${REWARM} more, ` +
        `each server warmed by ${WARMUP} first and kept for ` +
        `every round, ${CONNECTIONS} keep-alive connections, order rotated each round; ` +
        `${PIN ? 'servers on CPU 1, client on CPU 0' : 'CPUs not pinned'}; "× bare" columns: the median (and ` +
        `quartiles) over rounds of bare's time per request over this row's, both from one round; CPU is user + ` +
        `system, user is the process's own code; load average ${os
          .loadavg()
          .map((l) => l.toFixed(2))
          .join(' ')})`,
    );
  }
}
