/**
 * Cardinality of the limit metrics in the Prometheus text: a rate limiter keyed per user or IP
 * makes no series per key; limits named per tenant stay under `maxPolicies`; limiters made and
 * disposed one per job leave no series behind; hostile names are escaped, one sample a line.
 */
import { createBus, createPolicyRegistry } from '@holdfast/core';
import { adaptiveConcurrency, adaptiveThrottle, bulkhead, slidingWindow, tokenBucket } from '@holdfast/limit';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { collect } from '../src/index.js';

function setup(maxPolicies?: number) {
  const bus = createBus();
  const policies = createPolicyRegistry();
  const registry = new Registry();
  const stop = collect({ bus, registry, policies, ...(maxPolicies ? { maxPolicies } : {}) });
  return { bus, policies, registry, stop };
}

/** The sample lines of the text format (no comments, no blank lines). */
const samples = (text: string) => text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
const policiesIn = (text: string) => new Set([...text.matchAll(/policy="((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]));

describe('collect(): limit metrics stay bounded', () => {
  it('10,000 distinct keys (10 × maxKeys) through per-user rate limiters make no series per key', async () => {
    const s = setup();
    try {
      const common = { bus: s.bus, policies: s.policies, interval: 60_000, limit: 1, maxKeys: 1_000 };
      const perUser = tokenBucket({ ...common, name: 'per-user' });
      const perIp = slidingWindow({ ...common, name: 'per-ip' });
      for (let i = 0; i < 10_000; i++) {
        for (const limiter of [perUser, perIp]) {
          await limiter.execute(() => 1, { key: `10.0.${i >> 8}.${i & 255}` });
          await limiter.execute(() => 1, { key: `10.0.${i >> 8}.${i & 255}` }).catch(() => {});
        }
      }
      expect(perUser.snapshot().keys).toBeLessThanOrEqual(1_000);
      const text = await s.registry.metrics();
      expect(text).not.toContain('10.0.');
      expect(samples(text).filter((l) => l.startsWith('holdfast_limit_events_total'))).toEqual([
        'holdfast_limit_events_total{policy="per-user",event="rate_limit_reject"} 10000',
        'holdfast_limit_events_total{policy="per-ip",event="rate_limit_reject"} 10000',
      ]);
      expect(samples(text).length).toBeLessThan(10);
    } finally {
      s.stop();
    }
  }, 120_000);

  it('bulkheads, adaptive limiters and throttles named per tenant stay under maxPolicies', async () => {
    const warned: string[] = [];
    const onWarning = (w: Error & { code?: string }) => warned.push(w.code ?? w.name);
    process.on('warning', onWarning);
    const s = setup(10);
    const made: { dispose(): void }[] = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    try {
      const held: Promise<void>[] = [];
      for (let i = 0; i < 300; i++) {
        const common = { bus: s.bus, policies: s.policies };
        const pool = bulkhead({ maxConcurrent: 1, maxQueue: 0, ...common, name: `tenant-${i}-pool` });
        const limit = adaptiveConcurrency({ algorithm: 'aimd', initialLimit: 1, ...common, name: `tenant-${i}-limit` });
        const throttle = adaptiveThrottle({ ...common, name: `tenant-${i}-throttle` });
        made.push(pool, limit, throttle);
        held.push(
          pool.execute(() => gate),
          limit.execute(() => gate),
        );
        await pool.execute(() => 1).catch(() => {});
        await limit.execute(() => 1).catch(() => {});
        await throttle.execute(() => 1);
      }
      const text = await s.registry.metrics();
      const names = policiesIn(text);
      expect(names.size).toBeLessThanOrEqual(11);
      expect(names.has('_other')).toBe(true);
      // `_other` sums what it stands for: 300 adaptive limits of 1 in all.
      const limits = samples(text)
        .filter((l) => l.startsWith('holdfast_concurrency_limit{'))
        .map((l) => Number(l.split(' ').pop()));
      expect(limits.reduce((a, b) => a + b, 0)).toBe(300);
      await new Promise((r) => setImmediate(r)); // process warnings are emitted on a later tick
      expect(warned.filter((c) => c === 'HOLDFAST_METRICS_CARDINALITY')).toHaveLength(1);
      release();
      await Promise.all(held);
    } finally {
      release();
      process.off('warning', onWarning);
      for (const m of made) m.dispose();
      s.stop();
    }
  }, 60_000);

  it('6,000 limiters made and disposed one per job leave no series behind; a new one is still counted', async () => {
    const s = setup(10);
    try {
      for (let i = 0; i < 6_000; i++) {
        const limiter = tokenBucket({ limit: 1, interval: 60_000, bus: s.bus, policies: s.policies, name: `job-${i}` });
        await limiter.execute(() => 1);
        await limiter.execute(() => 1).catch(() => {});
        limiter.dispose();
      }
      const last = tokenBucket({ limit: 1, interval: 60_000, bus: s.bus, policies: s.policies, name: 'still-counted' });
      await last.execute(() => 1);
      await last.execute(() => 1).catch(() => {});
      const text = await s.registry.metrics();
      expect(text).not.toContain('policy="job-');
      expect(samples(text)).toContain(
        'holdfast_limit_events_total{policy="still-counted",event="rate_limit_reject"} 1',
      );
      last.dispose();
    } finally {
      s.stop();
    }
  }, 60_000);

  it('limit names with quotes, backslashes and newlines are escaped: one sample a line, names read back', async () => {
    const s = setup();
    const made: { dispose(): void }[] = [];
    try {
      const hostile = ['a"b', 'c\\d', 'e\nf', 'g\\"h\n', '} 1\nholdfast_ready 0'];
      for (const name of hostile) {
        const pool = bulkhead({ maxConcurrent: 1, maxQueue: 0, bus: s.bus, policies: s.policies, name });
        const held = pool.execute(() => new Promise((r) => setTimeout(r, 1)));
        await pool.execute(() => 1).catch(() => {});
        await held;
        const limit = adaptiveConcurrency({
          algorithm: 'aimd',
          initialLimit: 2,
          bus: s.bus,
          policies: s.policies,
          name,
        });
        limit.dispose();
        made.push(pool);
        made.push(
          adaptiveConcurrency({
            algorithm: 'aimd',
            initialLimit: 2,
            bus: s.bus,
            policies: s.policies,
            name: `${name}-kept`,
          }),
        );
      }
      const text = await s.registry.metrics();
      const lines = samples(text);
      // Each sample line is `name{labels} value`: nothing a name holds starts a line of its own.
      for (const line of lines) expect(line).toMatch(/^holdfast_[a-z_]+(\{.*\})? -?[0-9.e+]+$/);
      expect(lines.filter((l) => l.startsWith('holdfast_ready '))).toEqual(['holdfast_ready 1']);
      const unescaped = (v: string) => v.replace(/\\(["\\n])/g, (_m, c: string) => (c === 'n' ? '\n' : c));
      const read = new Set([...policiesIn(text)].map((v) => unescaped(v as string)));
      for (const name of hostile) {
        expect(read.has(name)).toBe(true);
        expect(read.has(`${name}-kept`)).toBe(true);
      }
    } finally {
      for (const m of made) m.dispose();
      s.stop();
    }
  });
});
