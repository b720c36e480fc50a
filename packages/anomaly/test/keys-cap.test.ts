/**
 * observe() fed by hostile keys: a key per user id (100k distinct keys) or a 1 MB key. Memory stays
 * bounded, and the keys the watch has learned are not washed out by the flood. A key of the user's
 * named `_other`, or one cut for its length, is still acted on: the actions get it as given.
 */
import { createBus, ManualClock } from '@holdfast/core';
import { failover } from '@holdfast/failover';
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

  it('a 1 MB key is shown cut to a bounded length; two such keys stay apart', () => {
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

describe('anomalyWatch keys, acted on (review)', () => {
  it("a key of the user's named _other is acted on, apart from the overflow that shows as _other", () => {
    const clock = new ManualClock(1_000_000);
    const bus = createBus();
    const opened: string[] = [];
    const watch = anomalyWatch({
      bus,
      clock,
      interval: 1_000,
      raiseAfter: 1,
      maxKeys: 6,
      detector: 'baseline',
      actions: {
        openBreaker: { breakerOf: (key) => ({ name: key, open: () => void opened.push(key) }), maxShare: 0.5 },
      },
    });
    cleanups.push(() => watch.dispose());
    const names = ['_other', 'a', 'b', 'c', 'd', 'e'];
    const interval = (slow: boolean, overflow = true) => {
      for (const n of names)
        for (let i = 0; i < 20; i++) watch.observe(n, (slow && n === '_other' ? 400 : 20) + (i % 3), 'success');
      // Past the cap, every key learned and busy: counted under the overflow.
      if (overflow) for (let u = 0; u < 20; u++) watch.observe(`user-${u}`, 20 + (u % 3), 'success');
      watch.flush();
    };
    interval(false, false);
    for (let i = 0; i < 39; i++) interval(false);
    interval(true);
    // Before the fix: [] (the user's _other was taken for the overflow, never acted on).
    expect(opened).toEqual(['_other']);
    const keys = watch.snapshot().keys;
    const overflow = keys.find((k) => k.key === '_other');
    const own = keys.find((k) => k.key === '_other#2');
    // Apart: each with its own intervals (the overflow's began an interval later), its own figures.
    expect({ own: own?.samples, overflow: overflow?.samples }).toEqual({ own: 41, overflow: 40 });
    expect(own?.raised).toBe(true);
    expect(overflow?.raised).toBe(false);
  });

  it('keys longer than 200 characters reach eject whole: the endpoint that ends one is ejected', () => {
    const clock = new ManualClock(1_000_000);
    const bus = createBus({ onListenerError: () => {} });
    const events: { key: string; target: string; taken: boolean }[] = [];
    bus.on('anomaly.action', (e) => void events.push(e));
    const names = ['a', 'b', 'c', 'd', 'e', 'f'];
    const api = failover({ name: 'api', clock, bus, policies: false, endpoints: names });
    const watch = anomalyWatch({
      bus,
      clock,
      interval: 1_000,
      raiseAfter: 1,
      detector: 'baseline',
      actions: { eject: { failover: api, duration: 30_000 } },
    });
    cleanups.push(
      () => api.dispose(),
      () => watch.dispose(),
    );
    // A route's key that ends with its endpoint, as the README's `api/<endpoint>` keys do.
    const keyOf = (n: string) => `checkout/${'segment/'.repeat(30)}${n}`;
    const interval = (slow: boolean) => {
      for (const n of names)
        for (let i = 0; i < 20; i++) watch.observe(keyOf(n), (slow && n === 'c' ? 400 : 20) + (i % 3), 'success');
      watch.flush();
    };
    for (let i = 0; i < 40; i++) interval(false);
    interval(true);
    // Before the fix: 'none' (eject was given the cut key, which ends in a hash: no endpoint).
    expect(api.snapshot().endpoints.find((e) => e.name === 'c')?.ejection).toBe('ejected');
    // Shown cut, as the snapshot shows the key.
    const shownKey = watch.snapshot().keys.find((k) => k.raised)?.key;
    expect(shownKey?.length).toBeLessThanOrEqual(200);
    expect(events).toEqual([expect.objectContaining({ key: shownKey, target: 'c', taken: true })]);
  });

  it('a long key with a password reaches breakerOf whole, and is shown cut and without it', () => {
    const clock = new ManualClock(1_000_000);
    const bus = createBus();
    const shownOut: unknown[] = [];
    for (const type of ['anomaly.score', 'anomaly.detected', 'anomaly.action'] as const)
      bus.on(type, (e) => void shownOut.push(e));
    const long = `postgres://app:hunter2@db.internal/${'x'.repeat(300)}`;
    const given: string[] = [];
    const opened: string[] = [];
    const watch = anomalyWatch({
      bus,
      clock,
      interval: 1_000,
      raiseAfter: 1,
      detector: 'baseline',
      actions: {
        openBreaker: {
          breakerOf: (key) => {
            given.push(key);
            return key === long ? { name: 'db', open: () => void opened.push('db') } : undefined;
          },
          maxShare: 0.5,
        },
      },
    });
    cleanups.push(() => watch.dispose());
    const names = [long, 'b', 'c', 'd'];
    const interval = (slow: boolean) => {
      for (const n of names)
        for (let i = 0; i < 20; i++) watch.observe(n, (slow && n === long ? 400 : 20) + (i % 3), 'success');
      watch.flush();
    };
    for (let i = 0; i < 40; i++) interval(false);
    interval(true);
    // Before the fix: the cut key, and no breaker opened.
    expect(given).toEqual([long]);
    expect(opened).toEqual(['db']);
    shownOut.push(watch.snapshot());
    const text = JSON.stringify(shownOut);
    expect(text).not.toContain('hunter2');
    expect(text).not.toContain('x'.repeat(250));
  });
});
