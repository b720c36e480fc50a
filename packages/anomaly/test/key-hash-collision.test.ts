/**
 * Keys over 200 characters are held cut, told apart by a hash of the whole key. A client that
 * controls keys (one per user) must not be able to craft two that share a slot: their series
 * would mix, and what one key's calls raise would be acted on under the other.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createBus, ManualClock } from '@holdfast/core';
import { afterEach, describe, expect, it } from 'vitest';
import { anomalyWatch } from '../src/index.js';

const cleanups: (() => unknown)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

/**
 * Two keys the old hash (two 32-bit FNV-style lanes over the code units) gave the same value:
 * a Joux multicollision of 2^18 suffixes on the first lane (18 blocks, each pair found by a
 * birthday search of about 2^16 tries), then a birthday search among them on the second lane:
 * under a second of work, from any prefix.
 */
const prefix = `user/${'x'.repeat(200)}`;
const keyA = `${prefix}yFg14FUtwvOhmN4ITEZaHK1aruBCD0AXmZ2PIhI1HOXG7abw94OXI72ijajgehkNkiZy3CcZEhwBiB6VR4VM1hOHGP`;
const keyB = `${prefix}yFg14FmrSxoNi5giJI70hgVW7gV6jUtgliRpgt6bMnIFWAHWZGOXI72ijajgehkNkIDUP4KlCHoBiB6VNIRQbmNyF0`;

function watchOf(breakerOf?: (key: string) => { name: string; open(): void } | undefined) {
  const watch = anomalyWatch({
    bus: createBus(),
    clock: new ManualClock(1_000_000),
    interval: 1_000,
    raiseAfter: 1,
    detector: 'baseline',
    ...(breakerOf ? { actions: { openBreaker: { breakerOf, maxShare: 0.5 } } } : {}),
  });
  cleanups.push(() => watch.dispose());
  return watch;
}

describe('anomalyWatch long keys, crafted to collide', () => {
  it('two long keys crafted for the old hash are watched apart', () => {
    expect(keyA).not.toBe(keyB);
    const watch = watchOf();
    for (let i = 0; i < 5; i++) watch.observe(keyA, 10, 'success');
    for (let i = 0; i < 5; i++) watch.observe(keyB, 10, 'success');
    watch.flush();
    const keys = watch.snapshot().keys.map((k) => k.key);
    // Before the fix: 1 (both keys held as one).
    expect(keys).toHaveLength(2);
    expect(new Set(keys).size).toBe(2);
    for (const key of keys) expect(key.length).toBeLessThanOrEqual(200);
  });

  it("an attacker's slow key does not raise, nor open a breaker for, the key it was crafted against", () => {
    const given: string[] = [];
    const watch = watchOf((key) => {
      given.push(key);
      return { name: key, open: () => {} };
    });
    const names = [keyA, 'b', 'c', 'd'];
    const interval = (attack: boolean) => {
      for (const n of names) for (let i = 0; i < 20; i++) watch.observe(n, 20 + (i % 3), 'success');
      if (attack) for (let i = 0; i < 200; i++) watch.observe(keyB, 400 + (i % 3), 'success');
      watch.flush();
    };
    for (let i = 0; i < 40; i++) interval(false);
    interval(true);
    // Before the fix: [keyA] (keyB's calls counted as keyA's, keyA's breaker opened).
    expect(given.map((k) => (k === keyA ? 'keyA' : k === keyB ? 'keyB' : k))).toEqual([]);
    const a = watch.snapshot().keys.find((k) => k.samples === 41);
    expect(a?.raised).toBe(false);
  });

  it('keys that differ only in a lone surrogate stay apart (the hash reads code units, not UTF-8)', () => {
    const watch = watchOf();
    const base = 'y'.repeat(300);
    for (const end of ['\uD800', '\uD801', '\uDC00', '\uFFFD'])
      for (let i = 0; i < 5; i++) watch.observe(base + end, 10, 'success');
    watch.flush();
    expect(new Set(watch.snapshot().keys.map((k) => k.key)).size).toBe(4);
  });
});

describe('anomalyWatch long keys, kept whole up to 4,096 characters', () => {
  it('a key of 4,096 characters reaches breakerOf whole; one of 4,097 is raised and shown, never acted on', () => {
    const given: number[] = [];
    const watch = watchOf((key) => {
      given.push(key.length);
      return { name: 'x', open: () => {} };
    });
    const acted = 'a'.repeat(4_096);
    const tooLong = 'b'.repeat(4_097);
    const names = [acted, tooLong, 'c', 'd', 'e', 'f'];
    const interval = (slow: boolean) => {
      for (const n of names)
        for (let i = 0; i < 20; i++) watch.observe(n, (slow && n.length > 1 ? 400 : 20) + (i % 3), 'success');
      watch.flush();
    };
    for (let i = 0; i < 40; i++) interval(false);
    interval(true);
    expect(given).toEqual([4_096]);
    const raised = watch.snapshot().keys.filter((k) => k.raised);
    expect(raised.map((k) => k.key.length)).toEqual([200, 200]);
  });
});

describe('anomalyWatch long keys, memory', () => {
  const source = fileURLToPath(new URL('../src/index.ts', import.meta.url));
  // A child process that loads the sources through tsx: room for a machine at load 20 on two cores.
  it('200 watched keys (maxKeys) of 100,000 characters each hold under 4 MB, not each key whole', () => {
    // Each key a fresh string, as a request's header or path arrives (no slice of a shared one).
    const code = `
      const { anomalyWatch } = await import(${JSON.stringify(source)});
      const { createBus, ManualClock } = await import('@holdfast/core');
      const watch = anomalyWatch({ bus: createBus(), clock: new ManualClock(0), interval: 1000, detector: 'baseline' });
      globalThis.gc();
      const before = process.memoryUsage().heapUsed;
      for (let i = 0; i < 200; i++) watch.observe(Buffer.from(String(i).padEnd(100_000, 'k')).toString('latin1'), 10, 'success');
      globalThis.gc();
      const heap = process.memoryUsage().heapUsed - before;
      console.log(JSON.stringify({ keys: watch.snapshot().keys.length, heap }));
      watch.dispose();`;
    const run = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', code], {
      encoding: 'utf8',
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      env: { ...process.env, NODE_OPTIONS: '' },
    });
    expect(run.stderr).toBe('');
    const { keys, heap } = JSON.parse(run.stdout) as { keys: number; heap: number };
    expect(keys).toBe(200);
    // Before the fix: about 20 MB (each key kept whole, for the actions, while watched).
    expect(heap).toBeLessThan(4e6);
  }, 60_000);
});
