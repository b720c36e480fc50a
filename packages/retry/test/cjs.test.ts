import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../../..');
const pkg = resolve(import.meta.dirname, '..');
const tsup = join(root, 'node_modules', '.bin', 'tsup');
// A CJS build of the current source, beside dist/ and made with the package's own tsup config.
const outDir = join(pkg, 'dist', 'cjs-check');
const built = join(outDir, 'index.cjs');

describe('the CommonJS build', () => {
  beforeAll(() => {
    const core = join(root, 'packages', 'core');
    if (!existsSync(join(core, 'dist', 'index.cjs'))) execFileSync(tsup, { cwd: core, stdio: 'ignore' });
    execFileSync(tsup, ['--format', 'cjs', '--no-dts', '--out-dir', outDir], { cwd: pkg, stdio: 'ignore' });
  }, 60_000);

  it('keeps a dynamic import() of p-retry, not a require()', () => {
    const text = readFileSync(built, 'utf8');
    expect(text).toContain('import("p-retry")');
    expect(text).not.toMatch(/require\(["']p-retry["']\)/);
  });

  it('works from require(), retries through p-retry, and lets the process exit by itself', () => {
    const fixture = join(pkg, 'test', 'fixtures', 'cjs-user.cjs');
    // With a live one-minute timer left behind, the child would be killed at the 30 s limit.
    const child = spawnSync(process.execPath, ['--no-experimental-require-module', fixture, built], {
      cwd: pkg,
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(child.stderr).toBe('');
    expect(child.signal).toBeNull();
    expect(child.status).toBe(0);
    expect(JSON.parse(child.stdout)).toEqual({
      flaky: 'ok after 3 attempts',
      exhausted: 'E_RETRY_EXHAUSTED',
      aborted: 'caller left',
    });
  }, 40_000);
});
