import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { runScript } from '../../../test/support/child.js';

// fetch alone keeps a connection whose body is never read, and the process with it, open for as
// long as the server sends (for good here: the same script with `fetch` never exits).
it('a response whose body is never read, from a server that never ends it: the process exits once timeout.total cuts the body', async () => {
  const script = fileURLToPath(new URL('./fixtures/unread-body-exit.ts', import.meta.url));
  const result = await runScript(script, { cwd: fileURLToPath(new URL('..', import.meta.url)), killAfterMs: 30_000 });
  expect(result.stderr).toBe('');
  expect(result.killed).toBe(false);
  expect(result.code).toBe(0);
  expect(JSON.parse(result.stdout.trim())).toMatchObject({ status: 200 });
}, 60_000);
