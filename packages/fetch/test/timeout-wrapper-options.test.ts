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

describe('timeout wrappers: strategy left undefined (review)', () => {
  // `{ name, strategy: config.strategy }` with no strategy configured: the wrapper's default
  // (aggressive) holds, as it does when the key is absent. It went cooperative, and a function
  // that ignores its signal was never cut off.
  it.each([
    ['withTimeout()', (options: object) => withTimeout(hang, 20, options as never)],
    [
      '@timeout()',
      (options: object) => {
        class Client {
          @timeout(20, options as never)
          async call(): Promise<string> {
            return hang();
          }
        }
        const client = new Client();
        return () => client.call();
      },
    ],
  ])('%s with { strategy: undefined } rejects at the deadline', async (_, make) => {
    await expect(make({ strategy: undefined, name: 'inventory' })()).rejects.toMatchObject({ code: 'E_TIMEOUT' });
  });
});

/** Never settles, and never looks at a signal. */
function hang(): Promise<string> {
  return new Promise<string>(() => {});
}
