/**
 * `new Redactor(extraParams)` from JavaScript with one name where a list goes:
 * `new Redactor('session_id')`. A string is iterable, so each of its letters became a secret
 * parameter and `session_id` itself was shown in the clear, the leak the caller asked to stop.
 * It is refused with a HoldfastConfigError naming `extraParams`, as is a list holding a non-string.
 */
import { describe, expect, it } from 'vitest';
import { HoldfastConfigError, Redactor } from '../src/index.js';

describe('new Redactor(extraParams)', () => {
  it('a single name given as a string is refused, not read letter by letter', () => {
    expect(() => new Redactor('session_id' as never)).toThrow(HoldfastConfigError);
    expect(() => new Redactor('session_id' as never)).toThrow(
      'Redactor: extraParams must be an array of query parameter names (got "session_id")',
    );
  });

  it.each([
    ['a number', 5],
    ['null', null],
    ['a list with a number', ['session_id', 7]],
  ])('%s is refused naming extraParams', (_, extra) => {
    expect(() => new Redactor(extra as never)).toThrow(
      /^Redactor: extraParams must be an array of query parameter names/,
    );
  });

  it('a list of names hides each, and nothing is given means the defaults', () => {
    expect(new Redactor(['session_id']).url('http://h/x?session_id=abc&s=1')).toBe('http://h/x?session_id=***&s=1');
    expect(new Redactor().url('http://h/x?token=abc')).toBe('http://h/x?token=***');
  });
});
