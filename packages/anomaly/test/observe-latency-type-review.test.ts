/**
 * Review: observe() given a latency that is no number (null from a missing timing, true, a BigInt
 * from process.hrtime.bigint(), an object whose valueOf throws) counts the call without a latency,
 * as the README says of a latency that is no duration. null and true were latencies of 0 and 1 ms
 * (pulling the percentiles down, hiding a slowdown); a BigInt threw a TypeError after the call was
 * half counted, leaving a phantom 0 ms among the interval's latencies.
 */
import { createBus, ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { anomalyWatch } from '../src/index.js';

describe('anomalyWatch.observe() with a latency that is no number (review)', () => {
  it('counts each call, without a latency, and throws nothing', () => {
    const bus = createBus();
    const w = anomalyWatch({ bus, clock: new ManualClock(0), interval: 1000, minCalls: 1 });
    const scored: Record<string, number>[] = [];
    bus.on('anomaly.score', (e) => void scored.push(Object.fromEntries(e.metrics.map((m) => [m.name, m.value]))));
    const hostile = [
      null,
      true,
      5n,
      {
        valueOf: () => {
          throw new Error('valueOf');
        },
      },
    ];
    for (const latency of hostile)
      expect(() => w.observe('api', latency as unknown as number, 'success')).not.toThrow();
    w.observe('api', 40, 'success');
    w.flush();
    expect(scored).toHaveLength(1);
    // Five calls in a second; the one latency measured is every percentile.
    expect(scored[0]?.throughput).toBe(5);
    expect(scored[0]?.latencyP50).toBe(40);
    w.dispose();
  });
});
