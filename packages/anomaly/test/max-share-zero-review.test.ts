import { createBus, ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { anomalyWatch } from '../src/index.js';

/**
 * `maxShare: 0` says "take nothing out": the watch scores and raises anomalies, and acts on none.
 * Above 0, a small set may still lose one (a share of 0.34 of three endpoints is one).
 */
async function sickRun(
  actions: Parameters<typeof anomalyWatch>[0] extends infer O ? (O extends { actions?: infer A } ? A : never) : never,
) {
  const clock = new ManualClock(0);
  const bus = createBus();
  const refused: string[] = [];
  let detected = 0;
  bus.on('anomaly.detected', () => void detected++);
  bus.on('anomaly.action', (e) => {
    if (!e.taken) refused.push(`${e.action}:${e.reason}`);
  });
  const watch = anomalyWatch({ bus, clock, interval: 1000, raiseAfter: 1, actions });
  for (let s = 0; s < 60; s++) {
    const sick = s >= 40;
    for (const n of ['a', 'b', 'c']) {
      const latency = sick && n === 'a' ? 300 : 20 + (s % 3);
      for (let i = 0; i < 10; i++) bus.emit({ type: 'breaker.success', source: `api/${n}`, time: 0, latency });
    }
    await clock.advance(1000);
  }
  watch.dispose();
  return { refused, detected };
}

describe('anomalyWatch actions, maxShare 0', () => {
  const set = (drained: string[]) => ({
    name: 'api',
    endpoints: [{ name: 'a' }, { name: 'b' }, { name: 'c' }],
    eject: (n: string) => drained.push(n) > 0,
    restore: () => true,
  });

  it('eject with maxShare 0 takes no endpoint out, and says why', async () => {
    const drained: string[] = [];
    const { refused, detected } = await sickRun({ eject: { failover: set(drained), maxShare: 0 } });
    expect(detected).toBeGreaterThan(0);
    expect(drained).toEqual([]);
    expect(refused).toContain('eject:maxShare');
  });

  it('openBreaker with maxShare 0 opens no breaker', async () => {
    let opened = 0;
    const breaker = { name: 'b', open: () => void opened++ };
    const { refused, detected } = await sickRun({ openBreaker: { breakerOf: () => breaker, maxShare: 0 } });
    expect(detected).toBeGreaterThan(0);
    expect(opened).toBe(0);
    expect(refused).toContain('openBreaker:maxShare');
  });

  it('the default (0.34) still takes one of three out', async () => {
    const drained: string[] = [];
    await sickRun({ eject: { failover: set(drained) } });
    expect(drained).toEqual(['a']);
  });
});
