import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fingerprintOf } from '../src/codec.js';
import { canonicalLimit } from '../src/http/fingerprint.js';
import { requestFingerprint } from '../src/http/index.js';

/**
 * Review of the shared-value fingerprints. A value met again was written as `out.slice()` of the
 * canonical form being built with `+=`: V8 flattens the whole of it for each slice, so a body of
 * n references to one small object took time n² (80,000 references, 160 kB, took 45 s; a 1 MB
 * body of 500,000, a half-hour of one event loop) while its form stayed far under the bound.
 */
const here = fileURLToPath(new URL('..', import.meta.url));

/** Runs `code` (an ES module, with tsx) in a child, killed after `ms`: a stuck loop is a failure, not a hung suite. */
function inChild(code: string, ms: number) {
  // A small heap: a blow-up fails fast, and takes no more of the machine.
  const args = ['--max-old-space-size=256', '--import', 'tsx', '--input-type=module', '-e', code];
  return spawnSync(process.execPath, args, {
    encoding: 'utf8',
    cwd: here,
    env: { ...process.env, NODE_OPTIONS: '' },
    timeout: ms,
  });
}

describe('a value referred to many times', () => {
  it('100,000 references to one object (a devalue body of 200 kB) are fingerprinted in linear time', () => {
    const code = `
      import { requestFingerprint } from './src/http/index.ts';
      import { fingerprintOf } from './src/index.ts';
      const leaf = { to: 'alice', n: 1 };
      const shared = new Array(100_000).fill(leaf);
      const copied = Array.from({ length: 100_000 }, () => ({ to: 'alice', n: 1 }));
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
  }, 30_000);

  it('the bound stays under the longest string V8 makes, whatever maxRequestBytes', () => {
    // Past it, writing the form threw RangeError (a 500), not the 413 the bound is for.
    expect(canonicalLimit(1_048_576)).toBe(16 * 1_048_576);
    expect(canonicalLimit(128 * 1_048_576)).toBeLessThan(2 ** 29 - 24);
  });
});

describe('a result that shares its parts (stored by encodeValue)', () => {
  it('2^40 paths in a few objects: E_IDEMPOTENCY_VALUE at once, not the heap; shared parts stored as copies', () => {
    const code = `
      import { decodeValue, encodeValue } from './src/index.ts';
      let value = 'alice';
      for (let i = 0; i < 40; i++) value = [value, { again: value }];
      let code;
      try { encodeValue(value); } catch (error) { code = error.code; }
      const leaf = { to: 'alice', bytes: new Uint8Array([1, 2]), $object: 1 };
      const shared = [leaf, { again: leaf }, leaf];
      const text = encodeValue(shared);
      const same = text === encodeValue(JSON.parse(JSON.stringify(shared, (k, v) => v instanceof Uint8Array ? { u8: [...v] } : v), (k, v) => v && v.u8 ? new Uint8Array(v.u8) : v));
      console.log(JSON.stringify({ code, same, back: decodeValue(text)[1].again.to }));
    `;
    // Before the fix: killed, or out of heap (each shared part walked again: 2^40 paths).
    const run = inChild(code, 20_000);
    expect(run.signal).toBe(null);
    expect(run.stderr).toBe('');
    expect(JSON.parse(run.stdout)).toEqual({ code: 'E_IDEMPOTENCY_VALUE', same: true, back: 'alice' });
  }, 30_000);
});

describe('copies of shared parts, any shape', () => {
  it('a value with shared parts (nested, repeated) hashes as its tree copied', () => {
    const shape = (body: unknown) => ({ method: 'POST', url: '/', contentType: 'application/json', body, headers: [] });
    const tree = fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.parse(JSON.stringify(v)) as unknown);
    fc.assert(
      fc.property(tree, tree, fc.array(fc.nat(5), { maxLength: 12 }), (t, u, picks) => {
        const pair = [t, { t, u }];
        const parts = [t, u, pair, [pair, t], { pair, u }, [u, u]];
        const value = picks.map((i) => parts[i]);
        const copied = JSON.parse(JSON.stringify(value)) as unknown;
        expect(requestFingerprint(shape(value))).toBe(requestFingerprint(shape(copied)));
        expect(fingerprintOf(value)).toBe(fingerprintOf(copied));
      }),
      { numRuns: 300 },
    );
  });
});
