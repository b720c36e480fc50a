import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../../..');
const pkg = resolve(import.meta.dirname, '..');

/** The `ts run` sample of docs/concepts.md that drives retry() with a ManualClock. */
function conceptsSample(): string {
  const text = readFileSync(join(root, 'docs', 'concepts.md'), 'utf8');
  const samples = [...text.matchAll(/```ts run\n([\s\S]*?)```/g)].map((m) => m[1] as string);
  const sample = samples.find((s) => s.includes('ManualClock') && s.includes("from '@holdfast/retry'"));
  if (sample === undefined) throw new Error('docs/concepts.md has no ManualClock + retry() sample');
  return sample;
}

describe('ManualClock with retry(), as docs/concepts.md shows it', () => {
  it('settles in a fresh process (the first retry loads p-retry) and prints what the doc says', () => {
    const sample = conceptsSample();
    const expected = /console\.log\(.*\); \/\/ (.*)$/m.exec(sample)?.[1];
    expect(expected).toBe('stock: 3 4 7000');
    // Inside the package, so that @holdfast/* resolve as they do for a user of it.
    const dir = join(pkg, 'node_modules', '.cache', 'manual-clock-test');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `sample-${process.pid}.mts`);
    writeFileSync(file, sample);
    try {
      const child = spawnSync(process.execPath, ['--conditions=@holdfast/source', '--import', 'tsx', file], {
        cwd: pkg,
        encoding: 'utf8',
        timeout: 30_000,
      });
      // An unsettled top-level await exits with 13 and prints nothing: the bug this guards.
      expect({ status: child.status, stderr: child.stderr }).toEqual({ status: 0, stderr: '' });
      expect(child.stdout.trim()).toBe(expected);
    } finally {
      rmSync(file, { force: true });
    }
  }, 40_000);
});
