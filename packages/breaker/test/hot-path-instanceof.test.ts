import { CallScope, createBus } from '@holdfast/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { circuitBreaker } from '../src/index.js';

// `x instanceof CallScope` looks CallScope's Symbol.hasInstance up on every evaluation, and V8
// leaves that lookup megamorphic in optimised code (~290 instructions each under callgrind, a
// quarter of a closed breaker's successful call). A call with no options has no scope to tell.
describe('a closed breaker call with no options', () => {
  afterEach(() => vi.restoreAllMocks());

  it('asks CallScope[Symbol.hasInstance] nothing, and still hands fn a context with a signal', async () => {
    const breaker = circuitBreaker({ policies: false, bus: createBus() });
    const asked = vi.spyOn(CallScope, Symbol.hasInstance);
    let seen: { attempt: number; signal: AbortSignal } | undefined;
    await expect(
      breaker.execute((ctx) => {
        seen = ctx;
        return Promise.resolve(1);
      }),
    ).resolves.toBe(1);
    await expect(breaker.execute(() => Promise.reject(new Error('down')))).rejects.toThrow('down');
    expect(asked).toHaveBeenCalledTimes(0);
    expect(seen?.attempt).toBe(1);
    expect(seen?.signal.aborted).toBe(false);
    expect(breaker.snapshot().window).toMatchObject({ calls: 2, successes: 1, failures: 1 });
  });

  it('still follows a scope handed down by an outer policy', async () => {
    const breaker = circuitBreaker({ policies: false, bus: createBus() });
    const outer = new CallScope(undefined, 3);
    let inner: CallScope | undefined;
    const call = breaker.execute((ctx) => {
      inner = ctx as CallScope;
      outer.abort('outer gave up');
      return Promise.resolve(1);
    }, outer);
    await expect(call).rejects.toBe('outer gave up');
    expect(inner?.attempt).toBe(3);
    expect(inner?.aborted).toBe(true);
  });
});
