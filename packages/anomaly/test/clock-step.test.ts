import { type Clock, createBus, type EventOf, ManualClock } from '@holdfast/core';
import { failover } from '@holdfast/failover';
import { describe, expect, it } from 'vitest';
import { anomalyWatch } from '../src/index.js';

const HOUR = 3_600_000;

/**
 * A process clock in miniature: timers and monotonic() on a ManualClock, now() on a wall clock
 * that `step(ms)` moves as NTP or a VM resume would, leaving the rest alone.
 */
function steppingClock() {
  const manual = new ManualClock(1_000_000);
  let offset = 0;
  const clock: Clock = {
    now: () => manual.now() + offset,
    monotonic: () => manual.monotonic(),
    setTimeout: (callback, ms) => manual.setTimeout(callback, ms),
    clearTimeout: (handle) => manual.clearTimeout(handle),
  };
  return { manual, clock, step: (ms: number) => (offset += ms) };
}

/** A watch ejecting through a real failover set, fed one interval at a time (10 calls per endpoint). */
function rig() {
  const { manual, clock, step } = steppingClock();
  const bus = createBus();
  const api = failover({ name: 'api', bus, clock, endpoints: ['a', 'b', 'c'], retry: false, policies: false });
  const watch = anomalyWatch({
    bus,
    clock,
    interval: 1_000,
    raiseAfter: 1,
    actions: { eject: { failover: api, duration: 3_000 } },
  });
  const ejects: EventOf<'failover.eject'>[] = [];
  bus.on('failover.eject', (e) => ejects.push(e));
  const restores: string[] = [];
  bus.on('failover.restore', (e) => restores.push(e.endpoint));
  /** b's anomalies, each with the ManualClock's time it was told at. */
  const told: { type: string; metric: string; duration?: number; at: number }[] = [];
  bus.on(
    'anomaly.detected',
    (e) => e.key === 'api/b' && told.push({ type: e.type, metric: e.metric, at: manual.now() }),
  );
  bus.on(
    'anomaly.cleared',
    (e) => e.key === 'api/b' && told.push({ type: e.type, metric: e.metric, duration: e.duration, at: manual.now() }),
  );
  const interval = async (latency: Record<string, number>) => {
    for (const [n, ms] of Object.entries(latency)) {
      for (let i = 0; i < 10; i++) bus.emit({ type: 'breaker.success', source: `api/${n}`, time: 0, latency: ms });
    }
    await manual.advance(1_000);
  };
  /** One call through the set taking `latency` ms, reported to the watch as its breaker would. */
  const call = (latency: number) =>
    api.execute(async (e) => {
      await manual.advance(latency);
      watch.observe(`api/${e.name}`, latency, 'success');
      return e.name;
    });
  return { api, watch, ejects, restores, told, interval, call, step };
}

describe('anomalyWatch() eject: wall-clock steps', () => {
  it.each([
    ['back', -HOUR],
    ['forward', HOUR],
  ])('judges the probe after the ejection ran out though the wall clock stepped %s an hour', async (_, ms) => {
    const r = rig();
    for (let s = 0; s < 40; s++) await r.interval({ a: 20 + (s % 3), b: 20 + (s % 3), c: 20 + (s % 3) });
    await r.interval({ a: 21, b: 400, c: 22 });
    expect(r.ejects.map((e) => e.endpoint)).toEqual(['b']);
    for (let s = 0; s < 3; s++) await r.interval({ a: 21, c: 22 });
    expect(r.api.snapshot().endpoints.find((e) => e.name === 'b')).toMatchObject({ ejection: 'probe' });
    r.step(ms);
    // The probe is still slow: b goes out again as it answers, before the set lets it back.
    expect(await r.call(400)).toBe('b');
    expect(r.ejects.map((e) => [e.endpoint, e.ejections])).toEqual([
      ['b', 1],
      ['b', 2],
    ]);
    expect(r.restores).toEqual([]);
    r.watch.dispose();
    r.api.dispose();
  });

  it.each([
    ['back', -HOUR],
    ['forward', HOUR],
  ])('tells how long an anomaly lasted though the wall clock stepped %s an hour while it was raised', async (_, ms) => {
    const r = rig();
    for (let s = 0; s < 40; s++) await r.interval({ a: 20 + (s % 3), b: 20 + (s % 3), c: 20 + (s % 3) });
    await r.interval({ a: 21, b: 400, c: 22 });
    r.step(ms);
    const cleared = () => r.told.filter((t) => t.type === 'anomaly.cleared');
    for (let s = 0; s < 20 && cleared().length === 0; s++) await r.interval({ a: 21, b: 20 + (s % 3), c: 22 });
    const [first] = cleared();
    const detected = r.told.find((t) => t.type === 'anomaly.detected' && t.metric === first?.metric);
    expect(detected).toBeDefined();
    // What passed between the two, not the step: it was about -3,600,000 (back) or +3,600,000 ms.
    expect(first?.duration).toBe((first?.at ?? 0) - (detected?.at ?? 0));
    r.watch.dispose();
    r.api.dispose();
  });
});
