import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { postgresAvailable } from './support/postgres.js';

/**
 * The PG harness keeps its servers' data in /dev/shm (memory). A test file that never stopped
 * its pair (its beforeAll timed out while the pair was still starting: `pair?.stop()` had no
 * pair) is ended as Vitest ends its workers, with SIGTERM, where no 'exit' handler runs: its
 * servers and their data must go all the same.
 */

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe.skipIf(!postgresAvailable())('PG harness', () => {
  it('a worker ended with SIGTERM leaves no server running and no data in memory', async () => {
    const script = fileURLToPath(new URL('./support/pg-pair-child.ts', import.meta.url));
    const child = spawn(process.execPath, ['--conditions=@holdfast/source', '--import', 'tsx', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      out += d;
    });
    for (let i = 0; i < 600 && !out.includes('\n'); i++) await sleep(50);
    const { dir, replica } = JSON.parse(out) as { dir: string; replica: string };
    const pids = [dir, replica].map((d) => Number(readFileSync(`${d}/postmaster.pid`, 'utf8').split('\n')[0]));
    expect(pids.every(alive)).toBe(true);

    child.kill('SIGTERM');
    const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
    // Still ended by the signal, as without the harness.
    expect({ code, signal }).toEqual({ code: null, signal: 'SIGTERM' });
    for (let i = 0; i < 100 && pids.some(alive); i++) await sleep(50);
    expect(pids.filter(alive), 'postmasters left running').toEqual([]);
    expect(existsSync(dirname(dir)), `${dirname(dir)} left behind`).toBe(false);
  }, 60_000);
});
