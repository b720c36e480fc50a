import { execFileSync, spawnSync } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runModuleSync } from './support/child.js';

const bench = fileURLToPath(new URL('../bench/', import.meta.url));
const taskset = process.platform === 'linux' && spawnSync('taskset', ['-V']).status === 0;

function mask(pid: number): string {
  return (
    execFileSync('taskset', ['-p', String(pid)], { encoding: 'utf8' })
      .trim()
      .split(': ')
      .pop() ?? ''
  );
}

// bench/index.ts imports every suite before running any: `pnpm bench core` (or `http`, whose
// server child inherits the affinity) must not run pinned to one CPU because http-server.ts was
// imported.
describe.skipIf(!taskset || os.availableParallelism() < 2)('bench/http-server.ts and CPU affinity', () => {
  it('importing it leaves the process on the CPUs it had', () => {
    const run = runModuleSync(
      "await import('./http-server.ts'); const { execFileSync } = await import('node:child_process'); console.log(execFileSync('taskset', ['-p', String(process.pid)], { encoding: 'utf8' }).trim().split(': ').pop());",
      { cwd: bench },
    );
    expect(run.stderr).toBe('');
    expect(run.stdout.trim()).toBe(mask(process.pid));
  }, 60_000);
});
