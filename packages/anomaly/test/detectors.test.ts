import { createBus, HoldfastConfigError, ManualClock, seededRandom } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { anomalyWatch, halfSpaceForest, nabScore, parseMetricsCsv, robustBaseline, scoreSeries } from '../src/index.js';

function noisy(seed: number, n: number, level = 100, sd = 5): number[] {
  const random = seededRandom(seed);
  return Array.from({ length: n }, () => level + sd * (random() + random() + random() - 1.5) * 2);
}

describe('robustBaseline', () => {
  it('raises once on a spike, expects the usual level, and clears after it', () => {
    const b = robustBaseline({ direction: 'up' });
    const changes: string[] = [];
    for (const x of [...noisy(1, 200), 400, ...noisy(2, 50)]) {
      const v = b.update(x);
      if (v.change) changes.push(`${v.change}@${b.samples - 1}:${Math.round(v.expected)}`);
    }
    expect(changes).toHaveLength(2);
    expect(changes[0]).toMatch(/^detected@200:(9\d|10\d)$/);
    expect(changes[1]).toMatch(/^cleared@20[1-9]/);
  });

  it('does not flap on a series that hovers at the threshold', () => {
    const b = robustBaseline({ direction: 'up' });
    for (const x of noisy(3, 200)) b.update(x);
    let changes = 0;
    // Alternate a big departure with a merely high sample: the label stays up, no new alerts.
    for (let i = 0; i < 40; i++) if (b.update(i % 2 === 0 ? 200 : 118).change !== undefined) changes++;
    expect(changes).toBe(1);
  });

  it('follows a level shift: one alert, then the new level is the baseline', () => {
    const b = robustBaseline();
    let alerts = 0;
    for (const x of [...noisy(4, 200), ...noisy(5, 400, 160)]) if (b.update(x).change === 'detected') alerts++;
    expect(alerts).toBe(1);
    expect(b.expected).toBeGreaterThan(150);
  });

  it('ignores the harmless direction, and learns a season when told its period', () => {
    const down = robustBaseline({ direction: 'up' });
    for (const x of noisy(6, 100)) down.update(x);
    expect(down.update(10).score).toBe(0);
    const daily = robustBaseline({ season: { period: 48, bins: 12 }, halfLife: 64 });
    const cycle = (i: number) => 100 + 50 * Math.sin((2 * Math.PI * i) / 48);
    let late = 0;
    for (let i = 0; i < 48 * 20; i++) if (daily.update(cycle(i)).raised && i > 48 * 10) late++;
    expect(late).toBe(0);
  });

  it('is deterministic and scores non-finite input as nothing', () => {
    const run = () => noisy(7, 300).map((x) => robustBaseline().update(x).score);
    expect(run()).toEqual(run());
    const b = robustBaseline();
    for (const x of noisy(8, 50)) b.update(x);
    expect(b.update(Number.NaN).score).toBe(0);
    expect(b.samples).toBe(50);
  });

  it('rejects bad options naming the path', () => {
    expect(() => robustBaseline({ halfLife: 0 })).toThrow(HoldfastConfigError);
    expect(() => robustBaseline({ hysteresis: { on: 0.3, off: 0.4 } })).toThrow(/hysteresis\.off/);
    expect(() => robustBaseline({ direction: 'sideways' as 'up' })).toThrow(/direction/);
  });
});

describe('halfSpaceForest', () => {
  const normal = (random: () => number) => [20 + 4 * random(), 0.01 + 0.005 * random(), 100 + 10 * random()];

  it('flags a joint departure and stays quiet on usual samples', () => {
    const forest = halfSpaceForest({ dimensions: 3, seed: 3 });
    const random = seededRandom(9);
    let quietAlerts = 0;
    for (let i = 0; i < 1000; i++) if (forest.update(normal(random)).change === 'detected' && i > 300) quietAlerts++;
    const v = forest.update([90, 0.3, 30]);
    expect(v.score).toBeGreaterThan(0.5);
    expect(v.raised).toBe(true);
    expect(quietAlerts).toBeLessThanOrEqual(2);
  });

  it('gives the same scores for the same seed, and different trees for another', () => {
    const run = (seed: number) => {
      const forest = halfSpaceForest({ dimensions: 3, seed });
      const random = seededRandom(1);
      return Array.from({ length: 600 }, () => forest.update(normal(random)).score);
    };
    expect(run(5)).toEqual(run(5));
    expect(run(5)).not.toEqual(run(6));
  });

  it('holds a fixed amount of memory whatever it has seen', () => {
    const forest = halfSpaceForest({ dimensions: 5 });
    const before = forest.bytes;
    for (let i = 0; i < 5000; i++) forest.update([i, i % 7, 1, 2, 3]);
    expect(forest.bytes).toBe(before);
    expect(before).toBeLessThan(200_000);
  });
});

