import { execFileSync, spawn } from 'node:child_process';
import { appendFileSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { Agent } from 'node:http';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { floorPlugin } from './http-floor.js';
import { load } from './http-server.js';

// The Fastify server's own instructions per request, counted by callgrind: the server runs alone
// under `valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes` in a child process
// (loading the built packages: build first); this process (the client) sends WARMUP requests
// uninstrumented, turns instrumentation on, then sends WINDOWS windows of REQUESTS each, and
// prints each window's count of the main thread divided by REQUESTS, and the least (with
// REPEATS=n, n servers a row and the median of their leasts). Instruction
// counts do not depend on how busy the machine is (wall time and CPU time do); a window that
// holds a full collection or a deoptimisation counts up to 3x more. Run:
// `cd bench && WARMUP=5000 WINDOWS=8 REQUESTS=300 node --import tsx http-instructions.ts [variant...]`.
//
// CACHE_SIM=1 has callgrind simulate the caches too (--cache-sim=yes: first-level instruction and
// data caches and the last level, sized as this CPU's), and prints each row's misses a request
// and callgrind's cycle estimate, Ir + 10 x first-level misses + 100 x last-level misses, with
// its ratio to bare. Instructions alone understate what the middleware costs: it runs code and
// touches memory that bare does not, once a request, and misses the caches on it more often
// (scoped first requests: 0.847 of bare by instructions, 0.80 by the estimate, which is what
// their user time read, about 0.80, on a quiet machine).
//
// CG_ARGS passes more options to callgrind, with KEEP=1 and PERF_MAP=1 to read the dumps: for
// example `--separate-callers=4` names each call of V8's `Runtime_LoadIC_Miss` by the JavaScript
// function whose property read missed (an Express request or response has a map of its own, so
// each property the middleware reads of them first goes to the runtime, ~2,000 instructions).

const WARMUP = Number(process.env.WARMUP ?? 5000);
const REQUESTS = Number(process.env.REQUESTS ?? 300);
const WINDOWS = Number(process.env.WINDOWS ?? 8);
const REPEATS = Number(process.env.REPEATS ?? 1);
// One connection: each request its own turn of the event loop (with several, how many requests
// one turn serves depends on timing, and the counts with it).
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 1);
const CACHE_SIM = process.env.CACHE_SIM === '1';
// The memory store's periodic sweep (every 60 s by default: one pass over every record) runs on
// the wall clock, which callgrind slows ~60x: at the default it fired about once a window of 5,000
// requests, and its pass over ~40,000 records, in code too cold to be optimised, put ~4,300
// instructions on each request of the window (half the gap to bare), where at real speed one
// pass a minute is a few instructions a request. The store is given an hour (a minute of real
// time under callgrind) so that it sweeps at its real rate, i.e. about never in a window.
// SWEEP_MS=60000 counts it as the slowed clock fires it.
const SWEEP_MS = Number(process.env.SWEEP_MS ?? 3_600_000);
const here = fileURLToPath(new URL('.', import.meta.url));

type Kind =
  | 'bare'
  | 'floor'
  | 'plugin'
  | 'plugin-scoped'
  | 'plugin-early'
  | 'hooks3'
  | 'hooks4'
  | 'express-bare'
  | 'express-noop'
  | 'express';
