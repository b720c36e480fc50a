import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { Bench } from 'tinybench';

/** One thing to measure: `call()` is one call of the variant, awaited. */
export interface Variant {
  readonly name: string;
  readonly call: () => unknown;
}

export interface CompareOptions {
  readonly title: string;
  /** The variant every figure is divided by; it runs in every round like the others. */
  readonly baseline: string;
  readonly variants: readonly Variant[];
  /** Calls per sample: the figure is the sample's time divided by this. @default 2000 */
  readonly calls?: number;
  /** Rounds; the variants' order rotates each round and the median round is quoted. @default 5 */
  readonly rounds?: number;
  /** Time per task per round, in ms. @default 150 */
  readonly time?: number;
  /**
   * [holdfast variant, peer variant] pairs: each is printed with its ratio, the median of the
   * ratios measured within each round (both ran in the same round, so drift cancels), and both
   * per-call figures of that median round, so the figures divide to the ratio shown.
   */
  readonly pairs?: readonly (readonly [string, string])[];
}

export interface Row {
  readonly name: string;
  readonly nsPerCall: number;
  readonly ratio: number;
}

/** One of `pairs`, as printed: both figures from the round whose ratio is the median. */
export interface Pair {
  readonly ours: string;
  readonly peer: string;
  readonly oursNs: number;
  readonly peerNs: number;
  readonly ratio: number;
}

/** The rows, and each pair's figures: a target against a peer is read from these, not from two medians of different rounds. */
export type Comparison = Row[] & { readonly pairs: readonly Pair[] };

/**
 * Runs every variant in one process, several rounds with the order rotated, many calls per
 * sample; quotes the median round and its ratio to the baseline measured in the same round.
 */
export async function compare(options: CompareOptions): Promise<Comparison> {
  const { variants, baseline } = options;
  const calls = options.calls ?? 2_000;
  const rounds = options.rounds ?? 5;
  const perRound: Record<string, number[]> = {};
  const ratios: Record<string, number[]> = {};
  /** Per pair, each round's [holdfast ns, peer ns]. */
  const pairRounds: [number, number][][] = (options.pairs ?? []).map(() => []);
  for (let round = 0; round < rounds; round++) {
    const order = variants.map((_, i) => variants[(i + round) % variants.length] as Variant);
    const bench = new Bench({ time: options.time ?? 150, warmup: true, warmupTime: 30 });
    for (const v of order) {
      bench.add(v.name, async () => {
        for (let i = 0; i < calls; i++) await v.call();
      });
    }
    await bench.run();
    const ns: Record<string, number> = {};
    for (const task of bench.tasks) {
      const result = task.result;
      if (result.state === 'errored') throw result.error;
      if (result.state !== 'completed') throw new Error(`${task.name}: ${result.state}`);
      ns[task.name] = (result.latency.p50 * 1e6) / calls;
    }
    const base = ns[baseline];
    if (base === undefined) throw new Error(`compare: no baseline variant "${baseline}"`);
    for (const [name, value] of Object.entries(ns)) {
      (perRound[name] ??= []).push(value);
      (ratios[name] ??= []).push(value / base);
    }
    for (const [i, [ours, peer]] of (options.pairs ?? []).entries()) {
      pairRounds[i]?.push([ns[ours] ?? Number.NaN, ns[peer] ?? Number.NaN]);
    }
  }
  const rows = variants.map((v) => ({
    name: v.name,
    nsPerCall: median(perRound[v.name] ?? []),
    ratio: median(ratios[v.name] ?? []),
  }));
  printTable(options.title, rows, ['per call', `× ${baseline}`]);
  console.log(`(median of ${rounds} rounds, ${calls} calls a sample, order rotated each round)`);
  const pairs = (options.pairs ?? []).map(([ours, peer], i): Pair => {
    // The round whose ratio is the median (the lower middle of an even count): both figures
    // from it. Each variant's own median (the table above) may come from another round.
    const byRatio = [...(pairRounds[i] ?? [])].sort((a, b) => a[0] / a[1] - b[0] / b[1]);
    const [o, p] = byRatio[(byRatio.length - 1) >> 1] ?? [Number.NaN, Number.NaN];
    return { ours, peer, oursNs: o, peerNs: p, ratio: o / p };
  });
  if (pairs.length > 0) {
    printRows(
      `${options.title}: holdfast against the peer, each pair from its median round`,
      ['holdfast', 'per call', 'peer', 'per call', 'holdfast / peer'],
      pairs.map((p) => [p.ours, format(p.oursNs), p.peer, format(p.peerNs), ratioText(p.ratio)]),
    );
  }
  return Object.assign(rows, { pairs });
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  if (sorted.length === 0) return Number.NaN;
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** Prints rows under a title: the name, then the figure and ratio columns. */
export function printTable(title: string, rows: readonly Row[], headings: readonly [string, string]): void {
  const width = Math.max(8, ...rows.map((r) => r.name.length));
  console.log(`\n## ${title}\n`);
  console.log(`${'variant'.padEnd(width)}  ${headings[0].padStart(10)}  ${headings[1]}`);
  for (const row of rows) {
    console.log(`${row.name.padEnd(width)}  ${format(row.nsPerCall).padStart(10)}  ${row.ratio.toFixed(2)}×`);
  }
}

/** A ratio with two significant digits at least: 0.0021× is not 0.00×. */
function ratioText(ratio: number): string {
  return `${ratio >= 0.1 ? ratio.toFixed(2) : ratio.toPrecision(2)}×`;
}

export function format(ns: number): string {
  return ns >= 1000 ? `${(ns / 1000).toFixed(2)} µs` : `${ns.toFixed(0)} ns`;
}

/** Prints plain lines as a table with a heading row. */
export function printRows(
  title: string,
  header: readonly string[],
  rows: readonly (readonly (string | number)[])[],
): void {
  const cells = [header, ...rows].map((r) => r.map(String));
  const widths = header.map((_, c) => Math.max(...cells.map((r) => (r[c] ?? '').length)));
  console.log(`\n## ${title}\n`);
  for (const [i, row] of cells.entries()) {
    console.log(
      row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0))).join('  '),
    );
    if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
}

/**
 * Pins this process (every thread) to CPU 0 when a server can have CPU 1 (Linux, taskset, two
 * CPUs or more), and `server` (a process id) to CPU 1 when given; returns how to undo this
 * process' pinning, or undefined when nothing was pinned. Sharing CPUs, a server's work counts
 * the client's wake-ups its writes cause whenever the client sleeps on the same CPU.
 */
export function pin(server?: number): (() => void) | undefined {
  if (process.platform !== 'linux' || os.availableParallelism() < 2) return undefined;
  try {
    const pid = String(process.pid);
    const before = execFileSync('taskset', ['-p', pid], { encoding: 'utf8' }).trim().split(': ').pop() ?? '';
    execFileSync('taskset', ['-c', '1', 'true'], { stdio: 'ignore' }); // CPU 1 is one this process may use
    execFileSync('taskset', ['-a', '-p', '-c', '0', pid], { stdio: 'ignore' });
    if (server !== undefined) execFileSync('taskset', ['-a', '-p', '-c', '1', String(server)], { stdio: 'ignore' });
    return () => execFileSync('taskset', ['-a', '-p', before, pid], { stdio: 'ignore' });
  } catch {
    return undefined;
  }
}
