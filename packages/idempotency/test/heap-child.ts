import { spawnSync } from 'node:child_process';

/**
 * Runs `test/fixtures/<fixture>` with --expose-gc, from source, in a process of its own, for
 * `total` records (and `args`); what it printed (JSON), or throws with its stderr.
 */
export function heapFixture(fixture: string, total: number, ...args: string[]): { perRecord: number; records: number } {
  const child = spawnSync(
    process.execPath,
    [
      '--expose-gc',
      '--conditions=@holdfast/source',
      '--import',
      'tsx',
      new URL(`./fixtures/${fixture}`, import.meta.url).pathname,
      String(total),
      ...args,
    ],
    { encoding: 'utf8', timeout: 60_000, cwd: new URL('..', import.meta.url).pathname },
  );
  if (child.status !== 0) throw new Error(`${fixture} exited ${child.status}: ${child.stderr}`);
  return JSON.parse(child.stdout) as { perRecord: number; records: number };
}
