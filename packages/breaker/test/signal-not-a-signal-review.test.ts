/**
 * A breaker given a `signal` that is no AbortSignal (a string, a plain object) refuses the call as
 * every other policy does: the function never runs, and the breaker counts nothing. It ran the
 * function and counted its success before rejecting with the TypeError.
 */
import { EventEmitter } from 'node:events';
import { createBus, type ExecuteOptions, ManualClock, pipeline } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { breakerRegistry, circuitBreaker } from '../src/index.js';

const notSignals: [string, unknown][] = [
  ['a string', 'abort'],
  ['a plain object', {}],
  ['an object with aborted: "no"', { aborted: 'no' }],
];

const opts = () => ({ bus: createBus(), clock: new ManualClock(0), policies: false as const });

describe.each(notSignals)('breaker, signal = %s', (_, signal) => {
  const options = { signal } as unknown as ExecuteOptions;

  it('execute() rejects with a TypeError naming signal; fn never runs; nothing counted', async () => {
    const breaker = circuitBreaker(opts());
    let runs = 0;
    const error = await breaker
      .execute(() => ++runs, options)
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toMatch(/signal must be an AbortSignal/);
    expect(runs).toBe(0);
    expect(breaker.snapshot().window.calls).toBe(0);
  });

  it('as the last policy of a pipeline and through breakerRegistry: fn never runs', async () => {
    let runs = 0;
    const fn = () => ++runs;
    await expect(pipeline(circuitBreaker(opts())).execute(fn, options)).rejects.toThrow(
      /signal must be an AbortSignal/,
    );
    await expect(breakerRegistry(opts()).execute('k', fn, options)).rejects.toThrow(/signal must be an AbortSignal/);
    expect(runs).toBe(0);
  });
});

it('a Proxy signal whose getters throw: execute() rejects, never throws', async () => {
  const breaker = circuitBreaker(opts());
  const signal = new Proxy(
    {},
    {
      get() {
        throw new Error('getter threw');
      },
    },
  );
  let call: Promise<unknown> | undefined;
  expect(() => {
    call = breaker.execute(() => 'ran', { signal } as unknown as ExecuteOptions);
  }).not.toThrow();
  await expect(call).rejects.toThrow(/signal must be an AbortSignal/);
});

it('a real signal: no listener is left on it once calls settle, closed or open', async () => {
  const breaker = circuitBreaker({ ...opts(), minimumCalls: 1, failureRateThreshold: 0.5 } as never);
  const signal = new AbortController().signal;
  await expect(breaker.execute(() => 'ok', { signal })).resolves.toBe('ok');
  expect(EventEmitter.getEventListeners(signal, 'abort')).toHaveLength(0);
  breaker.isolate();
  await expect(breaker.execute(() => 'ok', { signal })).rejects.toThrow();
  expect(EventEmitter.getEventListeners(signal, 'abort')).toHaveLength(0);
});
