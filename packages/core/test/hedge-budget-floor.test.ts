import { describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { hedge } from '../src/hedge.js';

/**
 * The hedge budget's floor (`minPerSecond` × window) stands in for the ratio when the calls earn
 * less; it is not added to it. Added, the default budget (10% of calls) let 100 slow calls send 20
 * hedges, and `{ ratio: 0.5 }` hedged 12 calls of 12 (a new user's run of the fetch README's
 * hedging example): twice the share the docs promise, on every quiet service.
 */
async function hedgesOf(calls: number, budget?: { ratio?: number; minPerSecond?: number }) {
  const clock = new ManualClock();
  const h = hedge({ delay: 10, safe: true, clock, policies: false, ...(budget ? { budget } : {}) });
  const slow = () => new Promise<void>((resolve) => clock.setTimeout(resolve, 100));
  const all = Promise.all(Array.from({ length: calls }, () => h.execute(slow)));
  await clock.advance(200);
  await all;
  const { hedges } = h.snapshot();
  h.dispose();
  return hedges;
}

describe('hedge budget: the floor stands in for the ratio, never on top of it', () => {
  it('default budget (ratio 0.1, 1 a second over 10 s): 100 slow calls at once send 10 hedges, not 20', async () => {
    expect(await hedgesOf(100)).toBe(10);
  });
  it('a quiet service still hedges up to the floor: 12 calls, 10 hedges', async () => {
    expect(await hedgesOf(12)).toBe(10);
  });
  it('ratio 0.5: 100 calls send 50 hedges (not 60); 12 calls send 10 (not 12)', async () => {
    expect(await hedgesOf(100, { ratio: 0.5 })).toBe(50);
    expect(await hedgesOf(12, { ratio: 0.5 })).toBe(10);
  });
  it('ratio 0.1 with no floor: 100 calls, 10 hedges', async () => {
    expect(await hedgesOf(100, { ratio: 0.1, minPerSecond: 0 })).toBe(10);
  });
});
