import { afterEach, describe, expect, it, vi } from 'vitest';
import { memoryStore } from '../src/index.js';
import type { ClaimResult } from '../src/store.js';

// #19: with the real clock, memoryStore() dates its records from its last Date.now() reading
// moved on by the monotonic time since, read again each second (Date.now() is a call into V8's
// runtime, twice a claimed request). What a user sees must still be the wall clock: a record's
// createdAt and completedAt within the Date.now() readings around its claim and completion; under
// fake timers exactly the faked Date's, through jumps either way; a step of the wall clock shown
// within a second.

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

function token(result: ClaimResult): string {
  if (result.status !== 'claimed') throw new Error(result.status);
  return result.token;
}

async function dates(store: ReturnType<typeof memoryStore>, key: string) {
  const found = await store.claim(key, 'fp', 60_000);
  if (found.status !== 'completed') throw new Error(found.status);
  return { createdAt: found.record.createdAt, completedAt: found.record.completedAt };
}

describe('memoryStore record dates on the real clock', () => {
  it('lie between the Date.now() readings around the claim and the completion', async () => {
    const store = memoryStore();
    for (let i = 0; i < 300; i++) {
      const before = Date.now();
      const claimed = token(await store.claim(`k${i}`, 'fp', 60_000));
      const between = Date.now();
      if (i % 3 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
      const beforeEnd = Date.now();
      await store.complete(`k${i}`, claimed, { kind: 'value', value: i }, 60_000);
      const after = Date.now();
      const { createdAt, completedAt } = await dates(store, `k${i}`);
      // A reading of the last one moved on by whole ms: up to 1 ms behind the clock, never ahead.
      expect(createdAt).toBeGreaterThanOrEqual(before - 1);
      expect(createdAt).toBeLessThanOrEqual(between);
      expect(completedAt).toBeGreaterThanOrEqual(beforeEnd - 1);
      expect(completedAt).toBeLessThanOrEqual(after);
      expect(Number.isInteger(createdAt) && Number.isInteger(completedAt)).toBe(true);
    }
    store.dispose();
  });

  it('are never ahead of the clock when the wall clock is read long after the monotonic one', async () => {
    // The store reads its monotonic line, then the wall clock: a pause between the two (here
    // Date.now() itself takes 20 ms, as a preemption would) moved the dates of the records after
    // it, claimed within the next second, that far ahead of the clock.
    const store = memoryStore();
    const realNow = Date.now;
    vi.spyOn(Date, 'now').mockImplementationOnce(() => {
      const until = performance.now() + 20;
      while (performance.now() < until);
      return realNow();
    });
    token(await store.claim('paused', 'fp', 60_000));
    for (let i = 0; i < 5; i++) {
      const claimed = token(await store.claim(`p${i}`, 'fp', 60_000));
      const after = Date.now();
      await store.complete(`p${i}`, claimed, { kind: 'value', value: i }, 60_000);
      const { createdAt } = await dates(store, `p${i}`);
      expect(createdAt).toBeLessThanOrEqual(after);
      expect(createdAt).toBeGreaterThanOrEqual(after - 2);
    }
    store.dispose();
  });

  it('are exactly the faked Date under fake timers, through jumps forward and back', async () => {
    vi.useFakeTimers();
    const store = memoryStore();
    const at = [1_765_000_000_000, 1_765_000_000_400, 1_765_003_600_000, 1_764_990_000_000, 1_764_990_000_001];
    for (const [i, now] of at.entries()) {
      vi.setSystemTime(now);
      const claimed = token(await store.claim(`f${i}`, 'fp', 60_000));
      vi.advanceTimersByTime(250);
      await store.complete(`f${i}`, claimed, { kind: 'aborted' }, 60_000);
      expect(await dates(store, `f${i}`)).toEqual({ createdAt: now, completedAt: now + 250 });
    }
    store.dispose();
  });

  it('show a step of the wall clock within a second', async () => {
    const store = memoryStore();
    token(await store.claim('before', 'fp', 60_000));
    const real = Date.now.bind(Date);
    const step = 3_600_000;
    vi.spyOn(Date, 'now').mockImplementation(() => real() + step);
    // A second later on the monotonic line, the store reads the clock again.
    await new Promise((resolve) => setTimeout(resolve, 1_050));
    const before = Date.now();
    const claimed = token(await store.claim('after', 'fp', 60_000));
    await store.complete('after', claimed, { kind: 'value', value: 1 }, 60_000);
    const { createdAt } = await dates(store, 'after');
    expect(createdAt).toBeGreaterThanOrEqual(before - 1);
    expect(createdAt).toBeLessThanOrEqual(Date.now());
    store.dispose();
  });
});
