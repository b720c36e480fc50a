/**
 * Cardinality of the limit metrics: a rate limiter keyed per user or IP must not make a series
 * per user (keys are never attributes), and limits named per tenant stay under `maxPolicies`
 * (the rest are `_other`) in every metric, gauges read from snapshots included. Limiters that
 * come and go (a tenant's, disposed) must not fill a table until new ones go uncounted.
 */
import { createBus, createPolicyRegistry, fallback } from '@holdfast/core';
import { adaptiveConcurrency, adaptiveThrottle, bulkhead, slidingWindow, tokenBucket } from '@holdfast/limit';
import {
  AggregationTemporality,
  type DataPoint,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import { describe, expect, it } from 'vitest';
import { instrument, metricNames as M } from '../src/index.js';

const POLICY = 'holdfast.policy.name';

function setup(maxPolicies?: number) {
  const bus = createBus();
  const policies = createPolicyRegistry();
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 60_000 });
  const meterProvider = new MeterProvider({ readers: [reader] });
  const stop = instrument({ bus, meterProvider, policies, spans: false, ...(maxPolicies ? { maxPolicies } : {}) });
  /** Every data point exported now, by metric name. */
  const points = async () => {
    exporter.reset();
    await reader.forceFlush();
    const byName = new Map<string, DataPoint<number>[]>();
    for (const m of exporter.getMetrics().flatMap((rm) => rm.scopeMetrics.flatMap((sm) => sm.metrics))) {
      byName.set(m.descriptor.name, [
        ...(byName.get(m.descriptor.name) ?? []),
        ...(m.dataPoints as DataPoint<number>[]),
      ]);
    }
    return byName;
  };
  const close = async () => {
    stop();
    await meterProvider.shutdown();
  };
  return { bus, policies, points, close };
}

const warnings = () => {
  const seen: string[] = [];
  const on = (w: Error & { code?: string }) => seen.push(w.code ?? w.name);
  process.on('warning', on);
  return { seen, off: () => process.off('warning', on) };
};

