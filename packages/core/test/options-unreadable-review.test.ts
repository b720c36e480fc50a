import { describe, expect, it } from 'vitest';
import { fallback, pipeline, timeout } from '../src/index.js';

// execute() returns a promise, and a signal that cannot be read fails the call (context.ts): but
// options whose own `signal` getter throws (a getter over request state that is gone) made
// execute() throw where it was called, past the caller's .catch(), for every policy.
describe('execute() given options that cannot be read (review)', () => {
  it('rejects naming the signal, never throws at the call, and never runs the function', async () => {
    const throwing = {
      get signal(): AbortSignal {
        throw new Error('request state gone');
      },
    };
    const policies = [
      ['timeout', timeout(1000)],
      ['pipeline', pipeline(timeout(1000))],
      ['fallback', fallback({ to: () => 'fallback' })],
    ] as const;
    for (const [name, policy] of policies) {
      let runs = 0;
      let call: Promise<unknown> | undefined;
      expect(() => {
        call = policy.execute(() => ++runs, throwing as never);
      }, name).not.toThrow();
      await expect(call, name).rejects.toThrow(/signal must be an AbortSignal \(reading it threw\)/);
      expect(runs, name).toBe(0);
    }
  });
});
