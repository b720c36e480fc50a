import { BrokenCircuitError, type Clock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { circuitBreaker } from '../src/index.js';

// The breaker runs on the monotonic line (fractional ms) and shows retryAt in epoch ms read by
// Date.now(), which is whole ms, truncated. A caller that waits until Date.now() reaches
// retryAt must find the breaker's own time past it too, or it is refused with a retryAt that
// is already now, and spins.

/** A clock as realClock is: monotonic() fractional, now() the epoch truncated to whole ms. */
function fractionalClock(start: number) {
  const base = 1_800_000_000_000;
  let t = start;
  const clock: Clock = {
    now: () => Math.floor(base + t),
    monotonic: () => t,
    setTimeout: () => undefined,
    clearTimeout: () => {},
  };
  return { clock, at: (ms: number) => void (t = ms) };
}

async function refusal(promise: Promise<unknown>): Promise<BrokenCircuitError> {
  const outcome = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(outcome instanceof BrokenCircuitError)) throw new Error(`expected a refusal, got ${String(outcome)}`);
  return outcome;
}

describe('retryAt shown in epoch ms, the breaker on fractional monotonic time', () => {
  it.each([0, 0.1, 0.4, 0.6, 0.9])('opened at +%f ms: a caller back at retryAt is let through', async (fraction) => {
    // Back when Date.now() first shows retryAt, at each eighth of that ms: through, never refused.
    for (let sub = 0; sub < 1; sub += 0.125) {
      const { clock, at } = fractionalClock(fraction);
      const breaker = circuitBreaker({ name: 'shown', clock, minimumCalls: 1, openFor: 300, policies: false });
      await breaker.execute(() => Promise.reject(new Error('down'))).catch(() => {});
      expect(breaker.state).toBe('open');
      at(fraction + 10.5);
      const refused = await refusal(breaker.execute(() => 'ok'));
      const retryAt = refused.retryAt as number;
      expect(retryAt).toBeGreaterThan(clock.now());
      at(retryAt - 1_800_000_000_000 + sub);
      expect(clock.now()).toBe(retryAt);
      await expect(breaker.execute(() => 'ok')).resolves.toBe('ok');
    }
  });
});
