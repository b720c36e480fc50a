import { type Bus, hasCode, ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { recordWarnings } from '../../../test/support/warnings.js';
import { circuitBreaker } from '../src/index.js';

/** A bus of the user's own (an adapter to their logger) whose emit, or wants, throws. */
function throwingBus(where: 'emit' | 'wants'): Bus {
  return {
    on: () => () => {},
    once: () => () => {},
    wants: () => {
      if (where === 'wants') throw new Error('bus down');
      return true;
    },
    emit: () => {
      throw new Error('bus down');
    },
  };
}

const codes = recordWarnings();

describe('circuitBreaker() on a bus of the user’s own that throws (review)', () => {
  for (const where of ['emit', 'wants'] as const) {
    it(`its ${where} throwing breaks no call: successes resolve, failures open it, a probe closes it; told once`, async () => {
      const clock = new ManualClock();
      const breaker = circuitBreaker({
        bus: throwingBus(where),
        clock,
        policies: false,
        consecutiveFailures: 2,
        openFor: 1_000,
      });
      const outcome = (p: Promise<unknown>) =>
        p.then(
          (v) => v,
          (e: unknown) => (hasCode(e, 'E_CIRCUIT_OPEN') ? 'refused' : (e as Error).message),
        );
      const seen = [
        await outcome(breaker.execute(() => 'ok')),
        await outcome(breaker.execute(() => Promise.reject(new Error('down')))),
        await outcome(breaker.execute(() => Promise.reject(new Error('down')))),
        breaker.snapshot().state,
        await outcome(breaker.execute(() => 'not run')),
      ];
      await clock.advance(1_000);
      seen.push(await outcome(breaker.execute(() => 'probe')), breaker.snapshot().state);
      await new Promise((resolve) => setImmediate(resolve));
      expect(seen).toEqual(['ok', 'down', 'down', 'open', 'refused', 'probe', 'closed']);
      expect(codes.filter((w) => w.code === 'HOLDFAST_BUS_ERROR')).toHaveLength(1);
    });
  }
});