interface Variant {
  readonly kind: Kind;
  readonly key: 'none' | 'fresh' | 'same';
}
const VARIANTS: Record<string, Variant> = {
  bare: { kind: 'bare', key: 'none' },
  // The same requests as plugin-first (a fresh Idempotency-Key each), to a bare server that
  // ignores the header: what the plugin costs, with the request held the same. (Node parses every
  // header a request carries, and builds request.headers with it, whoever reads it: ~3,500
  // instructions for this one, which `bare` never sees.)
  'bare-key': { kind: 'bare', key: 'fresh' },
  'bare-replay': { kind: 'bare', key: 'same' },
  'floor-first': { kind: 'floor', key: 'fresh' },
  'floor-replay': { kind: 'floor', key: 'same' },
  'plugin-nokey': { kind: 'plugin', key: 'none' },
  // Fastify's hook runners alone, each hook empty: the plugin's three, and the old floor's four.
  hooks3: { kind: 'hooks3', key: 'fresh' },
  hooks4: { kind: 'hooks4', key: 'fresh' },
  'plugin-first': { kind: 'plugin', key: 'fresh' },
  'plugin-replay': { kind: 'plugin', key: 'same' },
  // With a scope function (a caller's id; here one for all), as a service with users mounts it.
  'scoped-first': { kind: 'plugin-scoped', key: 'fresh' },
  'scoped-replay': { kind: 'plugin-scoped', key: 'same' },
  // The same, with the scope asked before the body is parsed (`scopeAt: 'preParsing'`).
  'early-first': { kind: 'plugin-early', key: 'fresh' },
  'early-replay': { kind: 'plugin-early', key: 'same' },
  // Express 5 with express.json(), bare and with the middleware before it (as bench/http.ts).
  'express-bare': { kind: 'express-bare', key: 'none' },
  'express-bare-key': { kind: 'express-bare', key: 'fresh' },
  // One empty middleware where the idempotency middleware goes: what Express's router charges
  // for a layer (Express's requests have maps of their own: its reads of them miss V8's caches).
  'express-noop-key': { kind: 'express-noop', key: 'fresh' },
  'express-nokey': { kind: 'express', key: 'none' },
  'express-first': { kind: 'express', key: 'fresh' },
  'express-replay': { kind: 'express', key: 'same' },
};

async function server(kind: Kind): Promise<void> {
  const require = createRequire(import.meta.url);
  if (kind === 'express-bare' || kind === 'express-noop' || kind === 'express') {
    const express = require('express');
    const app = express();
    if (kind === 'express') {
      const { memoryStore } = require('@holdfast/idempotency');
      const { idempotency } = require('@holdfast/idempotency/express');
      app.use(idempotency({ store: memoryStore({ maxEntries: 100_000, sweepInterval: SWEEP_MS }), scope: 'global' }));
    }
    if (kind === 'express-noop') app.use((_req: unknown, _res: unknown, next: () => void) => next());
    app.use(express.json());
    let n = 0;
    app.post('/orders', (_req: unknown, res: { status(s: number): { json(b: unknown): unknown } }) => {
      res.status(201).json({ id: ++n, amount: 4200 });
    });
    const listening = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => listening.once('listening', resolve));
    console.log(`@port ${listening.address().port}`);
    return;
  }
  const app = require('fastify')();
  if (kind === 'floor') await app.register(floorPlugin, {});
  if (kind === 'hooks3' || kind === 'hooks4') {
    app.addHook('preParsing', (_q: unknown, _r: unknown, payload: unknown, done: (e: null, p: unknown) => void) =>
      done(null, payload),
    );
    app.addHook('preHandler', (_q: unknown, _r: unknown, done: () => void) => done());
    app.addHook('onSend', (_q: unknown, _r: unknown, payload: unknown, done: (e: null, p: unknown) => void) =>
      done(null, payload),
    );
    if (kind === 'hooks4') app.addHook('onResponse', (_q: unknown, _r: unknown, done: () => void) => done());
  }
  if (kind === 'plugin' || kind === 'plugin-scoped' || kind === 'plugin-early') {
    const { memoryStore } = require('@holdfast/idempotency');
    const { idempotency } = require('@holdfast/idempotency/fastify');
    await app.register(idempotency, {
      store: memoryStore({ maxEntries: 100_000, sweepInterval: SWEEP_MS }),
      scope: kind === 'plugin' ? 'global' : () => 'user-4711',
      ...(kind === 'plugin-early' ? { scopeAt: 'preParsing' } : {}),
    });
  }
  let n = 0;
  app.post('/orders', async (_req: unknown, reply: { code(s: number): { send(b: unknown): unknown } }) =>
    reply.code(201).send({ id: ++n, amount: 4200 }),
  );
  await app.listen({ port: 0, host: '127.0.0.1' });
  console.log(`@port ${app.server.address().port}`);
}

/** A window's counts a request: instructions, and with CACHE_SIM its misses and cycle estimate. */
interface Counted {
  readonly ir: number;
  readonly cycles: number;
  readonly misses?: { readonly i1: number; readonly d1: number; readonly ll: number };
}

