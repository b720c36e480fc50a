/**
 * Hostile review of anomalyWatch(): bad latencies given to observe(), a listener that disposes
 * the watch in the middle of a flush, and keys that carry a password. Driven by flush() on a
 * ManualClock, against a real failover set.
 */
import { createBus, type EventOf, type EventType, HoldfastConfigError, ManualClock } from '@holdfast/core';
import { failover } from '@holdfast/failover';
import { afterEach, describe, expect, it } from 'vitest';
import { anomalyWatch } from '../src/index.js';

const cleanups: (() => unknown)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

const names = ['a', 'b', 'c', 'd', 'e', 'f'] as const;

function setup(actions: { budget?: boolean; breakers?: boolean } = {}) {
  const clock = new ManualClock(1_000_000);
  const bus = createBus({ onListenerError: () => {} });
  const events: EventOf<EventType>[] = [];
  bus.on('*', (e) => events.push(e as EventOf<EventType>));
  const of = <K extends EventType>(type: K) => events.filter((e) => e.type === type) as unknown as EventOf<K>[];
  const api = failover({ name: 'api', clock, bus, policies: false, endpoints: [...names] });
  let balance = 1_000;
  const budget = {
    tryWithdraw: () => balance > 0 && balance-- > 0,
    get balance() {
      return balance;
    },
  };
  const opened: string[] = [];
  const watch = anomalyWatch({
    bus,
    clock,
    interval: 1_000,
    raiseAfter: 1,
    actions: {
      eject: { failover: api, duration: 30_000 },
      ...(actions.budget ? { lowerBudget: { budget } } : {}),
      ...(actions.breakers
        ? { openBreaker: { breakerOf: (key: string) => ({ name: key, open: () => void opened.push(key) }) } }
        : {}),
    },
  });
  cleanups.push(
    () => api.dispose(),
    () => watch.dispose(),
  );
  const interval = (slow: Partial<Record<(typeof names)[number], number>> = {}) => {
    for (const name of names) {
      for (let i = 0; i < 20; i++) watch.observe(`api/${name}`, (slow[name] ?? 20) + (i % 3), 'success');
    }
    watch.flush();
  };
  for (let i = 0; i < 40; i++) interval();
  const out = () =>
    api
      .snapshot()
      .endpoints.filter((e) => e.ejection !== 'none')
      .map((e) => e.name);
  return { clock, bus, events, of, api, watch, interval, out, opened, balance: () => balance };
}

describe('anomalyWatch.observe() given a latency that is no duration (review)', () => {
  it('a negative latency does not end an ejection early, so the watch never takes out more than maxShare', () => {
    const { watch, interval, out } = setup();
    interval({ c: 400 });
    expect(out()).toEqual(['c']);
    // A caller's own stopwatch read across a wall-clock step back: -1e12 ms.
    watch.observe('api/c', -1e12, 'success');
    interval({ d: 400 });
    interval({ d: 400, e: 400 });
    // maxShare 0.34 of 6 endpoints: 2 at once.
    expect(out().length).toBeLessThanOrEqual(2);
    expect(watch.snapshot().ejected).toEqual(out());
  });

  it('a NaN or infinite latency counts the call, but is no value of the percentiles', () => {
    const { watch } = setup();
    for (let i = 0; i < 19; i++) watch.observe('api/a', 20, 'success');
    watch.observe('api/a', Number.NaN, 'success');
    for (let i = 0; i < 19; i++) watch.observe('api/b', 20, 'success');
    watch.observe('api/b', Number.POSITIVE_INFINITY, 'success');
    watch.flush();
    for (const key of ['api/a', 'api/b']) {
      const metrics = watch.snapshot().keys.find((k) => k.key === key)?.metrics;
      expect(metrics?.find((m) => m.name === 'latencyP99')?.value, key).toBe(20);
      expect(metrics?.find((m) => m.name === 'throughput')?.value, key).toBe(20);
    }
  });

  it('refuses an outcome it does not know, by name, rather than count it as a success', () => {
    const { watch } = setup();
    expect(() => watch.observe('api/a', 5, 'timeout' as 'success')).toThrow(HoldfastConfigError);
    expect(() => watch.observe('api/a', 5, 'timeout' as 'success')).toThrow(/outcome/);
  });
});

