import { BrokenCircuitError, type Clock, realClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { circuitBreaker } from '../src/index.js';

/**
 * The real clock's two lines: Date.now() is whole ms (truncated), the monotonic line fractional.
 * The retryAt shown for one open period is ceil(wall + (t - now)) + 1, which flips between two
 * adjacent ms as the lines' phases move: here the monotonic line moves 0.3 ms per read.
 */
function twoLineClock(): Clock {
  let mono = 0;
  return {
    ...realClock,
    now: () => 1_700_000_000_000 + Math.floor(mono),
    monotonic: () => {
      mono += 0.3;
      return mono;
    },
  };
}

describe('refusals while open', () => {
  it('whose retryAt flips between two adjacent ms share one prototype, not one per flip', async () => {
    const breaker = circuitBreaker({ clock: twoLineClock(), openFor: 3_600_000, policies: false });
    breaker.open();
    const errors: BrokenCircuitError[] = [];
    for (let i = 0; i < 100; i++) {
      errors.push(await breaker.execute<never>(() => Promise.reject()).catch((e: BrokenCircuitError) => e));
    }
    const retryAts = new Set(errors.map((e) => e.retryAt));
    expect(retryAts.size).toBe(2); // the flip this is about happens
    // Each distinct prototype is a new shape for V8 to set up: there were once one per flip (about
    // two a ms under constant refusal), then two templates per open period; now one for all.
    expect(new Set(errors.map((e) => Object.getPrototypeOf(e))).size).toBe(1);
    const other = circuitBreaker({ name: 'other', clock: twoLineClock(), openFor: 1_000, policies: false });
    other.open();
    const theirs = await other.execute<never>(() => Promise.reject()).catch((e: BrokenCircuitError) => e);
    expect(Object.getPrototypeOf(theirs)).toBe(Object.getPrototypeOf(errors[0]));
    expect(theirs.message).toBe(`other: circuit is open until ${new Date(theirs.retryAt as number).toISOString()}`);
    for (const e of errors) {
      expect(e).toBeInstanceOf(BrokenCircuitError);
      expect(e.message).toBe(`${breaker.name}: circuit is open until ${new Date(e.retryAt as number).toISOString()}`);
      expect(e.code).toBe('E_CIRCUIT_OPEN');
    }
  });
});
