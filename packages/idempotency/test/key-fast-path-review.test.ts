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

function before(value: string | readonly string[] | undefined): KeyHeader {
  if (value === undefined) return { status: 'missing' };
  if (typeof value !== 'string') {
    return value.length === 1 ? before(value[0]) : invalid('send the header exactly once');
  }
  const field = value.trim();
  if (field === '') return invalid('the key is empty');
  const key = field.startsWith('"') ? unquote(field) : field;
  if (typeof key !== 'string') return key;
  if (key.length === 0) return invalid('the key is empty');
  if (key.length > 255) return invalid(`the key is ${key.length} characters long; at most 255 are allowed`);
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) return invalid('a key is made of printable ASCII characters only');
    if (key === field && (c === 0x20 || c === 0x22 || c === 0x2c)) {
      return invalid(
        c === 0x2c
          ? 'a bare key has no commas: the header was sent more than once, or send a quoted string ("...")'
          : 'a bare key has no spaces or quotes; send a quoted string ("...") for those',
      );
    }
  }
  return { status: 'ok', key };
}

function unquote(field: string): string | KeyHeader {
  let out = '';
  for (let i = 1; i < field.length; i++) {
    const c = field[i];
    if (c === '\\') {
      const next = field[++i];
      if (next !== '"' && next !== '\\') return invalid('only \\" and \\\\ may be escaped in a quoted key');
      out += next;
    } else if (c === '"') {
      return i === field.length - 1 ? out : invalid('nothing may follow the closing quote');
    } else {
      out += c;
    }
  }
  return invalid('the quoted key has no closing quote');
}

function invalid(reason: string): KeyHeader {
  return { status: 'invalid', reason };
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
