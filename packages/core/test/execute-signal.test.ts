/**
 * `execute(fn, { signal })` as a JavaScript caller writes it: a `signal` that is `null` (what
 * `fetch`'s RequestInit and `req.signal ?? null` hand on) means no signal, as it does to fetch;
 * a `signal` that is no AbortSignal rejects the call with a TypeError that says so, never a
 * synchronous throw and never "Invalid value used in weak set".
 */
import { describe, expect, it } from 'vitest';
import { type ExecuteOptions, fallback, hedge, type Policy, pipeline, timeout } from '../src/index.js';

const policies: [string, () => Policy][] = [
  ['timeout() cooperative', () => timeout(1_000)],
  ['timeout() aggressive', () => timeout(1_000, { strategy: 'aggressive' })],
  ['hedge()', () => hedge({ delay: 1_000, safe: true, budget: false, policies: false })],
  ['fallback()', () => fallback({ value: 'fallback' })],
  ['pipeline()', () => pipeline(timeout(1_000))],
];

const notSignals: [string, unknown][] = [
  ['a string', 'abort'],
  ['a plain object', {}],
  ['a number', 1],
  ['an AbortController (not its signal)', new AbortController()],
];

describe.each(policies)('%s: execute(fn, { signal })', (_, make) => {
  it('null is no signal: the call runs and returns its value', async () => {
    const options = { signal: null } as unknown as ExecuteOptions;
    await expect(make().execute(() => 'ran', options)).resolves.toBe('ran');
  });

  it.each(notSignals)('%s rejects the call with a TypeError naming signal; fn never runs', async (_, signal) => {
    let runs = 0;
    let call: Promise<unknown> | undefined;
    expect(() => {
      call = make().execute(
        () => {
          runs++;
          return 'ran';
        },
        { signal } as unknown as ExecuteOptions,
      );
    }).not.toThrow();
    const error = await call?.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toMatch(/signal must be an AbortSignal/);
    expect(runs).toBe(0);
  });
});
