import { createBus, ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { recordWarnings, tick } from '../../../test/support/warnings.js';
import { anomalyWatch } from '../src/index.js';

const warnings = recordWarnings();

/** An Error whose every read throws: its message, its prototype, its properties. */
function unreadable(): Error {
  const trap = () => {
    throw new Error('no reading me');
  };
  return new Proxy(new Error('x'), { get: trap, getPrototypeOf: trap, has: trap });
}

describe('anomalyWatch: a callback that throws an error no message can be read from (review)', () => {
  it('is told as such, once, and the interval it threw in is still scored for every key', async () => {
    const clock = new ManualClock(0);
    const bus = createBus();
    const scored: string[] = [];
    bus.on('anomaly.score', (e) => void scored.push(`${clock.now()} ${e.key}`));
    const watch = anomalyWatch({
      bus,
      clock,
      interval: 1000,
      raiseAfter: 1,
      actions: {
        openBreaker: {
          breakerOf: () => {
            throw unreadable();
          },
        },
      },
    });
    let detectedAt: number | undefined;
    bus.on('anomaly.detected', () => void (detectedAt ??= clock.now()));
    for (let s = 0; s < 60; s++) {
      for (const n of ['a', 'b', 'c']) {
        const latency = s >= 40 && n === 'a' ? 300 : 20 + (s % 3);
        for (let i = 0; i < 10; i++) bus.emit({ type: 'breaker.success', source: `api/${n}`, time: 0, latency });
      }
      await clock.advance(1000);
    }
    watch.dispose();
    await tick();
    expect(detectedAt).toBeDefined();
    // Every key scored in the interval whose detection called the callback.
    expect(scored.filter((s) => s.startsWith(`${detectedAt} `)).sort()).toEqual(
      ['api/a', 'api/b', 'api/c'].map((k) => `${detectedAt} ${k}`),
    );
    expect(warnings.filter((w) => w.code === 'HOLDFAST_CALLBACK_ERROR').map((w) => w.message)).toEqual([
      'anomalyWatch "anomaly": openBreaker.breakerOf threw (reported once; the watch carries on without it): an error that cannot be read',
    ]);
  });
});
