import { createBus, createPolicyRegistry, type HoldfastEvent } from '@holdfast/core';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { collect } from '../src/index.js';

const score = (key: string, top: number, p99: number): HoldfastEvent => ({
  type: 'anomaly.score',
  source: 'anomaly',
  time: 1,
  key,
  score: top,
  raised: top >= 0.5,
  metrics: [
    { name: 'latencyP99', value: 30, expected: 20, score: p99 },
    { name: 'errorRate', value: Number.NaN, expected: 0, score: 0 },
  ],
});

describe('collect(): anomaly scores', () => {
  it('exports each watched key’s last scores and counts its alerts', async () => {
    const bus = createBus();
    const registry = new Registry();
    const stop = collect({ bus, registry, policies: createPolicyRegistry() });
    bus.emit(score('api/a', 0.2, 0.2));
    bus.emit(score('api/a', 0.7, 0.7));
    bus.emit(score('api/b', 0.1, 0.05));
    bus.emit({
      type: 'anomaly.detected',
      source: 'anomaly',
      time: 1,
      key: 'api/a',
      detector: 'baseline',
      metric: 'latencyP99',
      score: 0.7,
      value: 300,
      expected: 21,
    });
    const text = await registry.metrics();
    const sample = (series: string) =>
      Number(
        text
          .split('\n')
          .find((l) => l.startsWith(`${series} `))
          ?.split(' ')[1],
      );
    expect(sample('holdfast_anomaly_score{policy="anomaly",key="api/a",metric="all"}')).toBe(0.7);
    expect(sample('holdfast_anomaly_score{policy="anomaly",key="api/a",metric="latencyP99"}')).toBe(0.7);
    expect(sample('holdfast_anomaly_score{policy="anomaly",key="api/b",metric="latencyP99"}')).toBe(0.05);
    expect(
      sample('holdfast_anomaly_detected_total{policy="anomaly",key="api/a",detector="baseline",metric="latencyP99"}'),
    ).toBe(1);
    stop();
    expect(await registry.metrics()).not.toContain('holdfast_anomaly');
  });
});