describe('anomalyWatch disposed by a listener in the middle of a flush (review)', () => {
  it('reports nothing and does nothing after dispose(): every anomaly.detected has its anomaly.cleared', () => {
    const { bus, events, of, watch, interval, out, opened, balance } = setup({ budget: true, breakers: true });
    bus.on('anomaly.detected', () => watch.dispose());
    const before = balance();
    // Two endpoints go slow in the same interval: the first anomaly reported disposes the watch.
    interval({ c: 400, e: 400 });
    const detected = of('anomaly.detected');
    const cleared = of('anomaly.cleared');
    expect(detected.length).toBeGreaterThan(0);
    expect(cleared.map((e) => `${e.key} ${e.detector} ${e.metric}`).sort()).toEqual(
      detected.map((e) => `${e.key} ${e.detector} ${e.metric}`).sort(),
    );
    // Nothing acted on after dispose(): nothing out, no breaker opened, nothing withdrawn.
    expect(out()).toEqual([]);
    expect(opened).toEqual([]);
    expect(balance()).toBe(before);
    // The last anomaly event is the last anomaly.cleared of dispose(): no score, no action after it.
    const last = Math.max(...cleared.map((e) => events.indexOf(e as EventOf<EventType>)));
    expect(events.slice(last + 1).filter((e) => e.type.startsWith('anomaly.'))).toEqual([]);
  });
});

describe('anomalyWatch keys that carry a password (review)', () => {
  it('shows no password in its events, its snapshot or its warnings, and a shown key as itself', async () => {
    const clock = new ManualClock(1_000_000);
    const bus = createBus({ onListenerError: () => {} });
    const events: unknown[] = [];
    bus.on('*', (e) => events.push(e));
    const warnings: string[] = [];
    const warned = (w: Error) => warnings.push(w.message);
    process.on('warning', warned);
    const watch = anomalyWatch({
      bus,
      clock,
      interval: 1_000,
      raiseAfter: 1,
      actions: {
        openBreaker: {
          breakerOf: () => {
            throw new Error('no breaker for postgres://admin:hunter2@db:5432/orders');
          },
        },
      },
    });
    cleanups.push(
      () => watch.dispose(),
      () => process.off('warning', warned),
    );
    const keys = [
      'postgres://admin:hunter2@db:5432/orders',
      'https://api.example.com/v1?api_key=hunter2',
      'host=db user=admin password=hunter2 dbname=orders',
      'admin:hunter2@cache:6379',
      'postgres://***@db:5432/shown',
      'api/plain',
    ];
    for (let i = 0; i < 41; i++) {
      for (const key of keys)
        for (let j = 0; j < 20; j++) watch.observe(key, i === 40 ? 2_000 : 20 + (j % 3), 'success');
      watch.flush();
    }
    const snapshot = watch.snapshot();
    watch.dispose();
    await new Promise((resolve) => setImmediate(resolve));
    expect(events.filter((e) => (e as { type: string }).type === 'anomaly.detected').length).toBeGreaterThan(0);
    expect(JSON.stringify(events)).not.toContain('hunter2');
    expect(JSON.stringify(snapshot)).not.toContain('hunter2');
    expect(warnings.some((w) => w.includes('breakerOf'))).toBe(true);
    expect(warnings.join('\n')).not.toContain('hunter2');
    expect(snapshot.keys.map((k) => k.key)).toContain('postgres://***@db:5432/shown');
    expect(snapshot.keys.map((k) => k.key)).toContain('api/plain');
  });
});