describe('instrument(): limit metrics stay bounded', () => {
  it('10,000 distinct keys (10 × maxKeys) through per-user rate limiters make no series per key', async () => {
    const s = setup();
    try {
      const perUser = tokenBucket({
        limit: 1,
        interval: 60_000,
        maxKeys: 1_000,
        bus: s.bus,
        policies: s.policies,
        name: 'per-user',
      });
      const perIp = slidingWindow({
        limit: 1,
        interval: 60_000,
        maxKeys: 1_000,
        bus: s.bus,
        policies: s.policies,
        name: 'per-ip',
      });
      let refused = 0;
      for (let i = 0; i < 10_000; i++) {
        const key = `user-${i}`;
        // The first call of a key passes, the second is refused: a refusal per key.
        for (const limiter of [perUser, perIp]) {
          await limiter.execute(() => 1, { key });
          await limiter.execute(() => 1, { key }).catch(() => refused++);
        }
      }
      expect(refused).toBe(20_000);
      // Each limiter's table is capped at maxKeys: memory does not grow with the keys seen.
      expect(perUser.snapshot().keys).toBeLessThanOrEqual(1_000);
      expect(perIp.snapshot().keys).toBeLessThanOrEqual(1_000);
      const points = await s.points();
      const all = [...points.values()].flat();
      // Not one attribute value holds a key.
      expect(all.filter((p) => Object.values(p.attributes).some((v) => String(v).includes('user-')))).toEqual([]);
      const rejections = points.get(M.limitRejections) ?? [];
      expect(rejections.map((p) => [p.attributes[POLICY], p.value])).toEqual([
        ['per-user', 10_000],
        ['per-ip', 10_000],
      ]);
      expect(all.length).toBeLessThan(20);
    } finally {
      await s.close();
    }
  }, 120_000);

  it('bulkheads, adaptive limiters and throttles named per tenant stay under maxPolicies in every metric', async () => {
    const w = warnings();
    const s = setup(10);
    const made: { dispose(): void }[] = [];
    try {
      const held: Promise<void>[] = [];
      let release!: () => void;
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      for (let i = 0; i < 300; i++) {
        const common = { bus: s.bus, policies: s.policies };
        const pool = bulkhead({ maxConcurrent: 1, maxQueue: 0, ...common, name: `tenant-${i}-pool` });
        const adaptive = adaptiveConcurrency({
          algorithm: 'aimd',
          initialLimit: 1,
          ...common,
          name: `tenant-${i}-limit`,
        });
        const throttle = adaptiveThrottle({ ...common, name: `tenant-${i}-throttle` });
        made.push(pool, adaptive, throttle);
        held.push(
          pool.execute(() => gate),
          adaptive.execute(() => gate),
        );
        await pool.execute(() => 1).catch(() => {});
        await adaptive.execute(() => 1).catch(() => {});
        await throttle.execute(() => 1);
      }
      const points = await s.points();
      for (const name of [
        M.bulkheadRunning,
        M.bulkheadQueued,
        M.bulkheadCapacity,
        M.concurrencyLimit,
        M.concurrencyInFlight,
        M.throttleProbability,
        M.limitRejections,
      ]) {
        const found = points.get(name) ?? [];
        // 10 named policies and `_other`; rejections have a series per kind (bulkhead, concurrency) of each.
        expect(new Set(found.map((p) => p.attributes[POLICY])).size, name).toBeLessThanOrEqual(11);
        expect(found.length, name).toBeLessThanOrEqual(22);
      }
      // What `_other` stands for adds up: 300 bulkheads of 1 running, 10 of them named.
      const running = points.get(M.bulkheadRunning) ?? [];
      expect(running.reduce((sum, p) => sum + p.value, 0)).toBe(300);
      const capacity = points.get(M.bulkheadCapacity) ?? [];
      expect(capacity.find((p) => p.attributes[POLICY] === '_other')?.value).toBe(
        300 - running.filter((p) => p.attributes[POLICY] !== '_other').length,
      );
      const probability = points.get(M.throttleProbability) ?? [];
      for (const p of probability) expect(p.value).toBeLessThanOrEqual(1);
      expect(w.seen.filter((c) => c === 'HOLDFAST_METRICS_CARDINALITY')).toHaveLength(1);
      release();
      await Promise.all(held);
    } finally {
      w.off();
      for (const m of made) m.dispose();
      await s.close();
    }
  }, 60_000);

  it('limiters that come and go (one per tenant, disposed) never stop new ones from being counted', async () => {
    const s = setup(10);
    try {
      // 6,000 short-lived limiters, each refusing once: more attribute sets than any table keeps.
      for (let i = 0; i < 6_000; i++) {
        const limiter = tokenBucket({ limit: 1, interval: 60_000, bus: s.bus, policies: s.policies, name: `job-${i}` });
        await limiter.execute(() => 1);
        await limiter.execute(() => 1).catch(() => {});
        limiter.dispose();
      }
      const last = tokenBucket({ limit: 1, interval: 60_000, bus: s.bus, policies: s.policies, name: 'still-counted' });
      await last.execute(() => 1);
      await last.execute(() => 1).catch(() => {});
      const rejections = (await s.points()).get(M.limitRejections) ?? [];
      expect(rejections.find((p) => p.attributes[POLICY] === 'still-counted')?.value).toBe(1);
      // A disposed limiter's counts go with it (as breakers' do): what is exported stays small.
      expect(rejections.filter((p) => String(p.attributes[POLICY]).startsWith('job-')).length).toBeLessThanOrEqual(10);
      last.dispose();
    } finally {
      await s.close();
    }
  }, 60_000);
});

