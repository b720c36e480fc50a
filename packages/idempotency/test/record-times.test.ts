import type { Clock, TimerHandle } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { memoryStore } from '../src/index.js';
import { inProcess } from '../src/memory-store.js';

// A memoryStore() record's times are epoch ms. On the real clock (no fake Date or timers), its
// completedAt is dated from the last new claim's wall-clock reading and the monotonic time since,
// while that claim is under a second old (a `Date.now()` a request less on the HTTP path); past
// that, and on any other clock (these tests' own), the clock's now() is read. A wall clock
// that steps (NTP, a VM resumed) after that second shows in the completion's date.

/** A wall clock and a monotonic one, moved together by `advance`, or the wall alone by `step`. */
function twoClocks() {
  let wall = 1_700_000_000_000;
  let monotonic = 5_000.25;
  const clock: Clock = {
    now: () => wall,
    monotonic: () => monotonic,
    setTimeout: (callback, ms) => setTimeout(callback, ms).unref() as TimerHandle,
    clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
  };
  return {
    clock,
    advance(ms: number) {
      wall += ms;
      monotonic += ms;
    },
    step(ms: number) {
      wall += ms;
    },
    get wall() {
      return wall;
    },
  };
}

async function completedRecord(store: ReturnType<typeof memoryStore>, key: string) {
  const replay = await store.claim(key, 'f', 60_000);
  if (replay.status !== 'completed') throw new Error(replay.status);
  return replay.record;
}

describe('memoryStore record times', () => {
  it('a completion within a second of the last claim, on a clock of its own, is its now()', async () => {
    const c = twoClocks();
    const store = memoryStore({ clock: c.clock });
    const claimedAt = c.wall;
    const claim = await store.claim('k', 'f', 60_000);
    if (claim.status !== 'claimed') throw new Error(claim.status);
    c.advance(250.75);
    await store.complete('k', claim.token, { kind: 'value', value: 1 }, 60_000);
    const record = await completedRecord(store, 'k');
    expect(record.createdAt).toBe(claimedAt);
    // A clock of the user's own is read at completion (the shortcut is the real clock's alone:
    // perf-review-clock.test.ts): the store's clock then, a fraction included.
    expect(record.completedAt).toBe(c.wall);
    store.dispose();
  });

  it('the HTTP path (the calls without a promise) dates it the same way', async () => {
    const c = twoClocks();
    const store = memoryStore({ clock: c.clock });
    const now = inProcess(store);
    if (now === undefined) throw new Error('not in-process');
    const claimedAt = c.wall;
    const claim = now.claim('http:*:k', 'f', 60_000);
    if (claim.status !== 'claimed') throw new Error(claim.status);
    c.advance(40);
    expect(now.completeResponse('http:*:k', claim.token, 201, {}, '{}', 60_000)).toBe(true);
    const record = await completedRecord(store, 'http:*:k');
    expect(record.createdAt).toBe(claimedAt);
    expect(record.completedAt).toBe(claimedAt + 40);
    store.dispose();
  });

  it('a completion more than a second after the last claim reads the wall clock, a step of it included', async () => {
    const c = twoClocks();
    const store = memoryStore({ clock: c.clock });
    const claim = await store.claim('k', 'f', 60_000);
    if (claim.status !== 'claimed') throw new Error(claim.status);
    c.advance(1_500);
    c.step(3_600_000);
    await store.complete('k', claim.token, { kind: 'value', value: 1 }, 60_000);
    const record = await completedRecord(store, 'k');
    expect(record.completedAt).toBe(c.wall);
    store.dispose();
  });

  it('is dated from the newest claim: another key claimed since sets the reading', async () => {
    const c = twoClocks();
    const store = memoryStore({ clock: c.clock });
    const first = await store.claim('a', 'f', 60_000);
    if (first.status !== 'claimed') throw new Error(first.status);
    c.advance(900);
    // The wall clock stepped forward meanwhile: the claim of b reads it.
    c.step(60_000);
    const steppedAt = c.wall;
    const second = await store.claim('b', 'f', 60_000);
    if (second.status !== 'claimed') throw new Error(second.status);
    c.advance(300);
    // 1,200 ms after a's claim, 300 after b's: dated from b's reading, which saw the step.
    await store.complete('a', first.token, { kind: 'value', value: 1 }, 60_000);
    const a = await completedRecord(store, 'a');
    expect(a.completedAt).toBe(steppedAt + 300);
    expect(a.completedAt).toBe(c.wall);
    store.dispose();
  });

  it('a takeover (no new record) sets no reading: a completion long after the first claim reads the clock', async () => {
    const c = twoClocks();
    const store = memoryStore({ clock: c.clock });
    const first = await store.claim('k', 'f', 1_000);
    if (first.status !== 'claimed') throw new Error(first.status);
    c.advance(1_200);
    const takeover = await store.claim('k', 'f', 60_000);
    if (takeover.status !== 'claimed' || !takeover.takeover) throw new Error(takeover.status);
    c.advance(100);
    c.step(7);
    await store.complete('k', takeover.token, { kind: 'value', value: 1 }, 60_000);
    const record = await completedRecord(store, 'k');
    expect(record.completedAt).toBe(c.wall);
    store.dispose();
  });
});