describe('collect(): anomaly scores of keys the watch forgot', () => {
  const cleared = (key: string, reason: 'recovered' | 'forgotten'): HoldfastEvent => ({
    type: 'anomaly.cleared',
    source: 'anomaly',
    time: 2,
    key,
    detector: 'baseline',
    metric: 'latencyP99',
    duration: 1,
    reason,
  });

  it('a key forgotten while raised loses its score series at once: no stale alert', async () => {
    const bus = createBus();
    const registry = new Registry();
    const stop = collect({ bus, registry, policies: createPolicyRegistry() });
    bus.emit(score('host-a', 0.9, 0.9));
    bus.emit(score('host-b', 0.9, 0.9));
    bus.emit(cleared('host-a', 'forgotten'));
    bus.emit(cleared('host-b', 'recovered'));
    const text = await registry.metrics();
    expect(text).not.toContain('holdfast_anomaly_score{policy="anomaly",key="host-a"');
    // Recovered is no forgetting: the watch goes on scoring it.
    expect(text).toContain('holdfast_anomaly_score{policy="anomaly",key="host-b",metric="all"} 0.9');
    stop();
  });

  it('20,000 keys watched in turn (per-host churn): score series stay bounded, the newest key is exported', async () => {
    const bus = createBus();
    const registry = new Registry();
    const stop = collect({ bus, registry, policies: createPolicyRegistry() });
    for (let i = 0; i < 20_000; i++) bus.emit(score(`host-${i}`, 0.1, 0.1));
    const text = await registry.metrics();
    const series = text.split('\n').filter((l) => l.startsWith('holdfast_anomaly_score{'));
    expect(series.length).toBeLessThanOrEqual(5_000);
    expect(text).toContain('holdfast_anomaly_score{policy="anomaly",key="host-19999",metric="all"} 0.1');
    expect(text).not.toContain('key="host-0"');
    stop();
  });

  const detected = (key: string): HoldfastEvent => ({
    type: 'anomaly.detected',
    source: 'anomaly',
    time: 1,
    key,
    detector: 'baseline',
    metric: 'latencyP99',
    score: 0.9,
    value: 300,
    expected: 21,
  });

  it('20,000 keys that each raised once in turn: their detection counters go with their scores', async () => {
    const bus = createBus();
    const registry = new Registry();
    const stop = collect({ bus, registry, policies: createPolicyRegistry() });
    for (let i = 0; i < 20_000; i++) {
      bus.emit(detected(`host-${i}`));
      bus.emit(score(`host-${i}`, 0.9, 0.9));
    }
    bus.emit(detected('host-a'));
    bus.emit(score('host-a', 0.9, 0.9));
    bus.emit(cleared('host-a', 'forgotten'));
    const text = await registry.metrics();
    const series = text.split('\n').filter((l) => /^holdfast_anomaly_(score|detected_total)\{/.test(l));
    // It kept one detection series per key that ever raised: 20,000 here, and growing for good.
    expect(series.length).toBeLessThanOrEqual(5_000);
    expect(text).toContain(
      'holdfast_anomaly_detected_total{policy="anomaly",key="host-19999",detector="baseline",metric="latencyP99"} 1',
    );
    expect(text).not.toContain('key="host-0"');
    expect(text).not.toContain('key="host-a"');
    stop();
  });
});

describe('collect(): two anomaly watches on one bus', () => {
  const of = (source: string, e: HoldfastEvent): HoldfastEvent => ({ ...e, source });
  const detected: HoldfastEvent = {
    type: 'anomaly.detected',
    source: 'anomaly',
    time: 1,
    key: 'db',
    detector: 'baseline',
    metric: 'latencyP99',
    score: 0.9,
    value: 300,
    expected: 21,
  };
  const forgotten: HoldfastEvent = {
    type: 'anomaly.cleared',
    source: 'anomaly',
    time: 2,
    key: 'db',
    detector: 'baseline',
    metric: 'latencyP99',
    duration: 1,
    reason: 'forgotten',
  };

  it('watching the same key, each watch has its own score and detection series, by policy', async () => {
    const bus = createBus();
    const registry = new Registry();
    const stop = collect({ bus, registry, policies: createPolicyRegistry() });
    bus.emit(of('fast', score('db', 0.9, 0.9)));
    bus.emit(of('slow', score('db', 0.1, 0.1)));
    bus.emit(of('fast', detected));
    bus.emit(of('fast', detected));
    bus.emit(of('slow', detected));
    let text = await registry.metrics();
    expect(text).toContain('holdfast_anomaly_score{policy="fast",key="db",metric="all"} 0.9');
    expect(text).toContain('holdfast_anomaly_score{policy="slow",key="db",metric="all"} 0.1');
    expect(text).toContain(
      'holdfast_anomaly_detected_total{policy="fast",key="db",detector="baseline",metric="latencyP99"} 2',
    );
    expect(text).toContain(
      'holdfast_anomaly_detected_total{policy="slow",key="db",detector="baseline",metric="latencyP99"} 1',
    );
    // One watch forgetting the key drops its series only: the other still scores it.
    bus.emit(of('fast', forgotten));
    text = await registry.metrics();
    expect(text).not.toContain('policy="fast"');
    expect(text).toContain('holdfast_anomaly_score{policy="slow",key="db",metric="all"} 0.1');
    expect(text).toContain(
      'holdfast_anomaly_detected_total{policy="slow",key="db",detector="baseline",metric="latencyP99"} 1',
    );
    stop();
  });

  it('lone surrogates in a watch name and a key: distinct series, dropped when forgotten', async () => {
    const bus = createBus();
    const registry = new Registry();
    const stop = collect({ bus, registry, policies: createPolicyRegistry() });
    bus.emit(of('w\uD800', score('k\uDC00', 0.9, 0.9)));
    bus.emit(of('w\uD801', score('k\uDC00', 0.2, 0.2)));
    bus.emit(of('w\uD800', { ...detected, key: 'k\uDC00' }));
    let lines = (await registry.metrics())
      .split('\n')
      .filter((l) => /^holdfast_anomaly_(score|detected_total)\{/.test(l));
    expect(lines.filter((l) => l.includes('metric="all"'))).toHaveLength(2);
    bus.emit(of('w\uD800', { ...forgotten, key: 'k\uDC00' }));
    lines = (await registry.metrics()).split('\n').filter((l) => /^holdfast_anomaly_(score|detected_total)\{/.test(l));
    // Only the other watch's two score series (all, latencyP99) and its errorRate are left.
    expect(lines).toHaveLength(3);
    expect(lines.every((l) => l.includes('} 0.2') || l.includes('errorRate'))).toBe(true);
    stop();
  });
});
