import { ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { slidingWindow, tokenBucket } from '../src/index.js';

// Issue #17: a give-back that comes late (a bulkhead's queue timed the request out) must not give
// back a unit the clock has already given back: limit 1 a second, burst 1, A allowed at 0, B at 1,
// A given back at 1.5: B and a C at 1.5 would be 2 calls within 0.5 s.
const hook = (undos: (() => void)[]) => ({
  [Symbol.for('holdfast.limit.taken')]: (undo: () => void) => undos.push(undo),
});

describe('an in-process give-back that comes late', () => {
  it('tokenBucket: a unit the refill already replaced is not given again (B and C never within one interval)', async () => {
    const clock = new ManualClock(10_000);
    const limiter = tokenBucket({ limit: 1, interval: 1_000, clock, policies: false });
    const undos: (() => void)[] = [];
    await limiter.execute(() => 'A', { key: 'k', ...hook(undos) } as never);
    await clock.advance(1_000);
    expect(limiter.take('k').allowed).toBe(true); // B
    await clock.advance(500);
    undos[0]?.(); // A's give-back, late
    expect(limiter.take('k').allowed).toBe(false); // C: B was 500 ms ago
  });

  it('tokenBucket: a give-back before the refill gives back what the refill had not yet replaced', async () => {
    const clock = new ManualClock(10_000);
    const limiter = tokenBucket({ limit: 1, interval: 1_000, burst: 2, clock, policies: false });
    const undos: (() => void)[] = [];
    await limiter.execute(() => 'A', { key: 'k', ...hook(undos) } as never); // 1 left
    expect(limiter.take('k').allowed).toBe(true); // B: 0 left, full at 2,000
    await clock.advance(400); // 0.4 refilled
    undos[0]?.(); // A's unit back: 1.4
    expect(limiter.take('k').allowed).toBe(true);
    expect(limiter.take('k').allowed).toBe(false);
    await clock.advance(600);
    expect(limiter.take('k').allowed).toBe(true);
  });

  it('slidingWindow: a late give-back takes A out of the window it was counted in, nothing more', async () => {
    const clock = new ManualClock(10_000);
    const limiter = slidingWindow({ limit: 1, interval: 1_000, clock, policies: false });
    const undos: (() => void)[] = [];
    await limiter.execute(() => 'A', { key: 'k', ...hook(undos) } as never); // window 10
    await clock.advance(2_000);
    expect(limiter.take('k').allowed).toBe(true); // B, window 12
    await clock.advance(500);
    undos[0]?.(); // A's window is gone: nothing to give
    expect(limiter.take('k').allowed).toBe(false);
  });
});
