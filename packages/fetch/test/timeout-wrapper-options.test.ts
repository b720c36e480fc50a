/**
 * withTimeout(fn, ms, options) and @timeout(ms, options) with options that are not an object,
 * as a JavaScript caller passes the strategy: `withTimeout(fn, 1000, 'cooperative')`. The error
 * names the options as timeout() does, not one "is not a known option" per letter of the string.
 */
import { HoldfastConfigError } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { timeout } from '../src/decorators.js';
import { withTimeout } from '../src/index.js';

const work = async () => 'done';

describe('timeout wrappers: options that are not an object', () => {
  it.each([
    ['withTimeout()', (options: unknown) => withTimeout(work, 1_000, options as never)],
    ['@timeout()', (options: unknown) => timeout(1_000, options as never)],
  ])('%s with a strategy string throws HoldfastConfigError naming (options)', (_, make) => {
    expect(() => make('cooperative')).toThrow(HoldfastConfigError);
    expect(() => make('cooperative')).toThrow(
      /^timeout: \(options\) Invalid input: expected object, received string \(got "cooperative"\)$/,
    );
    expect(() => make(5)).toThrow('timeout: (options) Invalid input: expected object, received number');
  });

  it('withTimeout() without options is still aggressive: it rejects at the deadline while fn runs on', async () => {
    const slow = () => new Promise<string>((resolve) => setTimeout(() => resolve('late'), 2_000));
    await expect(withTimeout(slow, 20)()).rejects.toMatchObject({ code: 'E_TIMEOUT' });
    await expect(withTimeout(slow, 20, { strategy: 'aggressive' })()).rejects.toMatchObject({ code: 'E_TIMEOUT' });
  });
});
