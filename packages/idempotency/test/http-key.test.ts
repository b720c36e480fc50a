import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseKeyHeader } from '../src/http/index.js';

describe('parseKeyHeader', () => {
  it('reads a structured-field string and a bare token as the same key', () => {
    expect(parseKeyHeader('"8e03978e-40d5-43e8-bc93-6894a57f9324"')).toEqual({
      status: 'ok',
      key: '8e03978e-40d5-43e8-bc93-6894a57f9324',
    });
    expect(parseKeyHeader('8e03978e-40d5-43e8-bc93-6894a57f9324')).toEqual({
      status: 'ok',
      key: '8e03978e-40d5-43e8-bc93-6894a57f9324',
    });
  });

  it('decodes the escapes of a quoted key and allows spaces in it', () => {
    expect(parseKeyHeader('"a \\"quoted\\" \\\\ key"')).toEqual({ status: 'ok', key: 'a "quoted" \\ key' });
  });

  it('accepts 1 to 255 printable ASCII characters', () => {
    expect(parseKeyHeader('x')).toMatchObject({ status: 'ok' });
    expect(parseKeyHeader('~'.repeat(255))).toMatchObject({ status: 'ok' });
    expect(parseKeyHeader(`"${'a'.repeat(255)}"`)).toMatchObject({ status: 'ok' });
    expect(parseKeyHeader('a'.repeat(256))).toMatchObject({
      status: 'invalid',
      reason: expect.stringContaining('256'),
    });
    expect(parseKeyHeader(`"${'a'.repeat(256)}"`)).toMatchObject({ status: 'invalid' });
  });

  it.each([
    ['empty', ''],
    ['only spaces', '   '],
    ['an empty quoted string', '""'],
    ['no closing quote', '"abc'],
    ['text after the quote', '"abc"x'],
    ['sf parameters', '"abc";a=1'],
    ['a bad escape', '"a\\nb"'],
    ['a space in a bare key', 'a b'],
    ['two keys joined by Node', 'one, two'],
    ['a key and an empty copy joined by Node', 'abc, '],
    ['two copies joined by a proxy without a space', 'k1,k1'],
    ['a trailing comma', 'abc,'],
    ['a quote inside a bare key', 'a"b'],
    ['non-ASCII', 'caf\u00e9'],
    ['a control character', 'a\u0001b'],
    ['a tab in a quoted key', '"a\tb"'],
  ])('refuses %s', (_, value) => {
    expect(parseKeyHeader(value).status).toBe('invalid');
  });

  it('reports a missing header, and refuses a header given as several values', () => {
    expect(parseKeyHeader(undefined)).toEqual({ status: 'missing' });
    expect(parseKeyHeader(['a', 'b'])).toMatchObject({ status: 'invalid' });
    expect(parseKeyHeader(['a'])).toEqual({ status: 'ok', key: 'a' });
    // req.headersDistinct keeps an empty second copy that the joined value hides.
    expect(parseKeyHeader(['abc', ''])).toMatchObject({ status: 'invalid' });
  });

  it('keeps a comma inside a quoted key: it is one sf-string, not a list', () => {
    expect(parseKeyHeader('"a,b"')).toEqual({ status: 'ok', key: 'a,b' });
    expect(parseKeyHeader('"a", "b"')).toMatchObject({ status: 'invalid' });
  });

  it('property: a bare key with a comma anywhere is refused', () => {
    const printable = fc.string({ unit: fc.constantFrom(...'abcXYZ09-_.:~!'.split('')), maxLength: 20 });
    fc.assert(
      fc.property(printable, printable, (before, after) => {
        expect(parseKeyHeader(`${before},${after}`).status).toBe('invalid');
        expect(parseKeyHeader(`"${before},${after}"`)).toEqual({ status: 'ok', key: `${before},${after}` });
      }),
    );
  });
});

describe('parseKeyHeader, read without trim() when nothing is to trim', () => {
  it('reads any value as its trimmed value', () => {
    const unit = fc.constantFrom(
      'a',
      'Z',
      '0',
      ' ',
      '\t',
      '"',
      '\\',
      ',',
      '\u00a0',
      '\ufeff',
      '\u3000',
      '\n',
      '\u00e9',
      '~',
    );
    fc.assert(
      fc.property(fc.string({ unit, maxLength: 12 }), (value) => {
        expect(parseKeyHeader(value)).toEqual(parseKeyHeader(value.trim()));
        expect(parseKeyHeader([value])).toEqual(parseKeyHeader(value.trim()));
      }),
      { numRuns: 3_000 },
    );
  });
});
