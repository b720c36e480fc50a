import { HoldfastConfigError } from '@holdfast/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { syntheticProfiles, syntheticSeries } from '../src/index.js';

describe('syntheticSeries() properties', () => {
  it('any accepted length, day and seed: length rows of finite numbers, every label inside the series', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...syntheticProfiles),
        fc.oneof(fc.integer({ min: 0, max: 400 }), fc.integer({ min: 0, max: 3_000 })),
        fc.oneof(fc.integer({ min: -2, max: 400 }), fc.double({ noNaN: false })),
        fc.integer({ min: 0, max: 1_000 }),
        (profile, length, day, seed) => {
          let series: ReturnType<typeof syntheticSeries>;
          try {
            series = syntheticSeries(profile, { length, day, seed });
          } catch (error) {
            // Refused: said as the library's config error, never a RangeError from an array.
            expect(error).toBeInstanceOf(HoldfastConfigError);
            return;
          }
          expect(series.rows).toHaveLength(length);
          for (const row of series.rows) for (const v of row) expect(Number.isFinite(v)).toBe(true);
          expect(series.labels.length).toBeGreaterThan(0);
          for (const label of series.labels) {
            expect(Number.isInteger(label)).toBe(true);
            expect(label).toBeGreaterThanOrEqual(0);
            expect(label).toBeLessThan(length);
          }
        },
      ),
      { numRuns: 150 },
    );
  }, 20_000);

  it('regressions: a series too short for its anomalies, day 0, an unknown profile are refused', () => {
    // outageCreep at 100 samples put its creep's label at -5; day 0 made every row NaN.
    expect(() => syntheticSeries('outageCreep', { length: 100, seed: 1 })).toThrow(/syntheticSeries: length/);
    expect(() => syntheticSeries('dailySpikes', { day: 0 })).toThrow(/syntheticSeries: day/);
    expect(() => syntheticSeries('nope' as never)).toThrow(/syntheticSeries: profile/);
    expect(syntheticSeries('outageCreep', { length: 150, seed: 1 }).labels.every((l) => l >= 0)).toBe(true);
  });
});
