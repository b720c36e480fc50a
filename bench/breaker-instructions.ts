import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

// Instructions per call of a breaker's refusal, counted by callgrind, against a bare caught
// rejection: each variant runs alone in a child process under `valgrind --tool=callgrind
// --instr-atstart=no` (loading the built packages: build first). The child warms up WARMUP calls
// uninstrumented, then runs WINDOWS windows of CALLS calls, each `await call()` as bench/breaker.ts
// does, after a full collection; this process zeroes the counters before each window and dumps them
// after, and prints the
// least window's count divided by CALLS. Instruction counts do not depend on how busy the machine
// is. Run: `cd bench && node --import tsx breaker-instructions.ts [variant...]` (bare, reject, success, retry-success, cockatiel-success...).
// `success` loads our CommonJS build (require), `success-esm` our ESM one (import), which
// bench/breaker.ts measures: a cost that only one of them pays shows as a gap between the two.

const WARMUP = Number(process.env.WARMUP ?? 50_000);
const CALLS = Number(process.env.CALLS ?? 10_000);
const WINDOWS = Number(process.env.WINDOWS ?? 6);
const REWARM = Number(process.env.REWARM ?? 10_000);
const here = fileURLToPath(new URL('.', import.meta.url));

type Call = () => Promise<unknown>;
const noop = () => {};

/** The variants, each made in the child: @holdfast's from its CommonJS build, or its ESM one (`-esm`). */
async function make(variant: string): Promise<Call> {
  const require = createRequire(import.meta.url);
  const { circuitBreaker } = require('@holdfast/breaker');
  const { createBus } = require('@holdfast/core');
  const op = () => Promise.resolve(1);
  const error = new Error('down');
  switch (variant) {
    case 'bare':
      return () => Promise.reject(error).catch(noop);
    case 'bare-new':
      // A fresh Error each call, as a breaker that made one per refusal would.
      return () => Promise.reject(new Error('down')).catch(noop);
    case 'reject': {
      const b = circuitBreaker({ bus: createBus(), openFor: 3_600_000, policies: false });
      b.open();
      return () => b.execute(op).catch(noop);
    }
    case 'reject-listened': {
      const bus = createBus();
      bus.on('breaker.reject', noop);
      const b = circuitBreaker({ bus, openFor: 3_600_000, policies: false });
      b.open();
      return () => b.execute(op).catch(noop);
    }
    case 'success': {
      // A closed breaker's successful call, as the bench's "successful call" row makes it.
      const b = circuitBreaker({ bus: createBus() });
      return () => b.execute(op);
    }
    case 'success-esm': {
      // The same from the ESM build, which bench/breaker.ts loads (imports are bindings there,
      // not reads of a CommonJS exports object).
      const esm = await import('@holdfast/breaker');
      const core = await import('@holdfast/core');
      const b = esm.circuitBreaker({ bus: core.createBus() });
      return () => b.execute(op);
    }
    case 'retry-success': {
      // A retry's successful first attempt from the CommonJS build: its execute() reads
      // CallScope from core's exports object on every call.
      const { retry } = require('@holdfast/retry');
      const r = retry({ bus: createBus(), budget: false });
      return () => r.execute(op);
    }
    case 'retry-success-esm': {
      const esm = await import('@holdfast/retry');
      const core = await import('@holdfast/core');
      const r = esm.retry({ bus: core.createBus(), budget: false });
      return () => r.execute(op);
    }
    case 'failover-success': {
      // A failover's successful call from the CommonJS build: it reads CallScope and other core
      // exports on its way.
      const { failover } = require('@holdfast/failover');
      const f = failover({ bus: createBus(), endpoints: ['a', 'b', 'c'] });
      return () => f.execute(op);
    }
    case 'failover-success-esm': {
      const esm = await import('@holdfast/failover');
      const core = await import('@holdfast/core');
      const f = esm.failover({ bus: core.createBus(), endpoints: ['a', 'b', 'c'] });
      return () => f.execute(op);
    }
    case 'cockatiel-success': {
      const { ConsecutiveBreaker, circuitBreaker: cockatielBreaker, handleAll } = require('cockatiel');
      const b = cockatielBreaker(handleAll, { halfOpenAfter: 10_000, breaker: new ConsecutiveBreaker(5) });
      return () => b.execute(op);
    }
    default:
      throw new Error(
        `unknown variant ${variant}: bare, bare-new, reject, reject-listened, success, success-esm, retry-success, retry-success-esm, failover-success, failover-success-esm, cockatiel-success`,
      );
  }
}

