/**
 * How often anomalyWatch() raises an anomaly on healthy, stationary traffic, and how soon it still
 * raises a real fault. Each key's calls are simulated: Poisson arrivals, latency lognormal around
 * 20 ms, failures at a steady rate, fed through observe() and flush() with a fixed seed.
 *
 * The figures of the README and docs/anomaly.md come from the long run of this file:
 *   HOLDFAST_ANOMALY_FP_HOURS=24 npx vitest run --project anomaly packages/anomaly/test/false-alarms.test.ts
 * (24 simulated hours of 4 keys per setting, then 6 seeds of 4 keys per fault; some minutes of CPU).
 */
import { createBus, ManualClock, seededRandom } from '@holdfast/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { anomalyWatch } from '../src/index.js';
import { rateNoise } from '../src/watch.js';

type Fault = 'p99x2' | 'p99x3' | 'errors10' | 'throughput30';

interface Traffic {
  /** ms per interval of the watch. */
  interval: number;
  /** Calls a second per key. */
  rate: number;
  /** Sigma of the lognormal latency around 20 ms. */
  sigma: number;
  /** Share of calls that fail. */
  errors: number;
  /** Load swings by ±30% over 10 minutes. */
  swing?: boolean;
  keys: number;
  seed: number;
}

/**
 * Runs `intervals` of healthy traffic, then `faulty` intervals of `fault` on every key. Returns the
 * anomalies raised while healthy (by detector and metric), and per key the interval of the fault
 * (1 = its first) at which one was first raised.
 */
