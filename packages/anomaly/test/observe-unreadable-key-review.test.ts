/**
 * Review: observe() given a key that cannot be read (a Proxy whose traps throw, a revoked one)
 * throws the HoldfastConfigError it documents, not whatever reading the key threw. Naming the
 * value (not its type) read it: a revoked Proxy gave a bare TypeError from inside the error's
 * own message, a trapping one the trap's error.
 */
import { createBus, HoldfastConfigError, ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { anomalyWatch } from '../src/index.js';

describe('anomalyWatch.observe() given a key that cannot be read (review)', () => {
  it('throws HoldfastConfigError (E_CONFIG) naming the key, whatever reading it throws', () => {
    const w = anomalyWatch({ bus: createBus(), clock: new ManualClock(0), interval: 1000, name: 'w' });
    const revocable = Proxy.revocable({}, {});
    revocable.revoke();
    const trapping = new Proxy(
      {},
      {
        get() {
          throw new Error('trap read');
        },
      },
    );
    for (const key of [revocable.proxy, trapping]) {
      let thrown: unknown;
      try {
        w.observe(key as unknown as string, 10, 'success');
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(HoldfastConfigError);
      expect((thrown as Error).message).toMatch(/^w\.observe: key must be a string \(got /);
    }
    expect(w.snapshot().keys).toEqual([]);
    w.dispose();
  });
});
