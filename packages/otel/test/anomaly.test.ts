import { createBus, createPolicyRegistry } from '@holdfast/core';
import { AggregationTemporality } from '@opentelemetry/sdk-metrics';
import { describe, expect, it } from 'vitest';
import { RecordingMeterProvider } from '../../../test/support/otel-recorder.js';
import { attributeNames as A, instrument, metricNames } from '../src/index.js';
import { collectPoints } from './collect.js';

describe('instrument(): anomaly scores', () => {
  it('reports each watched key’s last scores as a gauge and counts its alerts', async () => {
    const { bus, value, close } = collectPoints();
    try {
      for (const top of [0.2, 0.8]) {
        bus.emit({
          type: 'anomaly.score',
          source: 'anomaly',
          time: 1,
          key: 'db',
          score: top,
          raised: top >= 0.5,
          metrics: [{ name: 'errorRate', value: 0.3, expected: 0.01, score: top }],
        });
      }
      bus.emit({
        type: 'anomaly.detected',
        source: 'anomaly',
        time: 1,
        key: 'db',
        detector: 'forest',
        metric: 'errorRate',
        score: 0.8,
        value: 0.3,
        expected: 0.01,
      });
      expect(await value(metricNames.anomalyScore, { [A.anomalyKey]: 'db', [A.anomalyMetric]: 'all' })).toBe(0.8);
      expect(await value(metricNames.anomalyScore, { [A.anomalyKey]: 'db', [A.anomalyMetric]: 'errorRate' })).toBe(0.8);
      expect(
        await value(metricNames.anomalyDetections, { [A.anomalyDetector]: 'forest', [A.anomalyMetric]: 'errorRate' }),
      ).toBe(1);
    } finally {
      await close();
    }
  });
});

describe('instrument(): anomaly scores of keys the watch forgot', () => {
  it('a key forgotten while raised loses its scores at once; 20,000 keys in turn stay bounded and the newest is reported', async () => {
    const { bus, points, close } = collectPoints();
    const scoreOf = (key: string, value: number) =>
      bus.emit({
        type: 'anomaly.score',
        source: 'anomaly',
        time: 1,
        key,
        score: value,
        raised: value >= 0.5,
        metrics: [{ name: 'latencyP99', value: 30, expected: 20, score: value }],
      });
    const scores = () => points(metricNames.anomalyScore);
    try {
      scoreOf('host-a', 0.9);
      bus.emit({
        type: 'anomaly.cleared',
        source: 'anomaly',
        time: 2,
        key: 'host-a',
        detector: 'baseline',
        metric: 'latencyP99',
        duration: 1,
        reason: 'forgotten',
      });
      expect((await scores()).filter((p) => p.attributes[A.anomalyKey] === 'host-a')).toEqual([]);

      for (let i = 0; i < 20_000; i++) scoreOf(`host-${i}`, 0.1);
      const all = await scores();
      expect(all.length).toBeLessThanOrEqual(5_000);
      expect(all.some((p) => p.attributes[A.anomalyKey] === 'host-19999')).toBe(true);
    } finally {
      await close();
    }
  });
});

describe('instrument(): a forgotten key after a collection, by temporality (the README says which drops it)', () => {
  for (const [temporality, kept] of [
    [AggregationTemporality.DELTA, false],
    [AggregationTemporality.CUMULATIVE, true],
  ] as const) {
    it(`${temporality === AggregationTemporality.DELTA ? 'delta: dropped' : 'cumulative: the SDK keeps exporting its last score'}`, async () => {
      const { bus, points, close } = collectPoints({ temporality });
      const hostA = async () =>
        (await points(metricNames.anomalyScore))
          .filter((p) => p.attributes[A.anomalyKey] === 'host-a' && p.attributes[A.anomalyMetric] === 'all')
          .map((p) => p.value);
      try {
        bus.emit({
          type: 'anomaly.score',
          source: 'anomaly',
          time: 1,
          key: 'host-a',
          score: 0.9,
          raised: true,
          metrics: [{ name: 'latencyP99', value: 30, expected: 20, score: 0.9 }],
        });
        expect(await hostA()).toEqual([0.9]);
        bus.emit({
          type: 'anomaly.cleared',
          source: 'anomaly',
          time: 2,
          key: 'host-a',
          detector: 'baseline',
          metric: 'latencyP99',
          duration: 1,
          reason: 'forgotten',
        });
        expect(await hostA()).toEqual(kept ? [0.9] : []);
      } finally {
        await close();
      }
    });
  }
});