/** The totals line of a callgrind dump, a request: its events are `Ir`, or with CACHE_SIM `Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw`. */
function counted(text: string, file: string): Counted {
  const events = /^events: (.+)$/m.exec(text)?.[1]?.trim().split(/\s+/);
  const totals = /^(?:totals|summary): ([\d ]+)$/m.exec(text)?.[1]?.trim().split(/\s+/).map(Number);
  if (events === undefined || totals === undefined) throw new Error(`no totals in ${file}`);
  const of = (event: string): number => {
    const at = events.indexOf(event);
    return at < 0 ? 0 : (totals[at] ?? 0) / REQUESTS;
  };
  const ir = of('Ir');
  if (!events.includes('I1mr')) return { ir, cycles: ir };
  const i1 = of('I1mr');
  const d1 = of('D1mr') + of('D1mw');
  const ll = of('ILmr') + of('DLmr') + of('DLmw');
  // callgrind_annotate's and KCachegrind's "cycle estimation".
  return { ir, cycles: ir + 10 * (i1 + d1) + 100 * ll, misses: { i1, d1, ll } };
}

async function measure(name: string): Promise<Counted> {
  const variant = VARIANTS[name];
  if (variant === undefined) throw new Error(`unknown variant ${name}: one of ${Object.keys(VARIANTS).join(', ')}`);
  const out = path.join(process.env.TMPDIR ?? os.tmpdir(), `callgrind.${name}.${process.pid}`);
  const child = spawn(
    'valgrind',
    [
      '--tool=callgrind',
      '--instr-atstart=no',
      '--separate-threads=yes',
      ...(CACHE_SIM ? ['--cache-sim=yes'] : []),
      ...(process.env.CG_ARGS ? process.env.CG_ARGS.split(' ') : []),
      `--callgrind-out-file=${out}`,
      process.execPath,
      '--single-threaded-gc',
      // NODE_FLAGS: more V8 flags for the server, e.g. '--trace-opt --trace-deopt' (its output goes
      // to /tmp/trace-<variant>.log): a function a window finds deoptimised counts several times its
      // optimised cost (the memory store's #claim, back in baseline code after a path first taken
      // late, cost ~1,400 instructions a request more in one window).
      ...(process.env.NODE_FLAGS ? process.env.NODE_FLAGS.split(' ') : []),
      // PERF_MAP=1: V8 writes /tmp/perf-<pid>.map, which names the JIT addresses of a kept dump.
      // (Its code-event log, which that flag turns on too, goes beside the dumps.)
      ...(process.env.PERF_MAP === '1'
        ? ['--perf-basic-prof', `--logfile=${path.join(process.env.TMPDIR ?? os.tmpdir(), 'v8-%p.log')}`]
        : []),
      '--import',
      'tsx',
      fileURLToPath(import.meta.url),
      'server',
      variant.kind,
    ],
    { cwd: here, env: { ...process.env, NODE_OPTIONS: '' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      let seen = '';
      child.stdout.on('data', (d: Buffer) => {
        if (process.env.NODE_FLAGS) appendFileSync(`/tmp/trace-${name}.log`, d);
        seen += d.toString();
        const m = /@port (\d+)/.exec(seen);
        if (m) resolve(Number(m[1]));
      });
      child.once('exit', (code) => reject(new Error(`server exited ${code}`)));
    });
    // A fresh key per request across the warm-up and every window (one sequence per server).
    let fresh = 0;
    const key =
      variant.key === 'fresh' ? () => `key-${++fresh}` : variant.key === 'same' ? () => 'the-same-key' : undefined;
    // One agent, its connections kept open, for the warm-up and every window: a connection closed
    // after the warm-up and another opened for each window deoptimised Node's socket and stream
    // code (wrong map: the close path and a new socket's maps, never seen warm), and its windows
    // counted the re-optimisation: they fell from 1.9x the last one to it (--trace-deopt showed
    // 35 deoptimisations in the first window and 10-22 re-optimisations in each of the next).
    await load(port, WARMUP, key, CONNECTIONS, agent);
    execFileSync('callgrind_control', ['-i', 'on', String(child.pid)], { stdio: 'ignore' });
    // WINDOWS windows, each one's count printed; the least is quoted (a window may still hold a
    // lump: a full collection, a deoptimisation).
    const counts: Counted[] = [];
    for (let window = 1; window <= WINDOWS; window++) {
      execFileSync('callgrind_control', ['-z', String(child.pid)], { stdio: 'ignore' });
      await load(port, REQUESTS, key, CONNECTIONS, agent);
      execFileSync('callgrind_control', ['-d', `window${window}`, String(child.pid)], { stdio: 'ignore' });
      // The main thread's counts only: V8 compiles on other threads (TurboFan jobs were a third of
      // a window's instructions, and came in lumps), and with --single-threaded-gc the collector
      // runs on the main thread, so the garbage each request leaves is counted.
      const file = `${out}.${window}-01`;
      const text = readFileSync(file, 'utf8');
      // KEEP=1 keeps the dumps, for callgrind_annotate (V8's builtins, the GC and OpenSSL by name).
      if (process.env.KEEP === '1') console.log(`kept ${file} (JIT names: /tmp/perf-<pid>.map, PERF_MAP=1)`);
      else rmSync(file, { force: true });
      counts.push(counted(text, file));
    }
    console.log(`  ${name} windows: ${counts.map((c) => Math.round(c.ir)).join(' ')}`);
    return counts.reduce((least, c) => (c.ir < least.ir ? c : least));
  } finally {
    agent.destroy();
    child.kill('SIGKILL');
    const dir = path.dirname(out);
    for (const file of readdirSync(dir)) {
      if (file.startsWith(path.basename(out)) && !(process.env.KEEP === '1' && file.includes('-01'))) {
        rmSync(path.join(dir, file), { force: true });
      }
    }
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

if (process.argv[2] === 'server') {
  await server(process.argv[3] as Kind);
} else {
  const names = process.argv.slice(2);
  const rows = new Map<string, Counted>();
  for (const name of names.length > 0 ? names : Object.keys(VARIANTS)) {
    // REPEATS servers a row, each its least window: their median is quoted. One server's least
    // window can land ~2,400 instructions apart from another's of the same build (the JIT's
    // choices during the warm-up differ between runs).
    const leasts: Counted[] = [];
    for (let repeat = 0; repeat < REPEATS; repeat++) leasts.push(await measure(name));
    const ir = median(leasts.map((c) => c.ir));
    const cycles = median(leasts.map((c) => c.cycles));
    const misses = leasts.length === 1 ? leasts[0]?.misses : undefined;
    rows.set(name, { ir, cycles, misses });
    const each = REPEATS > 1 ? ` (median of ${leasts.map((c) => Math.round(c.ir)).join(', ')})` : '';
    console.log(`${name.padEnd(14)} ${Math.round(ir).toString().padStart(9)} instructions/request${each}`);
    if (CACHE_SIM) {
      const seen =
        misses === undefined
          ? ''
          : `: ${misses.i1.toFixed(0)} I1, ${misses.d1.toFixed(0)} D1, ${misses.ll.toFixed(1)} LL misses`;
      console.log(`${''.padEnd(14)} ${Math.round(cycles).toString().padStart(9)} estimated cycles/request${seen}`);
    }
  }
  console.log(
    `(callgrind Ir of the server alone, least of ${WINDOWS} windows of ${REQUESTS} requests after ${WARMUP}, ${CONNECTIONS} connection(s)${CACHE_SIM ? '; cycles: Ir + 10 x L1 misses + 100 x last-level misses' : ''})`,
  );
  // Each row against the bare server sent the same requests, where this run counted both: #19's
  // ratio (bare ÷ row: 1 is free, 0.85 is 15% dearer).
  for (const [name, row] of rows) {
    const variant = VARIANTS[name] as Variant;
    const bare = variant.kind.startsWith('express')
      ? variant.key === 'fresh'
        ? 'express-bare-key'
        : undefined
      : variant.key === 'fresh'
        ? 'bare-key'
        : variant.key === 'same'
          ? 'bare-replay'
          : undefined;
    const against = bare === undefined || bare === name ? undefined : rows.get(bare);
    if (against === undefined) continue;
    const estimated = CACHE_SIM ? `, ${(against.cycles / row.cycles).toFixed(3)} by estimated cycles` : '';
    console.log(`${name.padEnd(14)} ${(against.ir / row.ir).toFixed(3)} of ${bare}${estimated}`);
  }
}
