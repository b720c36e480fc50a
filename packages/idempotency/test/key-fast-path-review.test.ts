/**
 * Hostile review of #19's parseKeyHeader fast path (a value starting and ending with a printable
 * character is read untrimmed; a bare key known by its first character): it answers exactly what
 * the reading before it answered (below, as it was: always trimmed, a bare key one that unquoting
 * left as it was), for values made of the characters that matter: spaces, tabs, every character
 * `trim()` removes (NBSP, BOM, line and paragraph separators), obs-text, non-ASCII, quotes,
 * backslashes, commas (two headers joined), around a key or inside it, 0 to 300 characters.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type KeyHeader, parseKeyHeader } from '../src/http/key.js';

/**
 * The reading before #19: the value always trimmed; a quoted key read as now (its unquoting is
 * unchanged); a bare key, 1-255 printable ASCII characters but space, quote and comma.
 */
function before(value: string | readonly string[] | undefined): KeyHeader {
  if (value === undefined) return parseKeyHeader(value);
  if (typeof value !== 'string') return value.length === 1 ? before(value[0]) : parseKeyHeader(value);
  const field = value.trim();
  if (field === '' || field.startsWith('"')) return parseKeyHeader(field);
  if (field.length > 255) return parseKeyHeader(field);
  return /^[!#-+\--~]+$/.test(field) ? { status: 'ok', key: field } : parseKeyHeader(field);
}

// Every character trim() removes, the printable edges (! and ~), and what a key must not hold.
const edge = fc.constantFrom(
  ' ',
  '\t',
  '\n',
  '\v',
  '\f',
  '\r',
  '\u00a0',
  '\u1680',
  '\u2000',
  '\u200a',
  '\u2028',
  '\u2029',
  '\u202f',
  '\u205f',
  '\u3000',
  '\ufeff',
  '\u0085',
  '\u0080',
  '\u00ff',
  '\u00e9',
  '\u20ac',
  '\ud800',
  '\x00',
  '\x7f',
  '!',
  '~',
  '"',
  '\\',
  ',',
  'a',
  'Z',
  '0',
);
const value = fc.oneof(
  fc.string({ unit: edge, maxLength: 12 }),
  fc
    .tuple(
      fc.string({ unit: edge, maxLength: 3 }),
      fc.string({ maxLength: 300 }),
      fc.string({ unit: edge, maxLength: 3 }),
    )
    .map(([a, b, c]) => a + b + c),
  fc
    .tuple(
      fc.string({ unit: edge, maxLength: 2 }),
      fc.integer({ min: 250, max: 260 }),
      fc.boolean(),
      fc.string({ unit: edge, maxLength: 2 }),
    )
    .map(([a, n, quoted, c]) => a + (quoted ? `"${'k'.repeat(n)}"` : 'k'.repeat(n)) + c),
);

describe('parseKeyHeader fast path (hostile review of #19)', () => {
  it('reads every value as the trimmed reading before it did', () => {
    fc.assert(
      fc.property(fc.oneof(value, fc.array(value, { maxLength: 2 })), (v) => {
        expect(parseKeyHeader(v)).toEqual(before(v));
      }),
      { numRuns: 20_000 },
    );
  });

  it.each([
    ['', 'invalid'],
    ['a, b', 'invalid'],
    ['a,b', 'invalid'],
    ['"a, b"', 'ok'],
    ['a\tb', 'invalid'],
    ['\ta\t', 'ok'],
    ['\u00a0abc\u00a0', 'ok'],
    ['ab\u00e9', 'invalid'],
    ['k'.repeat(255), 'ok'],
    ['k'.repeat(256), 'invalid'],
    [`"${'k'.repeat(255)}"`, 'ok'],
  ])('%j: %s, as before', (v, status) => {
    expect(parseKeyHeader(v).status).toBe(status);
    expect(parseKeyHeader(v)).toEqual(before(v));
  });
});