describe('scoreSeries and the CSV reader', () => {
  const csv = `timestamp,value\n${Array.from({ length: 80 }, (_, i) => `2026-01-01T00:${String(i).padStart(2, '0')},${i === 60 ? 95 : 10 + (i % 3)}`).join('\n')}`;

  it('finds the spike in a CSV and names its timestamp', () => {
    const { anomalies, points } = scoreSeries(csv);
    expect(points).toHaveLength(80);
    expect(anomalies.map((a) => [a.index, a.timestamp, a.metric, a.value])).toEqual([
      [60, '2026-01-01T00:60', 'value', 95],
    ]);
  });

  it('reads quoted cells and empty cells, and refuses what is not a table of numbers', () => {
    expect(parseMetricsCsv('time,"p99, ms",errors\n1,"12.5",\n').rows).toEqual([[12.5, Number.NaN]]);
    expect(() => parseMetricsCsv('a,b\n1,x')).toThrow(/csv\.line 2\.b is not a number/);
    expect(() => parseMetricsCsv('a,b\n1')).toThrow(/has 1 cells, the header 2/);
    expect(() => parseMetricsCsv('')).toThrow(HoldfastConfigError);
    expect(() => parseMetricsCsv('timestamp\n1')).toThrow(/names no metric column/);
    expect(() => scoreSeries([[1, 2], [3]])).toThrow(/input\[1\]/);
  });

  it('scores rows with the forest by default, and nothing in an empty series', () => {
    const random = seededRandom(2);
    const rows = Array.from({ length: 400 }, (_, i) => (i === 350 ? [80, 0.5] : [20 + random(), 0.01 * random()]));
    expect(scoreSeries(rows).anomalies.map((a) => a.index)).toContain(350);
    expect(scoreSeries([]).points).toEqual([]);
  });
});

describe('nabScore', () => {
  it('scores 0 for no detection, 100 for detection at each window start, and charges false positives', () => {
    const base = { length: 1000, labels: [400, 800] };
    expect(nabScore({ ...base, detections: [] }).normalised).toBe(0);
    // Windows are 50 wide, centred: 375..425 and 775..825.
    expect(nabScore({ ...base, detections: [375, 775] }).normalised).toBeCloseTo(100, 5);
    const late = nabScore({ ...base, detections: [425, 825] }).normalised;
    expect(late).toBeGreaterThan(0);
    expect(late).toBeLessThan(55);
    const noisy = nabScore({ ...base, detections: [375, 775, 300, 600, 700] });
    expect(noisy.falsePositives).toBe(3);
    expect(noisy.normalised).toBeLessThan(100);
    expect(nabScore({ ...base, detections: [10, 20] }).falsePositives).toBe(0); // probation
  });
});

