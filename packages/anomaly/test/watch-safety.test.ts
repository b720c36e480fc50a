/**
 * The watch's safety rules against a real failover set: it never takes out what the operator or
 * the set took out, never undoes what it did not do, forgetting a key is no recovery, eviction
 * passes over raised keys, and a user callback that throws is contained. Driven by `flush()`.
 */
import { createBus, type EventOf, type EventType, ManualClock } from '@holdfast/core';
import { failover } from '@holdfast/failover';
import { afterEach, describe, expect, it } from 'vitest';
import { anomalyWatch, halfSpaceForest, robustBaseline, scoreSeries } from '../src/index.js';

const cleanups: (() => unknown)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

function setup(options: { maxKeys?: number; idleAfter?: number; duration?: number } = {}) {
  const clock = new ManualClock(1_000_000);
  const bus = createBus({ onListenerError: () => {} });
  const events: EventOf<EventType>[] = [];
  bus.on('*', (e) => events.push(e as EventOf<EventType>));
  const of = <K extends EventType>(type: K) => events.filter((e) => e.type === type) as unknown as EventOf<K>[];
  const api = failover({ name: 'api', clock, bus, policies: false, endpoints: ['a', 'b', 'c'] });
  const watch = anomalyWatch({
    bus,
    clock,
    interval: 1_000,
    // One slow interval raises: these tests are about what the watch does once an anomaly is raised.
    raiseAfter: 1,
    ...(options.maxKeys === undefined ? {} : { maxKeys: options.maxKeys }),
    ...(options.idleAfter === undefined ? {} : { idleAfter: options.idleAfter }),
    actions: { eject: { failover: api, duration: options.duration ?? 30_000 } },
  });
  cleanups.push(
    () => api.dispose(),
    () => watch.dispose(),
  );
  const interval = (latency: Partial<Record<'a' | 'b' | 'c', number>>) => {
    for (const [name, ms] of Object.entries(latency)) {
      for (let i = 0; i < 20; i++) watch.observe(`api/${name}`, ms + (i % 3), 'success');
    }
    watch.flush();
  };
  for (let i = 0; i < 40; i++) interval({ a: 20, b: 20, c: 20 });
  const ejection = (name: string) => api.snapshot().endpoints.find((e) => e.name === name)?.ejection;
  return { clock, bus, of, api, watch, interval, ejection };
}

