import { HoldfastConfigError, parseOptions } from '@holdfast/core';
import { z } from 'zod';
import { robustBaseline } from './baseline.js';
import { halfSpaceForest } from './forest.js';
import { Hysteresis } from './hysteresis.js';
import { baselineOptionsSchema, forestOptionsShape } from './options.js';

/** A parsed table of metrics: one numeric column per metric, an optional timestamp per row. */
export interface MetricTable {
  /** The metric columns' names. */
  readonly columns: readonly string[];
  /** One array of values per row, in `columns` order (NaN where a cell was empty). */
  readonly rows: readonly (readonly number[])[];
  /** The timestamp column's cells, when the table has one. */
  readonly timestamps?: readonly string[];
}

/** The most columns the forest scores together (its `dimensions` limit). */
const FOREST_MAX_COLUMNS = 64;

const scoreSeriesOptionsSchema = z.strictObject({
  /** `baseline`: one robust baseline per column; `forest`: Half-Space Trees over all columns. @default 'baseline' for one column, 'forest' for more */
  detector: z.enum(['baseline', 'forest']).optional(),
  /** Options of each column's baseline. */
  baseline: baselineOptionsSchema,
  /** Options of the forest (`dimensions` is the number of columns). */
  forest: forestOptionsShape.omit({ dimensions: true }).optional(),
});

/** Options of {@link scoreSeries}. */
export type ScoreSeriesOptions = z.input<typeof scoreSeriesOptionsSchema>;

/** One point of a scored series. */
export interface ScoredPoint {
  /** The row's index. */
  readonly index: number;
  /** The row's timestamp, when the input had one. */
  readonly timestamp?: string;
  /** The detector's score, 0 to 1 (0.5 is its threshold). */
  readonly score: number;
  /** The label after hysteresis. */
  readonly raised: boolean;
}

/** An alert: the point where the label was raised. */
export interface SeriesAnomaly extends ScoredPoint {
  /** The column that departed most. */
  readonly metric: string;
  /** Its value at this point. */
  readonly value: number;
  /** What the detector expected of it. */
  readonly expected: number;
}

/** What {@link scoreSeries} returns. */
export interface ScoredSeries {
  /** The metric columns scored. */
  readonly columns: readonly string[];
  /** Every point, scored. */
  readonly points: readonly ScoredPoint[];
  /** The alerts: each point where the label went up (a held label is one alert, not many). */
  readonly anomalies: readonly SeriesAnomaly[];
}

/**
 * Scores a series offline, one sample at a time exactly as a live detector would (no look-ahead):
 * numbers, rows of numbers, or CSV text with a header (a `timestamp`/`time`/`date` column is kept,
 * every other column is a metric). Returns every point's score and the alerts.
 *
 * @example
 * const { anomalies } = scoreSeries('timestamp,value\n' + Array.from({ length: 60 }, (_, i) => `${i},${i === 50 ? 90 : 10 + (i % 3)}`).join('\n'));
 * console.log(anomalies.map((a) => a.index)); // [50]
 */
export function scoreSeries(
  input: string | readonly number[] | readonly (readonly number[])[],
  options: ScoreSeriesOptions = {},
): ScoredSeries {
  const o = parseOptions('scoreSeries', scoreSeriesOptionsSchema, options);
  const table = toTable(input);
  const width = table.columns.length;
  const detector = o.detector ?? (width > 1 ? 'forest' : 'baseline');
  if (detector === 'forest' && width > FOREST_MAX_COLUMNS) {
    throw bad(
      typeof input === 'string' ? 'csv.header' : 'input[0]',
      `has ${width} metric columns; the forest scores at most ${FOREST_MAX_COLUMNS} together (score fewer columns, or use detector 'baseline')`,
      table.columns.slice(0, 4).join(','),
    );
  }
  const score = detector === 'forest' ? forestScorer(width, o.forest) : baselineScorer(width, o.baseline);
  const points: ScoredPoint[] = [];
  const anomalies: SeriesAnomaly[] = [];
  table.rows.forEach((row, index) => {
    const { score: s, raised, change, dimension, expected } = score(row);
    const timestamp = table.timestamps?.[index];
    const point: ScoredPoint =
      timestamp === undefined ? { index, score: s, raised } : { index, timestamp, score: s, raised };
    points.push(point);
    if (change === 'detected') {
      const d = Math.max(0, dimension);
      anomalies.push({
        ...point,
        metric: table.columns[d] ?? '',
        value: row[d] ?? Number.NaN,
        expected: expected[d] ?? Number.NaN,
      });
    }
  });
  return { columns: table.columns, points, anomalies };
}

type Scorer = (row: readonly number[]) => {
  score: number;
  raised: boolean;
  change: 'detected' | 'cleared' | undefined;
  dimension: number;
  expected: readonly number[];
};

