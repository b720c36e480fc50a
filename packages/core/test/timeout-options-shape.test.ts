/**
 * timeout(ms, options) with options that are not an object, as JavaScript callers pass them:
 * `timeout(1000, 'aggressive')` (the strategy where the options go), a number, an array, null.
 * Each throws HoldfastConfigError saying the options must be an object, as every other factory
 * does; before, a string was spread into "0 is not a known option" and the others were accepted.
 */
import { describe, expect, it } from 'vitest';
import { HoldfastConfigError, timeout } from '../src/index.js';

describe('timeout(): options that are not an object', () => {
  it.each([
    ['a strategy string', 'aggressive', 'string'],
    ['a number', 5, 'number'],
    ['an array', [], 'array'],
    ['true', true, 'boolean'],
    ['null', null, 'null'],
  ])('%s throws HoldfastConfigError naming (options)', (_, options, received) => {
    const make = () => timeout(1_000, options as never);
    expect(make).toThrow(HoldfastConfigError);
    expect(make).toThrow(`timeout: (options) Invalid input: expected object, received ${received}`);
  });

  it('an object still works, and undefined is no options', async () => {
    await expect(timeout(1_000, { strategy: 'aggressive' }).execute(() => 1)).resolves.toBe(1);
    await expect(timeout(1_000, undefined).execute(() => 2)).resolves.toBe(2);
  });
});
