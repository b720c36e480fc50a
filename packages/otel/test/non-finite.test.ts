/**
 * A latency or a delay that is no number of seconds (NaN from a stopwatch never started, Infinity
 * from a user's own policy): the call is counted, the histogram is left alone (a NaN in its sum
 * would stay there for good).
 */
import type { HoldfastEvent } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { metricNames } from '../src/index.js';
import { collectPoints } from './collect.js';

const ev = (e: Record<string, unknown>) => ({ time: 1, source: 'pay', ...e }) as unknown as HoldfastEvent;

describe('instrument(), non-finite durations', () => {
  it('a NaN or infinite latency is counted as a call, not recorded in the duration histogram', async () => {
    const m = collectPoints();
    try {
      m.bus.emit(ev({ type: 'breaker.success', latency: 5 }));
      m.bus.emit(ev({ type: 'breaker.success', latency: Number.NaN }));
      m.bus.emit(ev({ type: 'breaker.success', latency: Number.POSITIVE_INFINITY }));
      m.bus.emit(ev({ type: 'retry.attempt', attempt: 2, delay: Number.NaN }));
      expect(await m.value(metricNames.breakerCalls, { 'holdfast.outcome': 'success' })).toBe(3);
      const [duration] = await m.points(metricNames.breakerCallDuration);
      const histogram = duration?.value as unknown as { count: number; sum: number };
      // Before the fix: count 3 and sum NaN (the SDK records a NaN; the sum is NaN from then on).
      expect({ count: histogram.count, sum: histogram.sum }).toEqual({ count: 1, sum: 0.005 });
      const [delay] = await m.points(metricNames.retryDelay);
      expect(delay).toBeUndefined();
    } finally {
      await m.close();
    }
  });
});
