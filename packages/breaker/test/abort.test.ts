import { createBus, pipeline, timeout } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { circuitBreaker } from '../src/index.js';

describe('circuitBreaker() and a signal the caller already aborted', () => {
  it('does not run fn, rejects with the reason, and counts nothing', async () => {
    const breaker = circuitBreaker({ policies: false, bus: createBus(), consecutiveFailures: 1 });
    const controller = new AbortController();
    const reason = new Error('caller left');
    controller.abort(reason);
    let runs = 0;
    const fn = async () => {
      runs++;
      return 'ran';
    };
    await expect(breaker.execute(fn, { signal: controller.signal })).rejects.toBe(reason);
    // From an outer policy's context too: the scope it hands down is already aborted.
    const outer = timeout(1_000, { bus: createBus() });
    const inner = new AbortController();
    const call = outer.execute(
      (ctx) => {
        inner.abort('gone');
        return breaker.execute(fn, ctx);
      },
      { signal: inner.signal },
    );
    await expect(call).rejects.toBe('gone');
    await expect(pipeline(breaker).execute(fn, { signal: controller.signal })).rejects.toBe(reason);
    expect(runs).toBe(0);
    expect(breaker.state).toBe('closed');
    expect(breaker.snapshot().window.calls).toBe(0);
  });
});