async function child(variant: string): Promise<void> {
  const call = await make(variant);
  for (let i = 0; i < WARMUP; i++) await call();
  const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  const gc = (globalThis as { gc?: () => void }).gc as () => void;
  for (let w = 0; w < WINDOWS; w++) {
    // A full collection before each window, not in it: its marking is not the calls' cost. It
    // may drop shapes that optimised code holds weakly (deoptimising it): REWARM calls after it,
    // uninstrumented, let that code be optimised again before the window counts.
    gc();
    for (let i = 0; i < REWARM; i++) await call();
    console.log('@zero');
    await lines.next();
    for (let i = 0; i < CALLS; i++) await call();
    console.log('@dump');
    await lines.next();
  }
  process.exit(0);
}

/** The Ir total of a callgrind dump. */
function irOf(file: string): number {
  const m = /^(?:summary|totals): (\d+)/m.exec(readFileSync(file, 'utf8'));
  if (m === null) throw new Error(`no totals in ${file}`);
  return Number(m[1]);
}

async function measure(variant: string): Promise<number> {
  const out = path.join(process.env.TMPDIR ?? os.tmpdir(), `callgrind.breaker.${variant}.${process.pid}`);
  const proc = spawn(
    'valgrind',
    [
      '--tool=callgrind',
      '--instr-atstart=no',
      // The main thread's counts apart: V8 compiles on other threads, and a window that held a
      // TurboFan job counted up to twice a clean one's (GraphReducer and the register allocator).
      '--separate-threads=yes',
      `--callgrind-out-file=${out}`,
      process.execPath,
      '--single-threaded-gc',
      '--expose-gc',
      // PERF_MAP=1: Node writes /tmp/perf-<pid>.map, which names the JIT code callgrind shows as addresses.
      ...(process.env.PERF_MAP === '1' ? ['--perf-basic-prof'] : []),
      '--import',
      'tsx',
      fileURLToPath(import.meta.url),
      '--child',
      variant,
    ],
    { cwd: here, env: { ...process.env, NODE_OPTIONS: '' }, stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const said = createInterface({ input: proc.stdout })[Symbol.asyncIterator]();
  const counts: number[] = [];
  let on = false;
  for (let w = 1; w <= WINDOWS; w++) {
    while ((await said.next()).value !== '@zero') {}
    if (!on) execFileSync('callgrind_control', ['-i', 'on', String(proc.pid)], { stdio: 'ignore' });
    on = true;
    execFileSync('callgrind_control', ['-z', String(proc.pid)], { stdio: 'ignore' });
    proc.stdin.write('go\n');
    while ((await said.next()).value !== '@dump') {}
    execFileSync('callgrind_control', ['-d', `w${w}`, String(proc.pid)], { stdio: 'ignore' });
    const file = `${out}.${w}-01`;
    counts.push(irOf(file) / CALLS);
    for (const thread of readdirSync(path.dirname(out))) {
      const dumped = path.join(path.dirname(out), thread);
      if (dumped.startsWith(`${out}.${w}-`) && !(process.env.KEEP === '1' && dumped === file))
        rmSync(dumped, { force: true });
    }
    proc.stdin.write('go\n');
  }
  await new Promise((resolve) => proc.once('exit', resolve));
  for (const thread of readdirSync(path.dirname(out))) {
    const dumped = path.join(path.dirname(out), thread);
    if (dumped === out || (dumped.startsWith(`${out}-`) && /-\d+$/.test(dumped))) rmSync(dumped, { force: true });
  }
  const sorted = [...counts].sort((a, b) => a - b);
  const median = sorted[(sorted.length - 1) >> 1] as number;
  console.log(
    `${variant.padEnd(17)} ${Math.round(sorted[0] as number)
      .toString()
      .padStart(
        7,
      )} instructions/call, median ${Math.round(median)}  (windows: ${counts.map((c) => Math.round(c)).join(' ')})`,
  );
  return Math.min(...counts);
}

if (process.argv[2] === '--child') {
  await child(process.argv[3] ?? '');
} else {
  const names = process.argv.slice(2);
  const results: Record<string, number> = {};
  for (const v of names.length > 0 ? names : ['bare', 'reject']) results[v] = await measure(v);
  if (results.bare !== undefined && results.reject !== undefined) {
    console.log(`reject / bare: ${(results.reject / results.bare).toFixed(2)}×`);
  }
  for (const ours of ['success', 'success-esm']) {
    if (results[ours] !== undefined && results['cockatiel-success'] !== undefined) {
      console.log(`${ours} / cockatiel: ${(results[ours] / results['cockatiel-success']).toFixed(2)}×`);
    }
  }
  console.log(`(callgrind Ir, least of ${WINDOWS} windows of ${CALLS} calls after ${WARMUP})`);
}
