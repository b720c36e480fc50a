import { parseOptions, seededRandom } from '@holdfast/core';
import { z } from 'zod';

/** The kinds of labelled series {@link syntheticSeries} makes. */
export const syntheticProfiles = ['dailySpikes', 'levelShift', 'slowDrift', 'outageCreep', 'heavyTail'] as const;

/** One of {@link syntheticProfiles}. */
export type SyntheticProfile = (typeof syntheticProfiles)[number];

/** A labelled series of service metrics. */
export interface SyntheticSeries {
  /** The profile it was made from. */
  readonly profile: SyntheticProfile;
  /** `latencyP99` (ms), `errorRate` (0..1), `throughput` (calls per interval). */
  readonly columns: readonly ['latencyP99', 'errorRate', 'throughput'];
  /** One row per interval, in `columns` order. */
  readonly rows: readonly (readonly number[])[];
  /** Indices where an anomaly starts (what a NAB window is centred on). */
  readonly labels: readonly number[];
}

/** Options of {@link syntheticSeries}. */
export interface SyntheticOptions {
  /** Samples, 150 to 1,000,000. @default 2016 (a week of 5-minute intervals) */
  readonly length?: number;
  /** Samples per day (at least 1): the daily cycle's period. @default 288 */
  readonly day?: number;
  /** Seed of the noise and of where anomalies fall. @default 1 */
  readonly seed?: number;
}

const syntheticSchema = z.strictObject({
  profile: z.enum(syntheticProfiles),
  // Below 150 samples an outage's 30-sample creep would start before the series does.
  length: z.number().int().min(150).max(1e6).default(2016),
  day: z.number().min(1).default(288),
  seed: z.number().int().default(1),
});

/**
 * Labelled series that look like a service's metrics: a daily cycle in traffic and latency,
 * noise (lognormal latency, binomial errors, Poisson-like throughput) and, by profile:
 * `dailySpikes` (short latency and error spikes), `levelShift` (latency steps up and stays),
 * `slowDrift` (latency grows 60% over the series, which is not an anomaly, plus one error burst),
 * `outageCreep` (latency creeps up for 30 samples, then errors jump and throughput falls),
 * `heavyTail` (heavy-tailed noise with rare large benign outliers, and two real incidents).
 */
export function syntheticSeries(profile: SyntheticProfile, options: SyntheticOptions = {}): SyntheticSeries {
  const { length, day, seed } = parseOptions('syntheticSeries', syntheticSchema, { ...options, profile });
  const random = seededRandom(seed);
  const gauss = () => {
    const u = Math.max(1e-12, random());
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
  };
  const start = Math.floor(0.2 * length);
  const at = (k: number, of: number) => start + Math.floor(((length - start - 60) * (k + 0.2 + 0.6 * random())) / of);
  const labels: number[] = [];
  const latencyBoost = new Float64Array(length).fill(1);
  const errorAdd = new Float64Array(length);
  const trafficCut = new Float64Array(length).fill(1);
  const spike = (i: number, size: number, len: number) => {
    labels.push(i);
    for (let j = i; j < Math.min(length, i + len); j++) latencyBoost[j] = (latencyBoost[j] as number) * size;
  };
  const burst = (i: number, rate: number, len: number) => {
    labels.push(i);
    for (let j = i; j < Math.min(length, i + len); j++) errorAdd[j] = (errorAdd[j] as number) + rate;
  };
  let tail = 0.15;
  let drift = 0;
  switch (profile) {
    case 'dailySpikes':
      spike(at(0, 3), 3 + random() * 2, 2);
      burst(at(1, 3), 0.15, 3);
      spike(at(2, 3), 2.5 + random(), 4);
      break;
    case 'levelShift':
      for (const k of [0, 1]) {
        const i = at(k, 2);
        labels.push(i);
        for (let j = i; j < length; j++) latencyBoost[j] = (latencyBoost[j] as number) * 1.6;
      }
      break;
    case 'slowDrift':
      drift = 0.6;
      burst(at(0, 1), 0.2, 6);
      break;
    case 'outageCreep':
      for (const k of [0, 1]) {
        const outage = at(k, 2);
        labels.push(outage - 30);
        for (let j = 0; j < 30; j++) latencyBoost[outage - 30 + j] = 1 + (2.5 * (j + 1)) / 30;
        for (let j = outage; j < Math.min(length, outage + 20); j++) {
          latencyBoost[j] = 4;
          errorAdd[j] = 0.4;
          trafficCut[j] = 0.5;
        }
      }
      break;
    case 'heavyTail':
      tail = 0.35;
      spike(at(0, 2), 6, 3);
      burst(at(1, 2), 0.25, 4);
      break;
  }
  const rows: number[][] = [];
  for (let i = 0; i < length; i++) {
    const phase = Math.sin((2 * Math.PI * i) / day - Math.PI / 2);
    const traffic = 1000 * (1 + 0.6 * phase) * (trafficCut[i] as number);
    const heavy = profile === 'heavyTail' && random() < 0.01 ? 2 + random() : 1;
    const latency =
      120 *
      (1 + 0.25 * phase) *
      (1 + (drift * i) / length) *
      (latencyBoost[i] as number) *
      Math.exp(tail * gauss()) *
      heavy;
    const p = Math.min(1, 0.004 + (errorAdd[i] as number));
    const errors = Math.max(0, p * traffic + Math.sqrt(p * (1 - p) * traffic) * gauss());
    const calls = Math.max(0, traffic + Math.sqrt(traffic) * gauss());
    rows.push([round(latency, 1), round(errors / Math.max(1, traffic), 4), Math.round(calls)]);
  }
  return { profile, columns: ['latencyP99', 'errorRate', 'throughput'], rows, labels: labels.sort((a, b) => a - b) };
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
