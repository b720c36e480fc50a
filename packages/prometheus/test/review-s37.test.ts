/**
 * Outside review (s37) of collect(): what production does to an exporter. Each `it` marked BUG
 * fails on the code as reviewed; each marked GUARD passes and pins what held.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createBus, createPolicyRegistry, HoldfastConfigError, type HoldfastEvent } from '@holdfast/core';
import { Gauge, type OpenMetricsContentType, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { collect } from '../src/index.js';

const ev = (e: Record<string, unknown>) => ({ time: 1, source: 'pay', ...e }) as unknown as HoldfastEvent;
const sample = (text: string, series: string) =>
  text
    .split('\n')
    .find((l) => l.startsWith(`${series} `))
    ?.slice(series.length + 1);
const ours = (registry: Registry) =>
  registry
    .getMetricsAsArray()
    .map((m) => (m as unknown as { name: string }).name)
    .filter((n) => n.startsWith('holdfast_'));

describe('review s37: collect()', () => {
  it('BUG: a latency or delay of -Infinity or null (no number of seconds) is left out of its histogram, not observed as 0 s', async () => {
    const errors: unknown[] = [];
    const bus = createBus({ onListenerError: (e) => errors.push(e) });
    const registry = new Registry();
    const stop = collect({ bus, registry, policies: createPolicyRegistry() });
    try {
      bus.emit(ev({ type: 'breaker.success', latency: 5 }));
      // -Infinity: a user's own stopwatch; null: NaN after a JSON hop (events bridged from a worker).
      bus.emit(ev({ type: 'breaker.success', latency: Number.NEGATIVE_INFINITY }));
      bus.emit(ev({ type: 'breaker.success', latency: null }));
      bus.emit(ev({ type: 'retry.attempt', attempt: 2, delay: Number.NEGATIVE_INFINITY }));
      bus.emit(ev({ type: 'retry.attempt', attempt: 3, delay: null }));
      const text = await registry.metrics();
      expect(errors).toEqual([]);
      // Every call is counted...
      expect(sample(text, 'holdfast_breaker_calls_total{policy="pay",outcome="success"}')).toBe('3');
      expect(sample(text, 'holdfast_retry_attempts_total{policy="pay"}')).toBe('2');
      // ...but only the one real duration is observed, as @holdfast/otel does (Number.isFinite on the raw ms).
      expect(sample(text, 'holdfast_breaker_call_duration_seconds_count{policy="pay",outcome="success"}')).toBe('1');
      expect(sample(text, 'holdfast_retry_delay_seconds_count{policy="pay"}')).toBeUndefined();
    } finally {
      stop();
    }
  });

  it('BUG: a registry that throws while collect() registers leaves none of its metrics behind, and a later collect() on it works', () => {
    let broken = true;
    let registered = 0;
    class FlakyRegistry extends Registry {
      override registerMetric(metric: Parameters<Registry['registerMetric']>[0]): void {
        if (broken && ++registered === 3) throw new Error('registry unavailable');
        super.registerMetric(metric);
      }
    }
    const registry = new FlakyRegistry();
    const bus = createBus();
    expect(() => collect({ bus, registry, policies: createPolicyRegistry() })).toThrow('registry unavailable');
    // Half a collect() stays registered: holdfast_breaker_calls_total and _slow_calls_total.
    expect(ours(registry)).toEqual([]);
    broken = false;
    // Retrying after the failure: refused with "already has a metric" because of the leftovers.
    const stop = collect({ bus, registry, policies: createPolicyRegistry() });
    stop();
  });

  it("BUG: stop() of an earlier collect() removes only its own metrics, not a later collect()'s of the same name", async () => {
    // Hot reload / test setup: the app clears its registry and collects again; the old module's stop() runs later.
    const registry = new Registry();
    const bus = createBus();
    const stopOld = collect({ bus, registry, policies: createPolicyRegistry() });
    registry.clear();
    const stopNew = collect({ bus, registry, policies: createPolicyRegistry() });
    stopOld();
    bus.emit(ev({ type: 'breaker.success', latency: 5 }));
    const text = await registry.metrics();
    stopNew();
    // stop() removed by name: the new collect()'s metrics were removed while it still runs.
    expect(sample(text, 'holdfast_breaker_calls_total{policy="pay",outcome="success"}')).toBe('1');
  });

  it('GUARD: a metric name the app registered already is refused, naming registry; the app keeps its metric, none of ours stays', async () => {
    const registry = new Registry();
    new Gauge({ name: 'holdfast_ready', help: "the app's own", registers: [registry] });
    expect(() => collect({ bus: createBus(), registry, policies: createPolicyRegistry() })).toThrow(
      HoldfastConfigError,
    );
    expect(ours(registry)).toEqual(['holdfast_ready']);
    expect(await registry.metrics()).toContain("the app's own");
  });

  it('GUARD: an OpenMetrics registry: counters exposed as <name>_total under a family without it, and # EOF', async () => {
    const bus = createBus();
    const registry = new Registry<OpenMetricsContentType>();
    registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    const stop = collect({ bus, registry, policies: createPolicyRegistry() });
    try {
      bus.emit(ev({ type: 'breaker.success', latency: 5 }));
      const text = await registry.metrics();
      expect(text).toContain('# TYPE holdfast_breaker_calls counter');
      expect(sample(text, 'holdfast_breaker_calls_total{policy="pay",outcome="success"}')).toBe('1');
      expect(text).not.toContain('_total_total');
      expect(text.endsWith('# EOF\n')).toBe(true);
    } finally {
      stop();
    }
  });

  it('GUARD: hostile names (quotes, backslashes, newlines, CR, unicode, a password) give one parseable sample a line, no secret', async () => {
    const bus = createBus();
    const registry = new Registry();
    const policies = createPolicyRegistry();
    const stop = collect({ bus, registry, policies });
    try {
      const names = ['a "quoted" name', 'back\\slash', 'new\nline', 'cr\rhere', 'ünï 💥', 'https://u:hunter2@db/x'];
      const endpoints = names.map((name, i) => ({ name, available: i % 2 === 0, inFlight: i }));
      policies.register('failover', 'set\n"x"', { snapshot: () => ({ endpoints }) });
      for (const source of names) {
        bus.emit(ev({ type: 'failover.switch', source, from: undefined, to: source, reason: 'manual' }));
        bus.emit(ev({ type: 'breaker.open', source, reason: 'manual', failureRate: 0, retryAt: undefined }));
      }
      const text = await registry.metrics();
      expect(text).not.toContain('hunter2');
      const labelValue = String.raw`"(?:[^"\\\n]|\\["\\n])*"`;
      const line = new RegExp(
        String.raw`^[a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[a-zA-Z_][a-zA-Z0-9_]*=${labelValue}(?:,[a-zA-Z_][a-zA-Z0-9_]*=${labelValue})*\})? \S+$`,
      );
      for (const l of text.split('\n')) if (l !== '' && !l.startsWith('#')) expect(l).toMatch(line);
    } finally {
      stop();
    }
  });

  it('GUARD: after stop() (twice) nothing listens and nothing holds the process open (built dist, child process)', () => {
    const dir = fileURLToPath(new URL('..', import.meta.url));
    const script = `
      import { collect } from './dist/index.js';
      import { createBus } from '@holdfast/core';
      import { Registry } from 'prom-client';
      const bus = createBus(); const registry = new Registry();
      const stop = collect({ bus, registry });
      bus.emit({ type: 'breaker.success', source: 'x', time: Date.now(), latency: 5 });
      await registry.metrics();
      stop(); stop();
      console.log(JSON.stringify({ wants: bus.wants('breaker.success'), metrics: registry.getMetricsAsArray().length }));
    `;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: dir,
      timeout: 8_000,
      encoding: 'utf8',
    });
    expect(child.error).toBeUndefined();
    expect(child.status).toBe(0);
    expect(JSON.parse(child.stdout.trim())).toEqual({ wants: false, metrics: 0 });
  });
});
