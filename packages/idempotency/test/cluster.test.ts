import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runModuleSync, runScript } from '../../../test/support/child.js';

const script = fileURLToPath(new URL('./fixtures/cluster.ts', import.meta.url));

describe('memoryStore() in a node:cluster worker', () => {
  it('is refused without processLocal (each worker keeps its own records); with it, each worker dedupes its own calls', async () => {
    const run = await runScript(script, { cwd: fileURLToPath(new URL('.', import.meta.url)), killAfterMs: 30_000 });
    expect(run.killed).toBe(false);
    expect(run.stderr).toBe('');
    const reports = JSON.parse(run.stdout.trim()) as {
      refused?: { code: string; path: string; message: string };
      runs: number;
    }[];
    expect(reports).toHaveLength(2);
    for (const report of reports) {
      expect(report.refused).toMatchObject({ code: 'E_CONFIG', path: 'processLocal' });
      expect(report.refused?.message).toMatch(
        /^memoryStore: processLocal is off, and this is a cluster worker .* Share records with redisStore\(\)/,
      );
      // processLocal: true, as documented: one run per worker for the same key, two in all.
      expect(report.runs).toBe(1);
    }
  }, 40_000);

  it('is made in a child forked with an IPC channel that is no cluster worker (child_process.fork)', async () => {
    const forked = fileURLToPath(new URL('./fixtures/forked-child.ts', import.meta.url));
    const run = await runScript(forked, { cwd: fileURLToPath(new URL('.', import.meta.url)), killAfterMs: 30_000 });
    expect(run.killed).toBe(false);
    expect(run.stderr).toBe('');
    expect(JSON.parse(run.stdout.trim())).toEqual({ ipc: true, made: 'made' });
  }, 40_000);

  it('is not looked for in a process without an IPC channel (no worker is one): node:cluster is not loaded', () => {
    const index = new URL('../src/index.ts', import.meta.url).href;
    const run = runModuleSync(
      `const { memoryStore } = await import(${JSON.stringify(index)}); memoryStore().dispose();
      console.log(JSON.stringify(process.moduleLoadList.filter((m) => m.includes('cluster'))));`,
    );
    expect(run.stderr).toBe('');
    expect(JSON.parse(run.stdout.trim())).toEqual([]);
  }, 30_000);
});
