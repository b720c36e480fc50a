import { createBus, ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { anomalyWatch } from '../src/index.js';

describe('anomalyWatch openBreaker: a refusal for maxShare (review)', () => {
  it('is reported once per anomaly, however many intervals it lasts', async () => {
    const clock = new ManualClock(0);
    const bus = createBus();
    const actions: string[] = [];
    bus.on('anomaly.action', (e) => void actions.push(`${e.key} ${e.taken} ${e.reason}`));
    const opened: string[] = [];
    const watch = anomalyWatch({
      bus,
      clock,
      interval: 1000,
      raiseAfter: 1,
      // One breaker of six may be opened: a is, b is refused for as long as both stay sick.
      actions: {
        openBreaker: { breakerOf: (key) => ({ name: key, open: () => void opened.push(key) }), maxShare: 0.2 },
      },
    });
    let raised = 0;
    bus.on('anomaly.score', (e) => void (raised += Number(e.raised && e.key === 'api/b')));
    for (let s = 0; s < 70; s++) {
      for (const n of ['a', 'b', 'c', 'd', 'e', 'f']) {
        const latency = s >= 35 && (n === 'a' || n === 'b') ? 300 : 20 + (s % 3);
        for (let i = 0; i < 10; i++) bus.emit({ type: 'breaker.success', source: `api/${n}`, time: 0, latency });
      }
      await clock.advance(1000);
    }
    watch.dispose();
    expect(raised).toBeGreaterThan(20); // b's anomaly lasted many intervals...
    expect(opened).toEqual(['api/a']);
    expect(actions).toEqual(['api/a true anomaly', 'api/b false maxShare']); // ...and was refused once
  });
});
