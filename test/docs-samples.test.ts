import { beforeAll, describe, expect, it } from 'vitest';
import { runSample, samples, typecheck, writeSamples } from '../scripts/doc-samples.mjs';

// Every ```ts sample in docs/ and the READMEs is type-checked as a module of its own, in one tsc
// program; those marked ```ts run also run, and must exit 0. ```ts no-check opts a fragment out
// (one that refers to the reader's own app or pool); they are listed below. Same check outside
// vitest: node scripts/doc-samples.mjs
const { checked, skipped } = samples();
const files = [...new Set(checked.map((s) => s.file))];
const runnable = checked.filter((s) => s.run);

describe('code samples in the docs and READMEs', () => {
  let errors: string[] = [];
  beforeAll(() => {
    writeSamples(checked);
    errors = typecheck(checked);
  }, 60_000);

  it.for(files)('%s: its samples type-check', (file) => {
    expect(errors.filter((e) => e.startsWith(`${file}:`)).join('\n')).toBe('');
  });

  it('fragments opted out with no-check stay few, and each still has code in it', () => {
    if (skipped.length > 0)
      console.info(`not type-checked (no-check): ${skipped.map((b) => `${b.file}:${b.line}`).join(', ')}`);
    expect(skipped.length).toBeLessThanOrEqual(12);
    for (const b of skipped) expect(b.code.trim(), `${b.file}:${b.line}`).not.toBe('');
  });

  it('tsc reports nothing outside the samples', () => {
    expect(errors.filter((e) => !files.some((file) => e.startsWith(`${file}:`))).join('\n')).toBe('');
  });

  it.concurrent.for(runnable.map((s) => [`${s.file}:${s.line}`, s] as const))('runs %s', async ([, sample]) => {
    const result = await runSample(sample);
    const why = `${sample.file}:${sample.line} ${result.timedOut ? 'timed out' : `exited ${result.code}`}`;
    expect(result.ok, `${why}\n${result.output}`).toBe(true);
  });
});
