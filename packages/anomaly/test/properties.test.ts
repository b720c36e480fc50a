import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Hysteresis } from '../src/hysteresis.js';
import { halfSpaceForest, nabScore, parseMetricsCsv, robustBaseline } from '../src/index.js';

const quote = (cell: string) => (/[",]/.test(cell) ? `"${cell.replaceAll('"', '""')}"` : cell);

describe('properties', () => {
  it('the CSV reader reads back any table of numbers it is given, whatever the column names', () => {
    const name = fc
      .string({ minLength: 1, maxLength: 12 })
      .filter(
        (s) => s.trim() === s && s !== '' && !/[\r\n]/.test(s) && !/^(timestamp|time|date|datetime|ts)$/i.test(s),
      );
    fc.assert(
      fc.property(
        fc.uniqueArray(name, { minLength: 1, maxLength: 5 }),
        fc.array(fc.array(fc.double({ noNaN: true, noDefaultInfinity: true }), { minLength: 5, maxLength: 5 }), {
          maxLength: 20,
        }),
        (names, rows) => {
          const cut = rows.map((r) => r.slice(0, names.length));
          const text = [names.map(quote).join(','), ...cut.map((r) => r.map(String).join(','))].join('\n');
          const table = parseMetricsCsv(text);
          expect(table.columns).toEqual(names);
          // String(-0) is "0": a sign the text never had is not expected back.
          expect(table.rows).toEqual(cut.map((r) => r.map((x) => (x === 0 ? 0 : x))));
        },
      ),
    );
  });

  it('the CSV reader either reads or throws HoldfastConfigError, never anything else', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (text) => {
        try {
          parseMetricsCsv(text);
        } catch (error) {
          expect((error as { code?: string }).code).toBe('E_CONFIG');
        }
      }),
    );
  });

  it('hysteresis: alerts alternate detected/cleared, raised needs a score at `on`, clearing needs `clearAfter` quiet samples', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 200 }), (scores) => {
        const settings = { on: 0.5, off: 0.35, clearAfter: 3 };
        const h = new Hysteresis(settings);
        let raised = false;
        let quiet = 0;
        for (const s of scores) {
          const v = h.next(s);
          if (v.change === 'detected') {
            expect(raised).toBe(false);
            expect(s).toBeGreaterThanOrEqual(settings.on);
          }
          if (v.change === 'cleared') {
            expect(raised).toBe(true);
            expect(quiet + 1).toBeGreaterThanOrEqual(settings.clearAfter);
            expect(s).toBeLessThan(settings.off);
          }
          quiet = v.raised && s < settings.off ? quiet + 1 : 0;
          raised = v.raised;
        }
      }),
    );
  });

  it('detectors give a score in [0, 1) for any input, non-finite and extreme values included', () => {
    const value = fc.oneof(fc.double(), fc.constantFrom(0, 1e300, -1e300, Number.NaN, Number.POSITIVE_INFINITY));
    fc.assert(
      fc.property(fc.array(value, { maxLength: 300 }), (xs) => {
        const b = robustBaseline({ warmup: 4 });
        const f = halfSpaceForest({ dimensions: 2, window: 16, warmup: 4, trees: 4, depth: 4 });
        for (const x of xs) {
          const s = b.update(x).score;
          const t = f.update([x, -x]).score;
          for (const score of [s, t]) {
            expect(score).toBeGreaterThanOrEqual(0);
            expect(score).toBeLessThan(1);
          }
        }
      }),
      { numRuns: 50 },
    );
  });

  it('NAB: 0 for no detection, at most 100, and an extra detection outside the windows never raises the score', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 200, max: 3000 }),
        fc.array(fc.double({ min: 0.2, max: 0.99, noNaN: true }), { minLength: 1, maxLength: 4 }),
        fc.array(fc.double({ min: 0, max: 0.999, noNaN: true }), { maxLength: 20 }),
        fc.double({ min: 0, max: 0.999, noNaN: true }),
        (length, labelAt, detectAt, extraAt) => {
          const labels = labelAt.map((p) => Math.floor(p * length));
          const detections = detectAt.map((p) => Math.floor(p * length));
          expect(nabScore({ length, labels, detections: [] }).normalised).toBe(0);
          const base = nabScore({ length, labels, detections });
          expect(base.normalised).toBeLessThanOrEqual(100 + 1e-9);
          const extra = Math.floor(extraAt * length);
          const more = nabScore({ length, labels, detections: [...detections, extra] });
          if (more.falsePositives > base.falsePositives) expect(more.raw).toBeLessThanOrEqual(base.raw + 1e-9);
        },
      ),
    );
  });
});
