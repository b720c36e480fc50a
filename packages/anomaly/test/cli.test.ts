import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { main } from '../src/cli.js';
import { syntheticSeries } from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'holdfast-anomaly-'));

function run(argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = main(
    argv,
    (l) => out.push(l),
    (l) => err.push(l),
  );
  return { code, out, err };
}

describe('holdfast-anomaly score', () => {
  const s = syntheticSeries('dailySpikes', { seed: 3 });
  const file = join(dir, 'metrics.csv');
  writeFileSync(file, `timestamp,${s.columns.join(',')}\n${s.rows.map((r, i) => `${i},${r.join(',')}`).join('\n')}\n`);

  it('prints the alerts of a CSV, near the labelled anomalies', () => {
    const { code, out } = run(['score', file, '--detector', 'baseline', '--json']);
    expect(code).toBe(0);
    const result = JSON.parse(out[0] as string) as { anomalies: { index: number; metric: string }[] };
    for (const label of s.labels) expect(result.anomalies.some((a) => Math.abs(a.index - label) <= 3)).toBe(true);
    const text = run(['score', file]);
    expect(text.out[0]).toMatch(/^2016 rows, 3 metrics \(latencyP99, errorRate, throughput\), \d+ anomalies$/);
  });

  it('exits 2 on usage errors and 1 on a malformed CSV, saying where', () => {
    expect(run([]).code).toBe(2);
    expect(run(['score', file, '--detector', 'magic']).code).toBe(2);
    // The option is known: the message names the value that is wrong (it said "unknown or incomplete option --detector").
    expect(run(['score', file, '--detector', 'magic']).err[0]).toMatch(
      /^holdfast-anomaly: --detector must be baseline or forest \(got "magic"\)\n/,
    );
    expect(run(['score', file, '--detector']).err[0]).toMatch(/--detector must be baseline or forest \(got nothing\)/);
    expect(run(['score', file, '--jsno']).err[0]).toMatch(/^holdfast-anomaly: unknown option --jsno\n/);
    expect(run(['score', join(dir, 'missing.csv')]).err[0]).toMatch(/cannot read/);
    const bad = join(dir, 'bad.csv');
    writeFileSync(bad, 'time,value\n1,2\n2,abc\n');
    const r = run(['score', bad]);
    expect(r.code).toBe(1);
    expect(r.err[0]).toMatch(/csv\.line 3\.value is not a number \(got "abc"\)/);
  });

  it('takes its options before the file too, and --detector=forest; a second file is named as such', () => {
    const after = run(['score', file, '--detector', 'forest', '--json']);
    expect(after.code).toBe(0);
    // It read "--json" as the file and said "unknown option <file>" of the file.
    expect(run(['score', '--json', '--detector', 'forest', file])).toEqual(after);
    expect(run(['score', '--detector=forest', file, '--json'])).toEqual(after);
    expect(run(['score', file, '--detector=tree']).err[0]).toMatch(
      /--detector must be baseline or forest \(got "tree"\)/,
    );
    const extra = run(['score', file, 'other.csv']);
    expect(extra.code).toBe(2);
    expect(extra.err[0]).toMatch(/^holdfast-anomaly: one file at a time \(got "other\.csv" after/);
    expect(run(['score', '--json']).err[0]).toMatch(/^holdfast-anomaly: no file to score \(a path, or - for stdin\)\n/);
  });

  it('runs as a program', async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        '--conditions=@holdfast/source',
        '--import',
        'tsx',
        join(import.meta.dirname, '../src/cli.ts'),
        'score',
        file,
        '--json',
      ],
      { cwd: join(import.meta.dirname, '..') },
    );
    expect(JSON.parse(stdout).columns).toEqual(['latencyP99', 'errorRate', 'throughput']);
  }, 30_000);
});