describe('instrument(): limit metrics never break a call', () => {
  it('an exporter that throws and a limit snapshot that throws: calls and refusals go on, the other series are read', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
    const exported = exporter.export.bind(exporter);
    let broken = true;
    let failedExports = 0;
    exporter.export = (metrics, done) => {
      if (broken) {
        failedExports++;
        throw new Error('collector down');
      }
      exported(metrics, done);
    };
    const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 60_000 });
    const meterProvider = new MeterProvider({ readers: [reader] });
    const stop = instrument({ bus, meterProvider, policies, spans: false });
    try {
      // Held to the end: the registry holds what it lists weakly.
      const brokenPool = {
        snapshot: () => {
          throw new Error('snapshot failed: redis://admin:hunter2@cache:6379');
        },
      };
      policies.register('bulkhead', 'broken-pool', brokenPool);
      const pool = bulkhead({ maxConcurrent: 1, maxQueue: 0, bus, policies, name: 'pool' });
      const api = tokenBucket({ limit: 1, interval: 60_000, bus, policies, name: 'api' });
      // The SDK swallows the exporter's error; holdfast's part is that nothing reaches a call.
      await reader.forceFlush().catch(() => {});
      expect(failedExports).toBe(1);
      await expect(api.execute(() => 'ok')).resolves.toBe('ok');
      await expect(api.execute(() => 'ok')).rejects.toMatchObject({ code: 'E_RATE_LIMITED' });
      await expect(pool.execute(() => 'ok')).resolves.toBe('ok');
      broken = false;
      exporter.reset();
      await reader.forceFlush();
      const metrics = exporter.getMetrics().flatMap((rm) => rm.scopeMetrics.flatMap((sm) => sm.metrics));
      const of = (name: string) =>
        metrics.filter((m) => m.descriptor.name === name).flatMap((m) => m.dataPoints as DataPoint<number>[]);
      expect(of(M.limitRejections).map((p) => [p.attributes[POLICY], p.value])).toEqual([['api', 1]]);
      expect(of(M.bulkheadCapacity).map((p) => [p.attributes[POLICY], p.value])).toEqual([['pool', 1]]);
      expect(JSON.stringify(metrics)).not.toContain('hunter2');
      expect(policies.snapshots().find((e) => e.name === 'broken-pool')).toEqual({
        kind: 'bulkhead',
        name: 'broken-pool',
        snapshot: null,
        error: 'Error',
      });
      expect(brokenPool.snapshot).toThrow('hunter2');
      pool.dispose();
      api.dispose();
    } finally {
      stop();
      await meterProvider.shutdown();
    }
  });
});

describe('instrument(): error.type stays bounded', () => {
  const ERROR_TYPE = 'error.type';
  const sum = (points: { value: number }[]) => points.reduce((n, p) => n + p.value, 0);

  it('error codes made per call (an id in them) make no series per call, and nothing goes uncounted', async () => {
    const s = setup();
    try {
      const quotes = fallback({ value: 'cached', name: 'quotes', bus: s.bus });
      for (let i = 0; i < 5_000; i++) {
        const code = `E_UPSTREAM_${i}`;
        await quotes.execute(() => {
          throw Object.assign(new Error('upstream failed'), { code });
        });
        s.bus.emit({ type: 'breaker.failure', source: 'payments', time: Date.now(), latency: 1, code });
      }
      // A message for a code, with a URL and its password in it.
      const leaky = 'connect failed: postgres://app:hunter2@db:5432/app';
      s.bus.emit({ type: 'breaker.failure', source: 'ledger', time: Date.now(), latency: 1, code: leaky });
      // A policy that comes after them still gets its series.
      await fallback({ value: 1, name: 'late', bus: s.bus }).execute(() => {
        throw new TypeError('bad');
      });
      const points = await s.points();
      const calls = points.get(M.breakerCalls) ?? [];
      const fallbacks = points.get(M.fallbacks) ?? [];
      expect(calls.filter((p) => p.attributes[POLICY] === 'payments').length).toBeLessThanOrEqual(101);
      expect(fallbacks.filter((p) => p.attributes[POLICY] === 'quotes').length).toBeLessThanOrEqual(101);
      expect(sum(calls.filter((p) => p.attributes[POLICY] === 'payments'))).toBe(5_000);
      expect(sum(fallbacks.filter((p) => p.attributes[POLICY] === 'quotes'))).toBe(5_000);
      expect(calls.find((p) => p.attributes[ERROR_TYPE] === 'E_UPSTREAM_0')?.value).toBe(1);
      // Past 100 distinct codes, a new one is `_OTHER`, whichever policy it comes from.
      expect(fallbacks.find((p) => p.attributes[POLICY] === 'late')?.attributes[ERROR_TYPE]).toBe('_OTHER');
      expect(calls.find((p) => p.attributes[POLICY] === 'ledger')?.attributes[ERROR_TYPE]).toBe('_OTHER');
      const all = [...points.values()].flat();
      expect(all.filter((p) => Object.values(p.attributes).some((v) => String(v).includes('hunter2')))).toEqual([]);
    } finally {
      await s.close();
    }
  });
});
