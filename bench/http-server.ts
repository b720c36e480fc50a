import { type ChildProcess, spawn } from 'node:child_process';
import { Agent, request } from 'node:http';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { median, pin, printRows } from './harness.js';

// The server's own cost per request, with the server alone in a child process: its CPU time and
// the bytes it allocates per request (summed from V8's --trace-gc-nvp between two forced
// collections, so the figure does not depend on how busy the machine is). The load comes from
// this process. The child loads the built packages (run `pnpm run build` first): what users get.

const REQUESTS = 20_000;
const WARMUP = 2_000;
const ROUNDS = 3;
const CONNECTIONS = 16;
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
// the measured requests with a full collection each and answer with the CPU time between them.
const SERVER = `
const [framework, guarded] = process.argv.slice(1);
const { memoryStore } = require('@holdfast/idempotency');
const store = guarded === 'yes' ? memoryStore({ maxEntries: 100000 }) : undefined;
let n = 0;
async function main() {
  let server;
  if (framework === 'fastify') {
    const app = require('fastify')();
    if (store) await app.register(require('@holdfast/idempotency/fastify').idempotency, { store, scope: 'global' });
    app.post('/orders', async (_req, reply) => reply.code(201).send({ id: ++n, amount: 4200 }));
    await app.listen({ port: 0, host: '127.0.0.1' });
    server = app.server;
  } else {
    const express = require('express');
    const app = express();
    if (store) app.use(require('@holdfast/idempotency/express').idempotency({ store, scope: 'global' }));
    app.use(express.json());
    app.post('/orders', (_req, res) => { res.status(201).json({ id: ++n, amount: 4200 }); });
    server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
  }
  let cpu;
  process.on('message', (m) => {
    if (m === 'start') { gc(); console.log('@start'); cpu = process.cpuUsage(); process.send('started'); }
    if (m === 'stop') { const used = process.cpuUsage(cpu); gc(); console.log('@stop'); process.send({ cpu: used.user + used.system }); }
  });
  process.send({ port: server.address().port });
}
main();
`;

type Variant = { readonly name: string; readonly guarded: boolean; readonly key: (() => string) | undefined };

interface Sample {
  readonly cpu: number;
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

async function measure(framework: string, variant: Variant): Promise<Sample> {
  const { child, port, log } = await serve(framework, variant.guarded);
  try {
    if (variant.key) await load(port, 1, variant.key);
    await load(port, WARMUP, variant.key);
    await ask(child, 'start');
    await load(port, REQUESTS, variant.key);
    const { cpu } = await ask<{ cpu: number }>(child, 'stop');
    // The last nvp line (the stop's collection) may still be on its way.
    await new Promise((resolve) => setTimeout(resolve, 100));
    return { cpu: cpu / REQUESTS, bytes: allocatedBetween(log()) / REQUESTS };
  } finally {
    child.kill();
  }
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

async function measureAll(): Promise<void> {
  let fresh = 0;
  const variants: Variant[] = [
    { name: 'bare', guarded: false, key: undefined },
    { name: 'middleware, no key', guarded: true, key: undefined },
    { name: 'middleware, first requests', guarded: true, key: () => `key-${++fresh}` },
    { name: 'middleware, replays', guarded: true, key: () => 'the-same-key' },
  ];
  for (const framework of ['express', 'fastify']) {
    const samples = new Map<string, Sample[]>();
    for (let round = 0; round < ROUNDS; round++) {
      for (let i = 0; i < variants.length; i++) {
        const v = variants[(i + round) % variants.length] as Variant;
        const list = samples.get(v.name) ?? [];
        list.push(await measure(framework, v));
        samples.set(v.name, list);
      }
    }
    const bare = samples.get('bare') ?? [];
    const bareBytes = median(bare.map((s) => s.bytes));
    // Each round's ratio to that round's bare server, then their median: on a shared machine the
    // load drifts between rounds (one configuration measured 175 to 230 µs/req within minutes),
    // and a ratio of two medians taken from different rounds swung by up to 0.5 between runs.
    const ratio = (list: readonly Sample[]) => median(list.map((s, round) => (bare[round] as Sample).cpu / s.cpu));
    printRows(
      `${framework === 'express' ? 'Express 5' : 'Fastify 5'} server alone in a child process, POST /orders, memoryStore()`,
      ['variant', 'server CPU µs/req', '× bare CPU', 'bytes allocated/req', 'over bare'],
      variants.map((v) => {
        const list = samples.get(v.name) ?? [];
        const cpu = median(list.map((s) => s.cpu));
        const bytes = median(list.map((s) => s.bytes));
        return [v.name, cpu.toFixed(1), ratio(list).toFixed(2), bytes.toFixed(0), (bytes - bareBytes).toFixed(0)];
      }),
    );
    console.log(
      `(median of ${ROUNDS} rounds of ${REQUESTS} requests after ${WARMUP}, ${CONNECTIONS} keep-alive connections, ` +
        `a fresh server per sample, order rotated; ${PIN ? 'server on CPU 1, client on CPU 0' : 'CPUs not pinned'}; ` +
        `"× bare CPU" is the median over rounds of bare's CPU per request over this row's, both from one round; ` +
        `load average ${os
          .loadavg()
          .map((l) => l.toFixed(2))
          .join(' ')})`,
    );
  }
}