function baselineScorer(width: number, options: z.output<typeof baselineOptionsSchema>): Scorer {
  const baselines = Array.from({ length: width }, () => robustBaseline(options));
  const labels = new Hysteresis(options.hysteresis);
  return (row) => {
    let best = 0;
    let dimension = 0;
    const expected: number[] = [];
    baselines.forEach((b, q) => {
      const v = b.update(row[q] ?? Number.NaN);
      expected.push(v.expected);
      if (v.score > best) {
        best = v.score;
        dimension = q;
      }
    });
    const v = labels.next(best);
    return { score: best, raised: v.raised, change: v.change, dimension, expected };
  };
}

function forestScorer(width: number, options: z.output<typeof scoreSeriesOptionsSchema>['forest']): Scorer {
  const forest = halfSpaceForest({ ...options, dimensions: width });
  return (row) => forest.update(row);
}

const timeColumn = /^(timestamp|time|date|datetime|ts)$/i;

/**
 * Parses CSV text of metrics: a header row, then one row per sample; a column named
 * timestamp/time/date is kept as text, every other cell must be a number (empty is NaN).
 * Throws {@link HoldfastConfigError} naming the line and the cell when it is not.
 */
export function parseMetricsCsv(input: string): MetricTable {
  // A UTF-16 file read as UTF-8 has a NUL in every other character: refused, its encoding named,
  // never read as garbage (nor its NULs echoed to a terminal in the error).
  if (input.includes('\u0000')) {
    throw new HoldfastConfigError('scoreSeries', [
      { path: 'csv', message: 'holds NUL characters: it looks like UTF-16 or UTF-32; save it as UTF-8' },
    ]);
  }
  // A byte order mark (Excel's UTF-8 CSV) is no part of the first column's name.
  const text = input.startsWith('\uFEFF') ? input.slice(1) : input;
  // Blank lines are skipped, but every error names the line's number in the file.
  const lines: [line: string, number: number][] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() !== '') lines.push([line, i + 1]);
  });
  const header = lines[0]?.[0];
  if (header === undefined) throw bad('csv', 'has no header row', text.slice(0, 40));
  const names = splitCsv(header);
  const timeAt = names.findIndex((n) => timeColumn.test(n));
  const columns = names.filter((_, i) => i !== timeAt);
  if (columns.length === 0) throw bad('csv.header', 'names no metric column', header);
  const rows: number[][] = [];
  const timestamps: string[] = [];
  for (let l = 1; l < lines.length; l++) {
    const [line, number] = lines[l] as [string, number];
    const cells = splitCsv(line);
    if (cells.length !== names.length)
      throw bad(`csv.line ${number}`, `has ${cells.length} cells, the header ${names.length}`, line);
    const row: number[] = [];
    cells.forEach((cell, i) => {
      if (i === timeAt) timestamps.push(cell);
      else row.push(toNumber(cell, number, names[i] as string));
    });
    rows.push(row);
  }
  return timeAt >= 0 ? { columns, rows, timestamps } : { columns, rows };
}

function toTable(input: string | readonly number[] | readonly (readonly number[])[]): MetricTable {
  if (typeof input === 'string') return parseMetricsCsv(input);
  if (!Array.isArray(input)) throw bad('input', 'must be CSV text, an array of numbers or an array of rows', input);
  if (input.length === 0) return { columns: ['value'], rows: [] };
  // A number, or null for a gap (JSON has no NaN); a string (Prometheus answers so) is named, not read as no value.
  const cell = (v: unknown, path: string): number => {
    if (v === null) return Number.NaN;
    if (typeof v !== 'number') throw bad(path, 'must be a number (NaN or null for no value)', v);
    return v;
  };
  if (!Array.isArray(input[0])) {
    return { columns: ['value'], rows: (input as readonly unknown[]).map((v, i) => [cell(v, `input[${i}]`)]) };
  }
  const first = input[0] as readonly unknown[];
  const width = first.length;
  if (width === 0) throw bad('input[0]', 'must be a non-empty row of numbers', first);
  const rows = (input as readonly unknown[]).map((row, i) => {
    if (!Array.isArray(row) || row.length !== width) throw bad(`input[${i}]`, `must be a row of ${width} numbers`, row);
    return row.map((v, q) => cell(v, `input[${i}][${q}]`));
  });
  return { columns: Array.from({ length: width }, (_, i) => `m${i}`), rows };
}

/** A decimal number, as a metric is written: no hex, octal or binary literals, no `Infinity`. */
const decimal = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

function toNumber(cell: string, line: number, column: string): number {
  if (cell.trim() === '') return Number.NaN;
  const n = decimal.test(cell) ? Number(cell) : Number.NaN;
  if (!Number.isFinite(n)) throw bad(`csv.line ${line}.${column}`, 'is not a number', cell);
  return n;
}

/** Splits one CSV line; double quotes may enclose a cell, and "" inside is a quote. */
function splitCsv(line: string): string[] {
  const cells: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      cells.push(cell.trim());
      cell = '';
    } else cell += c;
  }
  cells.push(cell.trim());
  return cells;
}

function bad(path: string, message: string, value: unknown): HoldfastConfigError {
  return new HoldfastConfigError('scoreSeries', [
    { path, message, value: typeof value === 'string' ? value.slice(0, 80) : value },
  ]);
}
