import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const script = fileURLToPath(new URL('./fixtures/many-breakers.ts', import.meta.url));
const packageRoot = fileURLToPath(new URL('..', import.meta.url));

/** Runs the script in a child node; resolves with how it ended, or `exited: false` if it had to be killed. */
function runInChild(
  limitMs: number,
): Promise<{ exited: boolean; code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--conditions=@holdfast/source', '--import', 'tsx', script], {
      cwd: packageRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      // The script has returned: from here it must exit by itself. A live timer would hold it
      // until this guard kills it, seconds later.
      if (stdout.endsWith('\n')) armGuard(5_000);
    });
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    let killed = false;
    let guard: NodeJS.Timeout | undefined;
    const armGuard = (ms: number) => {
      clearTimeout(guard);
      guard = setTimeout(() => {
        killed = true;
        child.kill('SIGKILL');
      }, ms);
    };
    // A generous limit on the whole run, so a process that never exits cannot hang the suite.
    armGuard(limitMs);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(guard);
      resolve({ exited: !killed, code, stdout, stderr });
    });
  });
}

describe('nothing keeps the process alive', () => {
  it('a process that makes 10,000 breakers and calls through them exits on its own', async () => {
    const result = await runInChild(30_000);
    expect(result.stderr).toBe('');
    expect(result.exited).toBe(true);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ breakers: 10_000, open: 2_500 });
  }, 40_000);
});