function simulate(t: Traffic, intervals: number, fault?: Fault, faulty = 0) {
  const clock = new ManualClock(0);
  const bus = createBus();
  const watch = anomalyWatch({ bus, clock, interval: t.interval });
  const random = seededRandom(t.seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  const poisson = (mean: number) => {
    if (mean > 30) return Math.max(0, Math.round(mean + Math.sqrt(mean) * gauss()));
    let k = 0;
    for (let p = random(); p > Math.exp(-mean); p *= random()) k++;
    return k;
  };
  const healthy: Record<string, number> = {};
  const found: (number | undefined)[] = new Array(t.keys).fill(undefined);
  let i = 0;
  bus.on('anomaly.detected', (e) => {
    const k = Number(e.key.slice(1));
    if (i < intervals) healthy[`${e.detector} ${e.metric}`] = (healthy[`${e.detector} ${e.metric}`] ?? 0) + 1;
    else found[k] ??= i - intervals + 1;
  });
  // The p99 of a lognormal is 20 * exp(2.326 sigma): a wider sigma multiplies it, the median stays.
  const tail = fault === 'p99x2' ? Math.log(2) / 2.326 : fault === 'p99x3' ? Math.log(3) / 2.326 : 0;
  for (i = 0; i < intervals + faulty; i++) {
    const sick = i >= intervals;
    const seconds = (i * t.interval) / 1000;
    const load = t.swing ? 1 + 0.3 * Math.sin((2 * Math.PI * seconds) / 600) : 1;
    const rate = sick && fault === 'throughput30' ? 0.3 * t.rate : t.rate;
    const errors = sick && fault === 'errors10' ? 0.1 : t.errors;
    const sigma = t.sigma + (sick ? tail : 0);
    for (let k = 0; k < t.keys; k++) {
      const n = poisson((rate * load * t.interval) / 1000);
      for (let c = 0; c < n; c++) {
        watch.observe(`k${k}`, 20 * Math.exp(sigma * gauss()), random() < errors ? 'failure' : 'success');
      }
    }
    watch.flush();
  }
  watch.dispose();
  const count = Object.values(healthy).reduce((a, b) => a + b, 0);
  return { count, healthy, found, keyHours: (t.keys * intervals * t.interval) / 3_600_000 };
}

const hours = (h: number, interval: number) => Math.round((h * 3_600_000) / interval);

describe('anomalyWatch on healthy, stationary traffic', () => {
  // Settings where a watch that raised on one interval's departure (as it did before `raiseAfter`)
  // raised 7 to 70 anomalies per key and hour: p99s of a few calls, one failure among ten calls.
  const healthy: [string, Traffic, number][] = [
    [
      '5 s, 2 calls/s, sigma 0.5, 1% errors',
      { interval: 5_000, rate: 2, sigma: 0.5, errors: 0.01, keys: 2, seed: 1 },
      4,
    ],
    ['5 s, 20 calls/s, sigma 0.5', { interval: 5_000, rate: 20, sigma: 0.5, errors: 0, keys: 2, seed: 2 }, 2],
    ['5 s, 200 calls/s, sigma 0.1', { interval: 5_000, rate: 200, sigma: 0.1, errors: 0, keys: 2, seed: 3 }, 1],
    [
      '5 s, 20 calls/s, sigma 0.3, 1% errors, load ±30% over 10 min',
      { interval: 5_000, rate: 20, sigma: 0.3, errors: 0.01, swing: true, keys: 2, seed: 4 },
      2,
    ],
    [
      '1 s, 20 calls/s, sigma 0.3, 1% errors',
      { interval: 1_000, rate: 20, sigma: 0.3, errors: 0.01, keys: 2, seed: 5 },
      1,
    ],
  ];
  for (const [name, traffic, h] of healthy) {
    it(`raises no anomaly in ${traffic.keys * h} key-hours: ${name}`, () => {
      const r = simulate(traffic, hours(h, traffic.interval));
      expect(r.healthy).toEqual({});
    });
  }
});

describe('anomalyWatch on real faults, at the default interval', () => {
  // 10 minutes of healthy traffic (sigma 0.3, no errors), then the fault on both keys.
  const cases: [Fault, number, number][] = [
    ['p99x2', 20, 8],
    ['p99x3', 20, 3],
    ['errors10', 20, 3],
    ['throughput30', 20, 3],
    ['p99x2', 200, 3],
    ['errors10', 200, 3],
    ['throughput30', 200, 3],
  ];
  for (const [fault, rate, within] of cases) {
    it(`raises ${fault} at ${rate} calls/s within ${within} intervals`, () => {
      const traffic = { interval: 5_000, rate, sigma: 0.3, errors: 0, keys: 2, seed: 7 };
      const r = simulate(traffic, hours(1 / 6, 5_000), fault, 12);
      expect(r.count).toBe(0);
      for (const at of r.found) expect(at).toBeLessThanOrEqual(within);
      // Three intervals in a row first: never on the first interval of a fault.
      for (const at of r.found) expect(at).toBeGreaterThanOrEqual(3);
    });
  }
});

describe('anomalyWatch on a fault that flaps (review)', () => {
  // Every other interval bad (a crash loop, a sick pod in and out of rotation): three in a row never come.
  const flapping: [string, (i: number) => [latency: number, errors: number]][] = [
    ['every call failing', (i) => [20, i % 2 === 0 ? 1 : 0]],
    ['half the calls failing', (i) => [20, i % 2 === 0 ? 0.5 : 0]],
    ['latency x10', (i) => [i % 2 === 0 ? 200 : 20, 0]],
  ];
  for (const [what, fault] of flapping) {
    it(`raises ${what} every other interval by its fifth interval`, () => {
      const clock = new ManualClock(0);
      const bus = createBus();
      const watch = anomalyWatch({ bus, clock });
      const random = seededRandom(11);
      const raised: number[] = [];
      let i = 0;
      bus.on('anomaly.detected', () => raised.push(i));
      for (i = -120; i < 20; i++) {
        const [latency, errors] = i < 0 ? [20, 0] : fault(i);
        for (let c = 0; c < 100; c++)
          watch.observe('k', latency * Math.exp(0.3 * (random() - 0.5)), random() < errors ? 'failure' : 'success');
        watch.flush();
      }
      watch.dispose();
      expect(raised.length).toBeGreaterThan(0);
      expect(raised[0]).toBe(4);
    });
  }
});

describe('rateNoise: the standard error of a rate from few calls', () => {
  // Under its expected rate, a rate of n calls is 4 standard errors up at most 1 time in 3,000 (the
  // worst cases are a handful of calls, all failing); by sqrt(p(1 - p) / n), up to 1 time in 20.
  it('a rate of n calls is 4 standard errors above its expected rate less than 1 time in 2,000', () => {
    const logChoose = (n: number, k: number) => {
      let s = 0;
      for (let i = 1; i <= k; i++) s += Math.log((n - k + i) / i);
      return s;
    };
    fc.assert(
      fc.property(
        fc.integer({ min: 10, max: 2_000 }),
        fc.double({ min: -4, max: Math.log10(0.5), noNaN: true }),
        (n, lp) => {
          const p = 10 ** lp;
          let tail = 0;
          for (let k = 0; k <= n; k++) {
            const x = k / n;
            if ((x - p) / rateNoise(x, p, n) >= 4)
              tail += Math.exp(logChoose(n, k) + k * Math.log(p) + (n - k) * Math.log1p(-p));
          }
          expect(tail).toBeLessThan(5e-4);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('is finite and never negative for any rate, expected rate and call count', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.integer({ min: 1, max: 10_000 }),
        (x, p, n) => {
          const s = rateNoise(x, p, n);
          expect(Number.isFinite(s) && s >= 0).toBe(true);
        },
      ),
    );
  });
});

const longRun = Number(process.env.HOLDFAST_ANOMALY_FP_HOURS ?? 0);

describe.runIf(longRun > 0)('the figures: false alarms per key and day, detection delays', () => {
  it('prints the grid', () => {
    const lines = ['interval  calls/s  sigma  errors  load   per key-hour  per key-day  key-hours  raised by'];
    let seed = 100;
    // The default interval and 1 s at each call rate; 30 s for 2 calls a second (60 calls an interval).
    const grid: [number, number[]][] = [
      [5_000, [2, 20, 200]],
      [1_000, [2, 20, 200]],
      [30_000, [2]],
    ];
    for (const [interval, rates] of grid) {
      const settings: [number, number, number, boolean][] = [];
      for (const rate of rates)
        for (const sigma of [0.1, 0.3, 0.5])
          for (const errors of [0, 0.01]) settings.push([rate, sigma, errors, false]);
      for (const rate of rates) settings.push([rate, 0.3, 0.01, true]);
      for (const [rate, sigma, errors, swing] of settings) {
        const r = simulate({ interval, rate, sigma, errors, swing, keys: 4, seed: seed++ }, hours(longRun, interval));
        const by = Object.entries(r.healthy).map(([c, n]) => `${c} ${n}`);
        lines.push(
          `${`${interval / 1000} s`.padEnd(9)} ${String(rate).padEnd(8)} ${String(sigma).padEnd(6)} ${`${errors * 100}%`.padEnd(7)} ${(swing ? '±30%' : 'flat').padEnd(6)} ${(r.count / r.keyHours).toFixed(3).padStart(12)} ${((r.count / r.keyHours) * 24).toFixed(2).padStart(12)} ${r.keyHours.toFixed(0).padStart(10)}  ${by.join(', ')}`,
        );
      }
    }
    lines.push('', 'interval  calls/s  fault         raised  intervals to raise (median, max)');
    for (const [interval, rates] of grid) {
      for (const rate of rates) {
        for (const fault of ['p99x2', 'p99x3', 'errors10', 'throughput30'] as Fault[]) {
          const at: number[] = [];
          let runs = 0;
          for (let s = 1; s <= 6; s++) {
            const r = simulate(
              { interval, rate, sigma: 0.3, errors: 0, keys: 4, seed: 1000 * s + rate },
              hours(0.5, interval),
              fault,
              60,
            );
            runs += r.found.length;
            for (const f of r.found) if (f !== undefined) at.push(f);
          }
          at.sort((a, b) => a - b);
          const median = at.length === 0 ? '-' : String(at[Math.floor(at.length / 2)]);
          lines.push(
            `${`${interval / 1000} s`.padEnd(9)} ${String(rate).padEnd(8)} ${fault.padEnd(13)} ${`${at.length}/${runs}`.padStart(6)}  ${median}, ${at.at(-1) ?? '-'}`,
          );
        }
      }
    }
    console.log(lines.join('\n'));
    expect(lines.length).toBeGreaterThan(2);
  }, 3_600_000);
});
