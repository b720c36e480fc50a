import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pnpm } from './support/pnpm.js';

const root = resolve(import.meta.dirname, '..');
const core = join(root, 'packages', 'core');
const scratch = mkdtempSync(join(tmpdir(), 'holdfast-pack-'));

// What a user's project does: install the packed tarball, then import or require it.
const script = (load: string) => `
${load}
const clock = core.realClock;
const policy = core.pipeline(core.timeout(60_000), core.timeout(30_000, { strategy: 'aggressive' }));
policy.execute(({ attempt, signal }) => 'ran attempt ' + attempt + ', aborted=' + signal.aborted).then((out) => {
  console.log(out + '; TimeoutError is HoldfastError: ' + (new core.TimeoutError('t', 1) instanceof core.HoldfastError) + '; now is a number: ' + (typeof clock.now() === 'number'));
});
`;

function node(file: string) {
  // The 60 s timeout must not keep the process alive once the call is done: it exits by itself.
  return spawnSync(process.execPath, [file], { cwd: scratch, encoding: 'utf8', timeout: 20_000 });
}

describe('the packed @holdfast/core in a project outside the workspace', () => {
  beforeAll(() => {
    if (!existsSync(join(core, 'dist', 'index.js')))
      execFileSync(join(root, 'node_modules', '.bin', 'tsup'), { cwd: core });
    // pnpm pack, as publishing does: it applies publishConfig (no source condition in the tarball).
    pnpm(['pack', '--pack-destination', scratch], core);
    writeFileSync(join(scratch, 'package.json'), JSON.stringify({ name: 'scratch', private: true }));
    execFileSync(
      'npm',
      [
        'install',
        '--no-audit',
        '--no-fund',
        '--prefer-offline',
        '--loglevel=error',
        join(scratch, 'holdfast-core-0.1.0.tgz'),
      ],
      { cwd: scratch, encoding: 'utf8' },
    );
  }, 120_000);

  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it('installs exports without the workspace-only source condition', () => {
    const manifest = JSON.parse(
      execFileSync('npm', ['pkg', 'get', 'exports'], {
        cwd: join(scratch, 'node_modules', '@holdfast', 'core'),
        encoding: 'utf8',
      }),
    );
    expect(JSON.stringify(manifest)).not.toContain('@holdfast/source');
    expect(manifest['.'].require.default).toBe('./dist/index.cjs');
  });

  it('runs pipeline(timeout(...)) from require()', () => {
    writeFileSync(join(scratch, 'use.cjs'), script(`const core = require('@holdfast/core');`));
    const result = node('use.cjs');
    expect(result.stderr).toBe('');
    expect(result.stdout.trim()).toBe(
      'ran attempt 1, aborted=false; TimeoutError is HoldfastError: true; now is a number: true',
    );
    expect(result.status).toBe(0);
  });

  it('runs pipeline(timeout(...)) from import', () => {
    writeFileSync(join(scratch, 'use.mjs'), script(`import * as core from '@holdfast/core';`));
    const result = node('use.mjs');
    expect(result.stderr).toBe('');
    expect(result.stdout.trim()).toBe(
      'ran attempt 1, aborted=false; TimeoutError is HoldfastError: true; now is a number: true',
    );
    expect(result.status).toBe(0);
  });

  it('shares one global bus between the ESM and CJS copies of the same major', () => {
    writeFileSync(
      join(scratch, 'both.mjs'),
      `import { createRequire } from 'node:module';
import * as esm from '@holdfast/core';
const cjs = createRequire(import.meta.url)('@holdfast/core');
const seen = [];
esm.bus.on('timeout', (e) => seen.push(e.source));
cjs.bus.emit({ type: 'timeout', source: 'from-cjs', time: 0, timeout: 1, strategy: 'cooperative' });
console.log(String(esm.bus === cjs.bus) + ' ' + seen.join(','));`,
    );
    const result = node('both.mjs');
    expect(result.stdout.trim()).toBe('true from-cjs');
  });

  it('says loudly when a copy of another major version already holds a bus', () => {
    writeFileSync(
      join(scratch, 'split.cjs'),
      `globalThis[Symbol.for('@holdfast/core/bus-versions')] = new Map([[1, '1.4.0']]);
const core = require('@holdfast/core');
core.bus.on('timeout', () => {});`,
    );
    const result = node('split.cjs');
    expect(result.status).toBe(0);
    expect(result.stderr).toContain('HOLDFAST_BUS_SPLIT');
    expect(result.stderr).toContain('@holdfast/core 0.1.0 is loaded beside 1.4.0');
  });
});