describe('anomalyWatch with a real failover set', () => {
  it('does not eject an endpoint the set ejected itself, nor put it back when its anomaly clears', () => {
    const { api, of, interval, ejection } = setup();
    // The set (its own outlier rule, or another operator tool) took c out for a minute.
    expect(api.eject('c', { durationMs: 60_000, reason: 'failures' })).toBe(true);
    interval({ a: 20, b: 20, c: 400 });
    const refused = of('anomaly.action').filter((e) => e.action === 'eject' && !e.taken);
    expect(refused.map((e) => e.reason)).toEqual(['ejected']);
    for (let i = 0; i < 30; i++) interval({ a: 20, b: 20, c: 20 });
    expect(of('anomaly.cleared').filter((e) => e.key === 'api/c' && e.reason === 'recovered').length).toBeGreaterThan(
      0,
    );
    expect(of('anomaly.action').filter((e) => e.action === 'restore')).toEqual([]);
    expect(ejection('c')).toBe('ejected');
  });

  it('does not undo an ejection the set made again after its own', () => {
    const { api, of, interval, ejection } = setup();
    interval({ a: 20, b: 20, c: 400 });
    expect(ejection('c')).toBe('ejected');
    // Then the set ejects c anew by its own rule (its probe failed), for longer.
    expect(api.eject('c', { durationMs: 120_000, reason: 'failures' })).toBe(true);
    for (let i = 0; i < 30; i++) interval({ a: 20, b: 20, c: 20 });
    const restores = of('anomaly.action').filter((e) => e.action === 'restore');
    expect(restores.map((e) => e.reason)).toEqual(['cleared']);
    // The watch forgot its own ejection, and left the set's in place.
    expect(of('failover.restore')).toEqual([]);
    expect(ejection('c')).toBe('ejected');
  });

  it('refuses, by name, to take out the last endpoint in service', async () => {
    const { api, of, interval } = setup();
    await api.drain('a');
    await api.drain('b');
    interval({ c: 400 });
    const refused = of('anomaly.action').filter((e) => e.action === 'eject' && !e.taken);
    expect(refused.map((e) => `${e.target}:${e.reason}`)).toEqual(['c:lastEndpoint']);
    expect(await api.execute((e) => e.name)).toBe('c');
  });

  it('clears a forgotten key with reason "forgotten", and lets its ejection run its course', async () => {
    const { clock, of, interval, ejection, watch } = setup({ idleAfter: 5, duration: 30_000 });
    interval({ a: 20, b: 20, c: 400 });
    const detected = of('anomaly.detected').filter((e) => e.key === 'api/c');
    expect(detected.length).toBeGreaterThan(0);
    for (let i = 0; i < 5; i++) interval({ a: 20, b: 20 });
    expect(watch.snapshot().keys.map((k) => k.key)).toEqual(['api/a', 'api/b']);
    const cleared = of('anomaly.cleared').filter((e) => e.key === 'api/c');
    expect(cleared.map((e) => e.reason)).toEqual(detected.map(() => 'forgotten'));
    expect(cleared.map((e) => `${e.detector}:${e.metric}`).sort()).toEqual(
      detected.map((e) => `${e.detector}:${e.metric}`).sort(),
    );
    // Not a recovery: c stays out until its ejection is over, then the set's probe decides.
    expect(ejection('c')).toBe('ejected');
    await clock.advance(30_000);
    expect(ejection('c')).toBe('probe');
    expect(of('anomaly.action').map((e) => `${e.action}:${e.reason}`)).toEqual(['eject:anomaly', 'restore:expired']);
  });

  it('at maxKeys forgets the key that has gone longest without a call, passing over a raised one', () => {
    const { of, interval, watch } = setup({ maxKeys: 3 });
    interval({ a: 20, b: 20, c: 400 });
    interval({ b: 20, a: 20 }); // c (ejected) has no calls; b then a had their first calls
    expect(watch.snapshot().keys.map((k) => k.key)).toEqual(['api/c', 'api/b', 'api/a']);
    // b and a were busy the last interval: a new key takes neither's place (each has learned its
    // baseline), it is counted under _other.
    watch.observe('db', 5, 'success');
    expect(watch.snapshot().keys.map((k) => k.key)).toEqual(['api/c', 'api/b', 'api/a', '_other']);
    interval({ a: 20 }); // b idle a whole interval now
    watch.observe('cache', 5, 'success');
    expect(watch.snapshot().keys.map((k) => k.key)).toEqual(['api/c', '_other', 'api/a', 'cache']);
    // A key never scored goes before any learned one: new keys churn among themselves.
    watch.observe('db', 5, 'success');
    expect(watch.snapshot().keys.map((k) => k.key)).toEqual(['api/c', '_other', 'api/a', 'db']);
    expect(of('anomaly.cleared')).toEqual([]);
    expect(of('anomaly.action').filter((e) => e.action === 'restore')).toEqual([]);
  });

  it('contains a breakerOf or endpointOf that throws: no endpoint, no breaker, one warning each', async () => {
    const clock = new ManualClock(0);
    const bus = createBus();
    const api = failover({ name: 'api', clock, bus, policies: false, endpoints: ['a', 'b', 'c'] });
    const warnings: string[] = [];
    const onWarning = (w: Error & { code?: string }) => {
      if (w.code === 'HOLDFAST_CALLBACK_ERROR') warnings.push(w.message);
    };
    process.on('warning', onWarning);
    cleanups.push(() => process.off('warning', onWarning));
    const boom = (key: string): never => {
      throw new Error(`no such key ${key}`);
    };
    const watch = anomalyWatch({
      bus,
      clock,
      interval: 1_000,
      actions: { eject: { failover: api, endpointOf: boom }, openBreaker: { breakerOf: boom } },
    });
    cleanups.push(
      () => api.dispose(),
      () => watch.dispose(),
    );
    const refused: string[] = [];
    bus.on('anomaly.action', (e) => refused.push(`${e.action}:${e.reason}`));
    for (let s = 0; s < 45; s++) {
      for (const n of ['a', 'b', 'c']) {
        for (let i = 0; i < 20; i++) watch.observe(`api/${n}`, (s >= 40 && n === 'c' ? 400 : 20) + (i % 3), 'success');
      }
      await clock.advance(1_000); // the watch's own timer flushes
    }
    expect(watch.snapshot().keys.find((k) => k.key === 'api/c')?.samples).toBe(45);
    expect(refused).toEqual(['openBreaker:unknown']);
    await new Promise((resolve) => setImmediate(resolve)); // warnings are emitted on the next tick
    expect(warnings).toHaveLength(2);
    expect(warnings.join('\n')).toMatch(/eject\.endpointOf threw.*no such key/);
    expect(warnings.join('\n')).toMatch(/openBreaker\.breakerOf threw.*no such key/);
  });
});

