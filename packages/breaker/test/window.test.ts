import { createBus } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { binOf, binValue, quantiles } from '../src/histogram.js';
import { circuitBreaker } from '../src/index.js';
import { after, fail, failTimes, setup, succeed } from './support.js';

describe('rolling window', () => {
  it('catches up after an idle gap: an hour-old failure does not count', async () => {
    const { breaker, clock } = setup({ failureRateThreshold: 0.5, minimumCalls: 3 });
    await failTimes(breaker, 2);
    expect(breaker.snapshot().window).toMatchObject({ calls: 2, failures: 2 });
    await clock.advance(3_600_000);
    expect(breaker.snapshot().window).toMatchObject({ calls: 0, failures: 0 });
    await breaker.execute(succeed);
    await failTimes(breaker, 1);
    // Had the old failures counted, 3 of 4 would have opened it.
    expect(breaker.state).toBe('closed');
    expect(breaker.snapshot().window).toMatchObject({ calls: 2, failures: 1, failureRate: 0.5 });
  });

  it('drops calls bucket by bucket as the window slides', async () => {
    const { breaker, clock } = setup({ window: { duration: 10_000, buckets: 10 }, minimumCalls: 100 });
    await failTimes(breaker, 1); // bucket [0, 1000)
    await clock.advance(4_500);
    await breaker.execute(succeed); // bucket [4000, 5000)
    await clock.advance(5_400); // t = 9_900: both still inside
    expect(breaker.snapshot().window).toMatchObject({ calls: 2, failures: 1 });
    await clock.advance(100); // t = 10_000: the first bucket has left
    expect(breaker.snapshot().window).toMatchObject({ calls: 1, failures: 0 });
    await clock.advance(4_000); // t = 14_000: the second has too
    expect(breaker.snapshot().window).toMatchObject({ calls: 0 });
  });

  it('starts empty when the breaker closes, so old failures cannot re-open it', async () => {
    const { breaker, clock } = setup({ minimumCalls: 3, openFor: 1_000 });
    await failTimes(breaker, 3);
    expect(breaker.state).toBe('open');
    await clock.advance(1_000);
    await breaker.execute(succeed);
    expect(breaker.state).toBe('closed');
    await failTimes(breaker, 2);
    expect(breaker.state).toBe('closed');
    expect(breaker.snapshot().window).toMatchObject({ calls: 2, failures: 2 });
  });

  it('reports p50, p95 and p99 latency of the calls in the window', async () => {
    const { breaker, clock } = setup();
    expect(breaker.snapshot().latency).toEqual({ p50: null, p95: null, p99: null });
    for (let i = 0; i < 100; i++) {
      const ms = i < 90 ? 2 : i < 98 ? 100 : 1_000;
      const call = breaker.execute(after(clock, ms, i));
      await clock.advance(ms);
      await call;
    }
    const { latency } = breaker.snapshot();
    expect(latency.p50).toBe(2);
    expect(latency.p95).toBeGreaterThanOrEqual(80);
    expect(latency.p95).toBeLessThanOrEqual(120);
    expect(latency.p99).toBeGreaterThanOrEqual(800);
    expect(latency.p99).toBeLessThanOrEqual(1_200);
  });
});

describe('latency histogram', () => {
  it('reports every value within 20% of itself, exactly below 4 ms', () => {
    for (const v of [0, 1, 2, 3]) expect(binValue(binOf(v))).toBe(v);
    for (let v = 4; v < 2_000_000; v = Math.ceil(v * 1.07)) {
      const reported = binValue(binOf(v));
      expect(Math.abs(reported - v) / v).toBeLessThanOrEqual(0.2);
    }
  });

  it('puts values past its range in the last bin and reads quantiles by rank', () => {
    const bins = new Uint32Array(43);
    bins[binOf(10)] = 99;
    bins[binOf(86_400_000)] = 1;
    const [p50, p99, p100] = quantiles(bins, [0.5, 0.99, 1]);
    expect(p50).toBe(binValue(binOf(10)));
    expect(p99).toBe(binValue(binOf(10)));
    expect(p100).toBe(binValue(42));
  });
});

describe('latency sample on the real clock', () => {
  const fast = async () => 'ok';

  it('counts every call though only a sample is timed, and still reports percentiles', async () => {
    const bus = createBus();
    const breaker = circuitBreaker({ bus, name: 'sampled', minimumCalls: 1_000_000 });
    for (let i = 0; i < 5_000; i++) await breaker.execute(fast);
    for (let i = 0; i < 100; i++) await breaker.execute(fail()).catch(() => {});
    const snap = breaker.snapshot();
    expect(snap.window).toMatchObject({ calls: 5_100, successes: 5_000, failures: 100 });
    expect(snap.latency.p50).not.toBeNull();
    expect(snap.latency.p99).not.toBeNull();
    breaker.dispose();
  });

  it('after an idle gap, at most 8 untimed successes land in a bucket that is already stale', async () => {
    const breaker = circuitBreaker({ bus: createBus(), name: 'gap', window: { duration: 200, buckets: 10 } });
    for (let i = 0; i < 3_000; i++) await breaker.execute(fast);
    await new Promise((r) => setTimeout(r, 300)); // the whole window passes
    for (let i = 0; i < 40; i++) await breaker.execute(fast);
    const { calls } = breaker.snapshot().window;
    expect(calls).toBeGreaterThanOrEqual(40 - 8);
    expect(calls).toBeLessThanOrEqual(40);
    breaker.dispose();
  });

  it('times every call a listener or a slow-call rule needs', async () => {
    const bus = createBus();
    const latencies: number[] = [];
    bus.on('breaker.success', (e) => latencies.push(e.latency));
    const listened = circuitBreaker({ bus, name: 'listened' });
    for (let i = 0; i < 500; i++) await listened.execute(fast);
    expect(latencies).toHaveLength(500);
    for (const ms of latencies) expect(Number.isFinite(ms)).toBe(true);

    const quiet = createBus();
    const slowRule = circuitBreaker({
      bus: quiet,
      name: 'slow-rule',
      slowCall: { duration: 5, rateThreshold: 0.5 },
      minimumCalls: 4,
    });
    for (let i = 0; i < 200; i++) await slowRule.execute(fast);
    // Every slow call is seen, none left out of a sample.
    for (let i = 0; i < 4; i++) await slowRule.execute(() => new Promise((r) => setTimeout(r, 20)));
    expect(slowRule.snapshot().window.slow).toBeGreaterThanOrEqual(4);
    listened.dispose();
    slowRule.dispose();
  });
});
