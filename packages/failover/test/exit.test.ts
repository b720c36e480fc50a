import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

it('holds no process open: health checks, ejections and their timers are unref’d', () => {
  const script = fileURLToPath(new URL('./fixtures/exits.ts', import.meta.url));
  const child = spawnSync(process.execPath, ['--conditions=@holdfast/source', '--import', 'tsx', script], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  expect(child.stderr).toBe('');
  expect(child.stdout.trim()).toBe('done');
  // Killed by the timeout above, it would have no status: the first of its own timers is 60 s away.
  expect(child.status).toBe(0);
}, 25_000);