describe('detectors: a wild value while warming up', () => {
  const usual = (i: number) => 10 + (i % 3);

  it('the baseline and each forest dimension still see a later ten-fold jump in the same metric', () => {
    const series = Array.from({ length: 300 }, (_, i) => (i === 2 ? -1e6 : i === 5 ? 1e9 : i === 250 ? 100 : usual(i)));
    expect(scoreSeries(series).anomalies.map((a) => a.index)).toEqual([250]);
    const rows = series.map((v, i) => [v, 0.01, usual(i)]);
    const found = scoreSeries(rows, { detector: 'forest' }).anomalies;
    expect(found.map((a) => `${a.index}:${a.metric}`)).toContain('250:m0');
  });

  it('starts near the first samples, neither from 0 nor dragged by a wild one among them', () => {
    const b = robustBaseline({ warmup: 8 });
    for (const x of [100, 101, 99, 1e6, 100, 102, 98, 100]) b.update(x);
    expect(b.expected).toBeCloseTo(100, 0);
    const v = b.update(103);
    expect(v.spread).toBeLessThan(5);
    expect(v.raised).toBe(false);
    const f = halfSpaceForest({ dimensions: 1, warmup: 8, window: 8 });
    let expected: readonly number[] = [];
    for (const x of [100, 101, 99, 1e6, 100, 102, 98, 100, 101]) expected = f.update([x]).expected;
    // The forest learns running means while warming up, the wild value pulled in to the fence of
    // ten deviations around the first samples' median: near 100, not 1e5.
    expect(Math.abs((expected[0] as number) - 100)).toBeLessThan(5);
  });
});

describe('scoreSeries options', () => {
  it('names the column count when a CSV is too wide for the forest', () => {
    const header = ['time', ...Array.from({ length: 70 }, (_, i) => `m${i}`)].join(',');
    const row = ['1', ...Array.from({ length: 70 }, () => '1')].join(',');
    expect(() => scoreSeries(`${header}\n${row}\n`)).toThrow(/csv\.header has 70 metric columns.*at most 64/);
    expect(scoreSeries(`${header}\n${row}\n`, { detector: 'baseline' }).points).toHaveLength(1);
  });

  it('rejects an unknown option or a bad detector option by its path', () => {
    expect(() => scoreSeries([1, 2], { detecter: 'forest' } as never)).toThrow(/detecter is not a known option/);
    expect(() => scoreSeries([1, 2], { baseline: { halfLife: 0 } })).toThrow(/baseline\.halfLife/);
    expect(() => scoreSeries([[1, 2]], { forest: { trees: 0 } })).toThrow(/forest\.trees/);
  });
});

describe('dispose() closes what it raised (review)', () => {
  it('every anomaly.detected gets its anomaly.cleared, reason forgotten, when the watch is disposed', () => {
    const clock = new ManualClock(0);
    const bus = createBus();
    const watch = anomalyWatch({ bus, clock, raiseAfter: 1 });
    const open = new Map<string, number>();
    bus.on('anomaly.detected', (e) =>
      open.set(`${e.key} ${e.detector}`, (open.get(`${e.key} ${e.detector}`) ?? 0) + 1),
    );
    bus.on('anomaly.cleared', (e) => open.set(`${e.key} ${e.detector}`, (open.get(`${e.key} ${e.detector}`) ?? 0) - 1));
    for (let i = 0; i < 40; i++) {
      for (let c = 0; c < 50; c++) watch.observe('db', 20 + (c % 5), i >= 38 ? 'failure' : 'success');
      watch.flush();
    }
    expect([...open.values()].some((n) => n > 0)).toBe(true);
    watch.dispose();
    expect([...open.values()].every((n) => n === 0)).toBe(true);
  });
});