describe('anomalyWatch with a key per request (review)', () => {
  it('holds no detectors for keys that never made a sample: 200 one-call keys take well under 4 MB, not 200 forests', () => {
    const bus = createBus({ onListenerError: () => {} });
    const clock = new ManualClock(1_000_000);
    const watch = anomalyWatch({ bus, clock, interval: 1_000 });
    cleanups.push(() => watch.dispose());
    const before = process.memoryUsage().arrayBuffers;
    // A key per request path: each one call, the watch full at its maxKeys (200) and churning.
    for (let i = 0; i < 2_000; i++) watch.observe(`GET /users/${i}`, 20, 'success');
    const held = process.memoryUsage().arrayBuffers - before;
    expect(watch.snapshot().keys.length).toBe(200);
    // A forest with the default settings is about 92 kB: 200 of them held would be 18 MB.
    expect(held).toBeLessThan(4_000_000);
    // A key that makes a sample still gets its detectors and is scored.
    for (let i = 0; i < 20; i++) {
      for (let j = 0; j < 10; j++) watch.observe('GET /users/7', 20, 'success');
      watch.flush();
    }
    expect(watch.snapshot().keys.find((k) => k.key === 'GET /users/7')?.samples).toBe(20);
  });
});

describe('anomalyWatch keys that show alike once redacted (review)', () => {
  it('shows two users behind one host as two keys: their scores are not merged under one shown key', async () => {
    const clock = new ManualClock(1_000_000);
    const bus = createBus({ onListenerError: () => {} });
    const scored: string[] = [];
    bus.on('anomaly.score', (e) => scored.push(e.key));
    const watch = anomalyWatch({ bus, clock, interval: 1_000 });
    cleanups.push(() => watch.dispose());
    const keys = ['alice:s3cret@cache:6379', 'bob:other@cache:6379', 'postgres://u:a@db/x', 'postgres://u:b@db/x'];
    for (let i = 0; i < 41; i++) {
      for (const key of keys) for (let j = 0; j < 20; j++) watch.observe(key, 20 + (j % 3), 'success');
      watch.flush();
    }
    const shownKeys = watch.snapshot().keys.map((k) => k.key);
    await new Promise((resolve) => setImmediate(resolve));
    expect(new Set(shownKeys).size).toBe(4);
    expect(new Set(scored).size).toBe(4);
    expect(JSON.stringify({ shownKeys, scored })).not.toMatch(/s3cret|other|u:a@|u:b@/);
  });
});

describe('anomalyWatch actions on keys that show alike once redacted (review)', () => {
  it("each anomaly.action names its key as the watch's other events and snapshot show it", async () => {
    const clock = new ManualClock(1_000_000);
    const bus = createBus({ onListenerError: () => {} });
    const detected: string[] = [];
    const acted: string[] = [];
    bus.on('anomaly.detected', (e) => void detected.push(e.key));
    bus.on('anomaly.action', (e) => void acted.push(`${e.key} -> ${e.target}`));
    const keys = ['postgres://u:a@db/x', 'postgres://u:b@db/x'];
    const watch = anomalyWatch({
      bus,
      clock,
      interval: 1_000,
      raiseAfter: 1,
      // No breaker for either: each refusal names the key as the target too.
      actions: { openBreaker: { breakerOf: () => undefined } },
    });
    cleanups.push(() => watch.dispose());
    for (let i = 0; i < 60; i++) {
      const sick = i >= 40;
      for (const key of keys) for (let j = 0; j < 20; j++) watch.observe(key, sick ? 900 : 20 + (j % 3), 'success');
      watch.flush();
    }
    await new Promise((resolve) => setImmediate(resolve));
    const shownKeys = watch.snapshot().keys.map((k) => k.key);
    expect(new Set(detected)).toEqual(new Set(shownKeys));
    expect(new Set(acted)).toEqual(new Set(shownKeys.map((k) => `${k} -> ${k}`)));
    expect(JSON.stringify(acted)).not.toMatch(/u:a@|u:b@/);
  });
});
