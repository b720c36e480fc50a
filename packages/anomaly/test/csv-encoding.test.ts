/**
 * A CSV saved by Excel or PowerShell: UTF-8 with a BOM, or UTF-16 (LE or BE) with one. Each is read
 * as the same table, or refused with an error that names the encoding, never read as garbage.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../src/cli.js';
import { parseMetricsCsv } from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'holdfast-anomaly-bom-'));
const csv = 'timestamp,latency\r\n2026-01-01T00:00:00Z,12\r\n2026-01-01T00:00:05Z,14\r\n';
const table = {
  columns: ['latency'],
  rows: [[12], [14]],
  timestamps: ['2026-01-01T00:00:00Z', '2026-01-01T00:00:05Z'],
};

function score(bytes: Buffer) {
  const file = join(dir, `m-${Math.random().toString(36).slice(2)}.csv`);
  writeFileSync(file, bytes);
  const out: string[] = [];
  const err: string[] = [];
  const code = main(
    ['score', file, '--json'],
    (l) => out.push(l),
    (l) => err.push(l),
  );
  return { code, out: out.join('\n'), err: err.join('\n') };
}

const utf16be = (text: string) => Buffer.from(text, 'utf16le').swap16();

describe('CSV encodings', () => {
  it('text starting with a BOM (UTF-8 read as a string): the timestamp column is still found', () => {
    // Held already (trim() drops a BOM); kept so a stricter reader does not lose it.
    expect(parseMetricsCsv(`\uFEFF${csv}`)).toEqual(table);
  });

  it('the CLI reads UTF-8, UTF-16 LE and UTF-16 BE files with a BOM as the same table', () => {
    const files = {
      utf8: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(csv)]),
      utf16le: Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(csv, 'utf16le')]),
      utf16be: Buffer.concat([Buffer.from([0xfe, 0xff]), utf16be(csv)]),
    };
    for (const [encoding, bytes] of Object.entries(files)) {
      const r = score(bytes);
      // Before the fix: exit 1, "csv.line 2.\uFFFD\uFFFDt\u0000i\u0000m\u0000e…" not a number (UTF-16).
      expect({ encoding, code: r.code, err: r.err }).toEqual({ encoding, code: 0, err: '' });
      expect(JSON.parse(r.out)).toMatchObject({ columns: ['latency'] });
    }
  });

  it('UTF-16 without a BOM is refused, naming the encoding', () => {
    const r = score(Buffer.from(csv, 'utf16le'));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/UTF-16/);
    expect(parseMetricsCsvError(Buffer.from(csv, 'utf16le').toString('utf8'))).toMatch(/UTF-16/);
  });
});

function parseMetricsCsvError(text: string): string {
  try {
    parseMetricsCsv(text);
    return 'parsed';
  } catch (error) {
    return (error as Error).message;
  }
}
