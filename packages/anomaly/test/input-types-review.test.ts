/**
 * Review: values that are not numbers, given from code. Prometheus' HTTP API answers every sample
 * as a string (`[1733300000, "0.213"]`); a JSON series writes a gap as null; a row can miss a
 * metric. The CSV reader refuses a cell that is no number, naming it, but the same values passed
 * as arrays were scored silently as no value: a series of strings gave no anomaly, no error.
 */
import { HoldfastConfigError } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { halfSpaceForest, robustBaseline, scoreSeries } from '../src/index.js';

/** 80 samples around 10 with a spike of 95 at 60: the baseline alerts on it as numbers. */
const series = Array.from({ length: 80 }, (_, i) => (i === 60 ? 95 : 10 + (i % 3)));

describe('review: values that are not numbers', () => {
  it('a series of numeric strings (as Prometheus answers) is refused, naming the first, not scored as nothing', () => {
    expect(scoreSeries(series).anomalies.map((a) => a.index)).toEqual([60]);
    const strings = series.map(String) as unknown as number[];
    expect(() => scoreSeries(strings)).toThrow(HoldfastConfigError);
    expect(() => scoreSeries(strings)).toThrow(/input\[0\] must be a number.*"10"/);
  });

  it('rows with a cell that is no number are refused, naming the row and the cell', () => {
    const rows = series.map((v) => [v, 1]) as unknown as number[][];
    (rows[7] as unknown[])[1] = '1';
    expect(() => scoreSeries(rows)).toThrow(/input\[7\]\[1\] must be a number/);
  });

  it('null is a gap (JSON has no NaN), read as an empty CSV cell is: no value', () => {
    const gappy = series.map((v, i) => (i % 10 === 5 ? null : v)) as unknown as number[];
    const withNaN = series.map((v, i) => (i % 10 === 5 ? Number.NaN : v));
    expect(scoreSeries(gappy)).toEqual(scoreSeries(withNaN));
  });

  it('robustBaseline.update() refuses a value that is no number', () => {
    const b = robustBaseline();
    expect(() => b.update('12' as unknown as number)).toThrow(HoldfastConfigError);
    expect(() => b.update('12' as unknown as number)).toThrow(/value must be a number/);
    expect(b.update(Number.NaN).score).toBe(0); // NaN stays "no value"
  });

  it('halfSpaceForest.update() refuses a row of the wrong width, naming it', () => {
    const f = halfSpaceForest({ dimensions: 3, warmup: 8 });
    for (let i = 0; i < 20; i++) f.update([20 + (i % 5), 0.01, 100]);
    expect(() => f.update([20, 0.01])).toThrow(HoldfastConfigError);
    expect(() => f.update([20, 0.01])).toThrow(/values must hold 3 numbers \(got 2\)/);
    expect(() => f.update([20, 0.01, 100, 5])).toThrow(/got 4/);
    expect(() => f.update([20, '0.01', 100] as unknown as number[])).toThrow(/values\[1\] must be a number/);
  });
});