describe('anomalyWatch', () => {
  it('sums calls per breaker and interval, reports a latency anomaly with its baseline, then clears it', async () => {
    const clock = new ManualClock(0);
    const bus = createBus();
    const watch = anomalyWatch({ bus, clock, interval: 1000, detector: 'baseline' });
    const events: string[] = [];
    bus.on('anomaly.detected', (e) => events.push(`detected ${e.key} ${e.metric} ${Math.round(e.expected)}`));
    bus.on('anomaly.cleared', (e) => events.push(`cleared ${e.key} ${e.metric}`));
    const random = seededRandom(4);
    for (let s = 0; s < 60; s++) {
      const slow = s >= 40 && s < 45;
      for (let i = 0; i < 20; i++) {
        bus.emit({
          type: 'breaker.success',
          source: 'db',
          time: clock.now(),
          latency: (slow ? 200 : 20) + 4 * random(),
        });
      }
      await clock.advance(1000);
    }
    expect(events[0]).toMatch(/^detected db latencyP(50|99) 2\d$/);
    expect(events.at(-1)).toMatch(/^cleared db latencyP/);
    const snap = watch.snapshot();
    expect(snap.keys.map((k) => [k.key, k.raised])).toEqual([['db', false]]);
    expect(JSON.parse(JSON.stringify(snap))).toEqual(snap);
    watch.dispose();
    expect(clock.pending).toBe(0);
  });

  it('watches a bounded number of keys, forgetting the idlest', async () => {
    const clock = new ManualClock(0);
    const bus = createBus();
    const watch = anomalyWatch({ bus, clock, interval: 1000, maxKeys: 3, idleAfter: 2, minCalls: 1 });
    for (let k = 0; k < 10; k++) {
      bus.emit({ type: 'breaker.failure', source: `k${k}`, time: 0, latency: 5, code: 'E' });
      if (k % 2 === 0) await clock.advance(1000);
    }
    expect(watch.snapshot().keys.length).toBeLessThanOrEqual(3);
    await clock.advance(5000);
    expect(watch.snapshot().keys).toEqual([]);
    watch.dispose();
  });

  it('keeps to its share limits: one endpoint of three, never a peer that looks the same', async () => {
    const clock = new ManualClock(0);
    const bus = createBus();
    const drained: string[] = [];
    const undrained: string[] = [];
    const set = {
      name: 'api',
      endpoints: [{ name: 'a' }, { name: 'b' }, { name: 'c' }],
      eject: (n: string) => drained.push(n) > 0,
      restore: (n: string) => undrained.push(n) > 0,
    };
    const watch = anomalyWatch({ bus, clock, interval: 1000, raiseAfter: 1, actions: { eject: { failover: set } } });
    const refused: string[] = [];
    bus.on('anomaly.action', (e) => {
      if (!e.taken) refused.push(`${e.target}:${e.reason}`);
    });
    for (let s = 0; s < 60; s++) {
      const sick = s >= 40;
      for (const n of ['a', 'b', 'c']) {
        const latency = sick && n !== 'c' ? 300 : 20 + (s % 3);
        for (let i = 0; i < 10; i++) bus.emit({ type: 'breaker.success', source: `api/${n}`, time: 0, latency });
      }
      await clock.advance(1000);
    }
    expect(drained).toHaveLength(1);
    expect(refused.some((r) => r.endsWith(':maxShare'))).toBe(true);
    expect(watch.snapshot().ejected).toEqual(drained);
    // Disposing the watch puts back what it took out, and leaves no timer behind.
    watch.dispose();
    expect(undrained).toEqual(drained);
    expect(clock.pending).toBe(0);
  });

  it('lets an ejected endpoint back after `duration`, and ejects it again while its anomaly lasts', async () => {
    const clock = new ManualClock(0);
    const bus = createBus();
    const log: string[] = [];
    const set = {
      name: 'api',
      endpoints: [{ name: 'a' }, { name: 'b' }, { name: 'c' }],
      eject: (n: string, o: { durationMs: number; reason?: string }) =>
        log.push(`eject ${n}@${clock.now()} for ${o.durationMs} (${o.reason})`) > 0,
      restore: (n: string) => log.push(`restore ${n}@${clock.now()}`) > 0,
    };
    const actions: string[] = [];
    bus.on('anomaly.action', (e) => actions.push(`${e.action} ${e.target} ${e.reason}@${e.time}`));
    // One slow interval raises, so the times below are those of the actions alone.
    const watch = anomalyWatch({
      bus,
      clock,
      interval: 1000,
      raiseAfter: 1,
      actions: { eject: { failover: set, duration: 5000 } },
    });
    for (let s = 0; s < 50; s++) {
      for (const n of ['a', 'b', 'c']) {
        const latency = s >= 40 && n === 'b' ? 400 : 20 + (s % 3);
        for (let i = 0; i < 10; i++) bus.emit({ type: 'breaker.success', source: `api/${n}`, time: 0, latency });
      }
      await clock.advance(1000);
    }
    // The set lets b back itself when the time is up (a probe): the watch only ejects it again.
    expect(log).toEqual(['eject b@41000 for 5000 (anomaly)', 'eject b@46000 for 5000 (anomaly)']);
    expect(actions).toEqual(['eject b anomaly@41000', 'restore b expired@46000', 'eject b stillRaised@46000']);
    watch.dispose();
    expect(log.at(-1)).toBe('restore b@50000');
  });

  it('a throwing anomaly listener breaks neither the watch nor the calls', async () => {
    const clock = new ManualClock(0);
    const bus = createBus({ onListenerError: () => {} });
    const watch = anomalyWatch({ bus, clock, interval: 1000 });
    bus.on('anomaly.score', () => {
      throw new Error('listener bug');
    });
    for (let s = 0; s < 3; s++) {
      for (let i = 0; i < 10; i++) bus.emit({ type: 'breaker.success', source: 'x', time: 0, latency: 10 });
      await clock.advance(1000);
    }
    expect(watch.snapshot().keys[0]?.samples).toBe(3);
    watch.dispose();
    expect(() => watch.flush()).toThrow(expect.objectContaining({ code: 'E_DISPOSED' }));
  });

  it('rejects bad options naming the path', () => {
    const bus = createBus();
    expect(() => anomalyWatch({ bus, interval: -1 })).toThrow(/interval/);
    expect(() => anomalyWatch({ bus, actions: { eject: { failover: {} as never } } })).toThrow(
      /actions\.eject\.failover/,
    );
    expect(() => anomalyWatch({ bus: {} as never })).toThrow(/bus/);
  });
});
