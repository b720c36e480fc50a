import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runScript } from '../../../test/support/child.js';

const script = fileURLToPath(new URL('./fixtures/worker-threads.ts', import.meta.url));

describe('memoryStore() in a worker thread (node:worker_threads)', () => {
  it('is refused without processLocal: each thread keeps its own records, and one key ran its effect on both', async () => {
    const run = await runScript(script, { cwd: fileURLToPath(new URL('.', import.meta.url)), killAfterMs: 30_000 });
    expect(run.killed).toBe(false);
    expect(run.stderr).toBe('');
    const { reports, effects } = JSON.parse(run.stdout.trim()) as {
      reports: { refused?: { code: string; path: string; message: string } }[];
      effects: number;
    };
    expect(reports).toHaveLength(2);
    for (const { refused } of reports) {
      expect(refused).toMatchObject({ code: 'E_CONFIG', path: 'processLocal' });
      expect(refused?.message).toMatch(
        /^memoryStore: processLocal is off, and this is a worker thread .* Share records with redisStore\(\)/,
      );
    }
    // What processLocal: true opts into, as documented: one run per thread for the same key.
    expect(effects).toBe(2);
  }, 40_000);
});
