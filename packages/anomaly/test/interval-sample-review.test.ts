/**
 * Review: an interval's latency percentiles at a high call rate. The watch keeps at most 512
 * latencies per key and interval; past that, later calls overwrote earlier ones in a ring, so the
 * p50 and p99 were those of the interval's last 512 calls. At 400 calls a second and the default
 * 5 s interval, a slowdown over the first 4 seconds of an interval was not in its figures at all.
 */
import { createBus, ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { anomalyWatch } from '../src/index.js';

describe('anomalyWatch review: percentiles of an interval with more calls than it keeps', () => {
  it("2,000 calls, the first 1,500 slow: the interval's p50 is slow, whenever in the interval they came", () => {
    const clock = new ManualClock();
    const watch = anomalyWatch({ bus: createBus(), clock, interval: 5_000 });
    for (let i = 0; i < 2_000; i++) watch.observe('db', i < 1_500 ? 200 : 20, 'success');
    watch.flush();
    const p50 = watch.snapshot().keys[0]?.metrics.find((m) => m.name === 'latencyP50')?.value;
    watch.dispose();
    expect(p50, 'p50 of 2,000 calls of which 1,500 took 200 ms').toBe(200);
  });

  it('the same calls in the other order give the same figures (within sampling): the order in the interval does not decide', () => {
    const figures = (slowFirst: boolean) => {
      const watch = anomalyWatch({ bus: createBus(), clock: new ManualClock(), interval: 5_000 });
      for (let i = 0; i < 5_000; i++) {
        const slow = slowFirst ? i < 150 : i >= 4_850; // 3% of the calls take 900 ms
        watch.observe('db', slow ? 900 : 20 + (i % 7), 'success');
      }
      watch.flush();
      const m = watch.snapshot().keys[0]?.metrics ?? [];
      watch.dispose();
      return m.find((x) => x.name === 'latencyP99')?.value;
    };
    expect(figures(true), 'p99 when the 3% slow calls came first').toBe(900);
    expect(figures(false), 'p99 when they came last').toBe(900);
  });
});