describe('instrument(): two anomaly watches on one bus', () => {
  it('watching the same key, each watch has its own score and detection rows, by policy name', async () => {
    const { bus, points, value: valueWith, close } = collectPoints();
    const scoreOf = (source: string, value: number) =>
      bus.emit({
        type: 'anomaly.score',
        source,
        time: 1,
        key: 'db',
        score: value,
        raised: value >= 0.5,
        metrics: [{ name: 'latencyP99', value: 30, expected: 20, score: value }],
      });
    const detect = (source: string) =>
      bus.emit({
        type: 'anomaly.detected',
        source,
        time: 1,
        key: 'db',
        detector: 'baseline',
        metric: 'latencyP99',
        score: 0.9,
        value: 300,
        expected: 21,
      });
    const value = (name: string, policy: string, metric: string) =>
      valueWith(name, { [A.policy]: policy, [A.anomalyKey]: 'db', [A.anomalyMetric]: metric });
    try {
      scoreOf('fast', 0.9);
      scoreOf('slow', 0.1);
      detect('fast');
      detect('fast');
      detect('slow');
      // A third watch forgetting the key drops its own scores only: the others still score it.
      scoreOf('gone', 0.7);
      bus.emit({
        type: 'anomaly.cleared',
        source: 'gone',
        time: 2,
        key: 'db',
        detector: 'baseline',
        metric: 'latencyP99',
        duration: 1,
        reason: 'forgotten',
      });
      expect((await points(metricNames.anomalyScore)).filter((p) => p.attributes[A.policy] === 'gone')).toEqual([]);
      expect(await value(metricNames.anomalyScore, 'fast', 'all')).toBe(0.9);
      expect(await value(metricNames.anomalyScore, 'fast', 'latencyP99')).toBe(0.9);
      expect(await value(metricNames.anomalyScore, 'slow', 'all')).toBe(0.1);
      expect(await value(metricNames.anomalyDetections, 'fast', 'latencyP99')).toBe(2);
      expect(await value(metricNames.anomalyDetections, 'slow', 'latencyP99')).toBe(1);
    } finally {
      await close();
    }
  });
});

describe('instrument(): anomaly detections of keys that churn', () => {
  it('12,000 per-host keys detected in turn: a key forgotten while raised takes its detection counts along, and at most 5,000 keys are held', async () => {
    const bus = createBus();
    const meterProvider = new RecordingMeterProvider();
    const stop = instrument({ bus, meterProvider, policies: createPolicyRegistry(), spans: false });
    const event = { source: 'anomaly', time: 1, detector: 'baseline', metric: 'errorRate' } as const;
    try {
      for (let i = 0; i < 12_000; i++) {
        const key = `host-${i}`;
        bus.emit({ ...event, type: 'anomaly.detected', key, score: 0.9, value: 0.5, expected: 0.01 });
        // Half are forgotten while raised (their host went away), half recover.
        const reason = i % 2 === 0 ? 'forgotten' : 'recovered';
        bus.emit({ ...event, type: 'anomaly.cleared', key, duration: 1_000, reason });
      }
      const rows = (await meterProvider.collect()).filter((r) => r.instrument === metricNames.anomalyDetections);
      const hosts = rows.map((r) => Number(String(r.attributes[A.anomalyKey]).slice('host-'.length)));
      expect(hosts.filter((i) => i % 2 === 0)).toEqual([]);
      expect(rows.length).toBeLessThanOrEqual(5_000);
      // The latest are the ones held.
      expect(hosts).toContain(11_999);
    } finally {
      stop();
    }
  });
});
