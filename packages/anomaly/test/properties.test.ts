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

  it('hysteresis: raised exactly when `raiseAfter` of the last 2 * raiseAfter - 1 scores since the last change reach `on`, cleared exactly after `clearAfter` under `off`', () => {
    const settings = fc
      .record({
        on: fc.double({ min: 0.05, max: 0.95, noNaN: true }),
        offShare: fc.double({ min: 0.1, max: 1, noNaN: true }),
        clearAfter: fc.integer({ min: 1, max: 5 }),
        raiseAfter: fc.integer({ min: 1, max: 5 }),
      })
      .map(({ on, offShare, ...rest }) => ({ on, off: on * offShare, ...rest }));
    const scores = fc.array(fc.oneof(fc.double({ min: 0, max: 1, noNaN: true }), fc.constantFrom(0, 0.35, 0.5, 0.9)), {
      maxLength: 200,
    });
    fc.assert(
      fc.property(settings, scores, (settings, scores) => {
        const h = new Hysteresis(settings);
        let raised = false;
        let since = 0; // index of the first score after the last change
        scores.forEach((s, i) => {
          const v = h.next(s);
          // Raised: `raiseAfter` at `on` among the last 2 * raiseAfter - 1 (since the last change).
          const need = raised ? settings.clearAfter : 2 * settings.raiseAfter - 1;
          const run = scores.slice(Math.max(since, i + 1 - need), i + 1);
          const due = raised
            ? run.length === need && run.every((x) => x < settings.off)
            : run.filter((x) => x >= settings.on).length >= settings.raiseAfter;
          expect(v.change).toBe(due ? (raised ? 'cleared' : 'detected') : undefined);
          if (due) {
            raised = !raised;
            since = i + 1;
          }
          expect(v.raised).toBe(raised);
          expect(v.score).toBe(s);
        });
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
