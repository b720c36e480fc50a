/**
 * observe() fed by hostile keys: a key per user id (100k distinct keys) or a 1 MB key. Memory stays
 * bounded, and the keys the watch has learned are not washed out by the flood.
 */
import { createBus, ManualClock } from '@holdfast/core';
import { afterEach, describe, expect, it } from 'vitest';
import { anomalyWatch } from '../src/index.js';

const cleanups: (() => unknown)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

function watchOf(maxKeys = 200) {
  const watch = anomalyWatch({
    bus: createBus(),
    clock: new ManualClock(1_000_000),
    interval: 1_000,
    maxKeys,
    minCalls: 1,
    detector: 'baseline',
  });
  cleanups.push(() => watch.dispose());
  const keys = () => watch.snapshot().keys;
  return { watch, keys, of: (key: string) => keys().find((k) => k.key === key) };
}

describe('anomalyWatch keys, hostile', () => {
  it('100k distinct keys (one per user id) do not wash out a key the watch has learned', () => {
    const { watch, keys, of } = watchOf();
    for (let i = 0; i < 5; i++) {
      for (let c = 0; c < 20; c++) watch.observe('payments', 10, 'success');
      watch.flush();
    }
    expect(of('payments')?.samples).toBe(5);
    // The next interval: the flood arrives before payments' first call of it.
    for (let u = 0; u < 100_000; u++) watch.observe(`user-${u}`, 10, 'success');
    for (let c = 0; c < 20; c++) watch.observe('payments', 10, 'success');
    watch.flush();
    expect(keys().length).toBeLessThanOrEqual(201);
    // Before the fix: undefined (forgotten to make room for user-199, its baseline lost).
    expect(of('payments')?.samples).toBe(6);
  });

  it('a 1 MB key is held, and shown, cut to a bounded length; two such keys stay apart', () => {
    const { watch, keys } = watchOf();
    const big = 'k'.repeat(1_000_000);
    watch.observe(`${big}-a`, 10, 'success');
    watch.observe(`${big}-b`, 10, 'success');
    watch.flush();
    const shown = keys().map((k) => k.key);
    expect(shown).toHaveLength(2);
    // Before the fix: 1000002 (each key held and shown whole, in every event and snapshot).
    for (const key of shown) expect(key.length).toBeLessThanOrEqual(256);
    expect(new Set(shown).size).toBe(2);
  });

  it('every key learned and busy at maxKeys: a new key is counted under _other, not in place of one', () => {
    const { watch, keys, of } = watchOf(3);
    for (let i = 0; i < 3; i++) {
      for (const k of ['a', 'b', 'c']) for (let c = 0; c < 10; c++) watch.observe(k, 10, 'success');
      watch.flush();
    }
    for (const k of ['a', 'b', 'c']) watch.observe(k, 10, 'success');
    watch.observe('d', 10, 'success');
    watch.observe('e', 10, 'success');
    watch.flush();
    // Before the fix: a and b were forgotten (samples lost) to make room for d and e.
    expect(keys().map((k) => k.key)).toEqual(['a', 'b', 'c', '_other']);
    expect(of('a')?.samples).toBe(4);
    expect(of('_other')?.samples).toBe(1);
  });
});
