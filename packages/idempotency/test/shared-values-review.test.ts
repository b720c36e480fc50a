import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { canonicalLimit } from '../src/http/fingerprint.js';

/**
 * Review of the shared-value fingerprints. A value met again was written as `out.slice()` of the
 * canonical form being built with `+=`: V8 flattens the whole of it for each slice, so a body of
 * n references to one small object took time n² (80,000 references, 160 kB, took 45 s; a 1 MB
 * body of 500,000, a half-hour of one event loop) while its form stayed far under the bound.
 */
const here = fileURLToPath(new URL('..', import.meta.url));

/** Runs `code` (an ES module, with tsx) in a child, killed after `ms`: a stuck loop is a failure, not a hung suite. */
function inChild(code: string, ms: number) {
  return spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    encoding: 'utf8',
    cwd: here,
    env: { ...process.env, NODE_OPTIONS: '' },
    timeout: ms,
  });
}

describe('a value referred to many times', () => {
  it('200,000 references to one object (a devalue body of 400 kB) are fingerprinted in linear time', () => {
    const code = `
      import { requestFingerprint } from './src/http/index.ts';
      import { fingerprintOf } from './src/index.ts';
      const leaf = { to: 'alice', n: 1 };
      const shared = new Array(200_000).fill(leaf);
      const copied = Array.from({ length: 200_000 }, () => ({ to: 'alice', n: 1 }));
      const shape = (body) => ({ method: 'POST', url: '/', contentType: 'application/json', body, headers: [] });
      const same = requestFingerprint(shape(shared)) === requestFingerprint(shape(copied));
      const sameInput = fingerprintOf(shared) === fingerprintOf(copied);
      console.log(JSON.stringify({ same, sameInput }));
    `;
    // Linear: well under a second. Before the fix: minutes (killed here after 20 s).
    const run = inChild(code, 20_000);
    expect(run.signal).toBe(null);
    expect(run.stderr).toBe('');
    expect(JSON.parse(run.stdout)).toEqual({ same: true, sameInput: true });
  });

  it('the bound stays under the longest string V8 makes, whatever maxRequestBytes', () => {
    // Past it, writing the form threw RangeError (a 500), not the 413 the bound is for.
    expect(canonicalLimit(1_048_576)).toBe(16 * 1_048_576);
    expect(canonicalLimit(128 * 1_048_576)).toBeLessThan(2 ** 29 - 24);
  });
});
