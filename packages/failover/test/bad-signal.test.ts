import { createBus } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { failover } from '../src/index.js';

// Every other policy refuses a signal that is no AbortSignal before it runs anything, and turns a
// polyfill's reasonless abort into an AbortError. failover() read the signal itself: it ran the
// call once with 'abort' as its signal, and rejected with undefined for an aborted polyfill signal.
const set = () => failover({ bus: createBus(), policies: false, endpoints: ['a', 'b'] });

/** The abort-controller package's signal: no `reason`. */
const polyfill = (aborted: boolean) => {
  const listeners = new Set<() => void>();
  return {
    aborted,
    onabort: null,
    addEventListener: (_: string, l: () => void) => listeners.add(l),
    removeEventListener: (_: string, l: () => void) => listeners.delete(l),
    abort() {
      this.aborted = true;
      for (const l of listeners) l();
    },
  };
};

describe('failover().execute() with a signal that is no AbortSignal', () => {
  it.each([
    ['a string', 'abort'],
    ['an object', {}],
    ['a number', 5],
  ])('%s: rejects with a TypeError, never runs', async (_, signal) => {
    const s = set();
    let runs = 0;
    await expect(s.execute(() => runs++, { signal: signal as never })).rejects.toThrow(/signal must be an AbortSignal/);
    expect(runs).toBe(0);
    s.dispose();
  });

  it('null is no signal, as fetch reads it', async () => {
    const s = set();
    await expect(s.execute(() => 'ok', { signal: null as never })).resolves.toBe('ok');
    s.dispose();
  });

  it('an aborted polyfill signal: rejects with an AbortError, never runs', async () => {
    const s = set();
    let runs = 0;
    const error = await s.execute(() => runs++, { signal: polyfill(true) as never }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).name).toBe('AbortError');
    expect(runs).toBe(0);
    s.dispose();
  });
});
