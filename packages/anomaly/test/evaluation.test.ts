import { describe, expect, it } from 'vitest';
import {
  type NabResult,
  nabProfiles,
  nabScore,
  nabTotal,
  scoreSeries,
  syntheticProfiles,
  syntheticSeries,
} from '../src/index.js';

const SEEDS = [1, 2, 3, 4, 5];

/**
 * The naive detector a team starts with: a fixed threshold per metric at mean + 3 standard
 * deviations of the probation period (the first 15%), alerting when any metric crosses it.
 */
function fixedThreshold(rows: readonly (readonly number[])[]): number[] {
  const probation = Math.floor(Math.min(0.15 * rows.length, 750));
  const width = rows[0]?.length ?? 0;
  const limits = Array.from({ length: width }, (_, q) => {
    const xs = rows.slice(0, probation).map((r) => r[q] as number);
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length);
    return mean + 3 * sd;
  });
  const alerts: number[] = [];
  let above = false;
  rows.forEach((row, i) => {
    const now = row.some((v, q) => v > (limits[q] as number));
    if (now && !above) alerts.push(i);
    above = now;
  });
  return alerts;
}

type Detector = 'baseline' | 'forest' | 'fixed threshold';

function detections(detector: Detector, rows: readonly (readonly number[])[]): number[] {
  if (detector === 'fixed threshold') return fixedThreshold(rows);
  return scoreSeries(rows, { detector }).anomalies.map((a) => a.index);
}

describe('NAB-style evaluation on labelled service-metric series', () => {
  const scores: Record<Detector, Record<string, Record<keyof typeof nabProfiles, NabResult>>> = {
    baseline: {},
    forest: {},
    'fixed threshold': {},
  };
  for (const detector of ['baseline', 'forest', 'fixed threshold'] as const) {
    for (const profile of syntheticProfiles) {
      const runs = SEEDS.map((seed) => {
        const s = syntheticSeries(profile, { seed });
        return { s, found: detections(detector, s.rows) };
      });
      scores[detector][profile] = Object.fromEntries(
        Object.entries(nabProfiles).map(([name, weights]) => [
          name,
          nabTotal(
            runs.map(({ s, found }) =>
              nabScore({ length: s.rows.length, labels: s.labels, detections: found }, weights),
            ),
          ),
        ]),
      ) as Record<keyof typeof nabProfiles, NabResult>;
    }
  }
  const overall = (detector: Detector, nab: keyof typeof nabProfiles) =>
    nabTotal(syntheticProfiles.map((p) => scores[detector][p]?.[nab] as NabResult)).normalised;

  it('reports the scores per series profile and NAB profile', () => {
    const lines = ['detector         series        standard  lowFP  lowFN   TP  FP  FN'];
    for (const detector of Object.keys(scores) as Detector[]) {
      for (const profile of [...syntheticProfiles, 'ALL']) {
        const r = (nab: keyof typeof nabProfiles) =>
          profile === 'ALL' ? overall(detector, nab) : (scores[detector][profile]?.[nab]?.normalised as number);
        const counts = profile === 'ALL' ? undefined : scores[detector][profile]?.standard;
        lines.push(
          `${detector.padEnd(16)} ${profile.padEnd(13)} ${r('standard').toFixed(1).padStart(8)} ${r('rewardLowFP').toFixed(1).padStart(6)} ${r('rewardLowFN').toFixed(1).padStart(6)}` +
            (counts
              ? ` ${String(counts.truePositives).padStart(4)} ${String(counts.falsePositives).padStart(3)} ${String(counts.falseNegatives).padStart(3)}`
              : ''),
        );
      }
    }
    console.log(lines.join('\n'));
    expect(lines.length).toBe(1 + 3 * (syntheticProfiles.length + 1));
  });

  it('each detector beats the null detector (0) and the fixed threshold by a margin, on every NAB profile', () => {
    for (const nab of Object.keys(nabProfiles) as (keyof typeof nabProfiles)[]) {
      const naive = overall('fixed threshold', nab);
      for (const detector of ['baseline', 'forest'] as const) {
        const score = overall(detector, nab);
        expect(score, `${detector} ${nab}`).toBeGreaterThan(30);
        expect(score - naive, `${detector} over the fixed threshold, ${nab}`).toBeGreaterThan(20);
      }
    }
  });

  it('the baseline catches the outage during the creep, before the errors start', () => {
    let early = 0;
    let outages = 0;
    for (const seed of SEEDS) {
      const s = syntheticSeries('outageCreep', { seed });
      const alerts = scoreSeries(s.rows, { detector: 'baseline' }).anomalies.map((a) => a.index);
      for (const creep of s.labels) {
        outages++;
        if (alerts.some((i) => i >= creep && i < creep + 30)) early++;
      }
    }
    expect(early / outages).toBeGreaterThanOrEqual(0.8);
  });
});
