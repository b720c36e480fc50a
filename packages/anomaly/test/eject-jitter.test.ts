import { createBus, type EventOf, ManualClock, seededRandom } from '@holdfast/core';
import { failover } from '@holdfast/failover';
import { describe, expect, it } from 'vitest';
import { anomalyWatch } from '../src/index.js';

// Early ejection against peers whose latencies jitter as real ones do (lognormal around 20 ms,
// 20 calls a second each, one-second intervals, a real failover set, the fake clock): the watch
// must not take out endpoints that are no slower than their peers, and must take out one that is.

/**
 * Ten simulated minutes; `slow` multiplies b's latencies from the third minute on. Counts ejections
 * per endpoint. `raiseAfter` 1 raises an anomaly on a single interval, as the watch did before it
 * asked for three in a row: the jitter then raises dozens, and only the peer check stands between
 * them and an ejection.
 */
async function run(sigma: number, seed: number, slow = 1, raiseAfter?: number) {
  const clock = new ManualClock(0);
  const bus = createBus();
  const names = ['a', 'b', 'c'];
  const api = failover({ name: 'api', bus, clock, endpoints: names, retry: false, policies: false });
  const watch = anomalyWatch({
    bus,
    clock,
    interval: 1_000,
    ...(raiseAfter === undefined ? {} : { raiseAfter }),
    actions: { eject: { failover: api, duration: 30_000 } },
  });
  const ejected: Record<string, number> = { a: 0, b: 0, c: 0 };
  const reasons: string[] = [];
  let restoredWhileSlow = 0;
  let slowFrom = Number.POSITIVE_INFINITY;
  bus.on('anomaly.action', (e) => {
    if (e.action === 'eject' && e.taken) reasons.push(e.reason);
  });
  bus.on('failover.restore', (e) => {
    if (e.endpoint === 'b' && clock.now() >= slowFrom) restoredWhileSlow++;
  });
  let detected = 0;
  bus.on('failover.eject', (e: EventOf<'failover.eject'>) => {
    ejected[e.endpoint] = (ejected[e.endpoint] ?? 0) + 1;
  });
  bus.on('anomaly.detected', () => detected++);
  const random = seededRandom(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  for (let s = 0; s < 600; s++) {
    for (const n of names) {
      // An ejected endpoint takes no calls (its probe is sent by the set when the ejection runs out).
      if (api.snapshot().endpoints.find((e) => e.name === n)?.ejection === 'ejected') continue;
      if (s === 120 && slow !== 1) slowFrom = clock.now();
      const factor = n === 'b' && s >= 120 ? slow : 1;
      for (let i = 0; i < 20; i++) {
        bus.emit({
          type: 'breaker.success',
          source: `api/${n}`,
          time: 0,
          latency: 20 * factor * Math.exp(sigma * gauss()),
        });
      }
    }
    await clock.advance(1_000);
  }
  watch.dispose();
  api.dispose();
  return { ejected, detected, reasons, restoredWhileSlow };
}

describe('early ejection under latency jitter', () => {
  for (const sigma of [0.2, 0.5]) {
    for (const seed of [1, 2]) {
      it(`never ejects one of three identical endpoints (sigma ${sigma}, seed ${seed})`, async () => {
        const { ejected, detected } = await run(sigma, seed, 1, 1);
        // Raised on single intervals, the detector does raise anomalies on jitter (each endpoint's own
        // history): the peer check stops them.
        expect(detected).toBeGreaterThan(10);
        // With the peers' spread at least 10% of their mean, 1 to 12 healthy ejections here.
        expect(ejected).toEqual({ a: 0, b: 0, c: 0 });
      });
    }
  }

  it('ejects an endpoint that turns three times slower, and only it', async () => {
    const { ejected, reasons, restoredWhileSlow } = await run(0.3, 1, 3);
    // Out at detection, then again at each probe while it stays slow (8 minutes, 30 s ejections):
    // the set let it back while slow at most once, on a probe that happened to be quick.
    expect(reasons[0]).toBe('anomaly');
    expect(ejected.b).toBeGreaterThanOrEqual(12);
    expect(reasons.slice(1).every((r) => r === 'stillRaised')).toBe(true);
    expect(restoredWhileSlow).toBeLessThanOrEqual(1);
    expect({ a: ejected.a, c: ejected.c }).toEqual({ a: 0, c: 0 });
  });

  it('leaves one that turns 1.5 times slower (within what peers may differ by)', async () => {
    const { ejected } = await run(0.3, 1, 1.5);
    expect(ejected).toEqual({ a: 0, b: 0, c: 0 });
  });
});
