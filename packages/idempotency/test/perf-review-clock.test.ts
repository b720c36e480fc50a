import { type Clock, ManualClock, realClock, type TimerHandle } from '@holdfast/core';
import Fastify from 'fastify';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { HOUR, stepWallClock } from '../../../test/support/wall-clock.js';
import { idempotency } from '../src/fastify.js';
import { fingerprintOf } from '../src/http/fingerprint.js';
import { type IdempotencyStore, memoryStore } from '../src/index.js';

// Review of aa27a3c7's `#wallClock`: a memoryStore() record's completedAt was derived from the last
// new claim's Date reading plus the monotonic time since. The store's contract (store.ts) is
// "when the operation finished (epoch ms, the store's clock)": completedAt is what clock.now()
// said at completion. That held before for any clock; here it is checked where the wall clock
// and the monotonic one do not move together: a frozen Date (vi.setSystemTime without fake
// timers, fake timers that fake Date alone), a user's clock, a fractional ManualClock. (The
// shortcut was taken out after this review: it saved ~190 instructions a request, within what
// two counts of the same code differ by; completedAt reads clock.now() at completion again.)

afterEach(() => {
  vi.useRealTimers();
});

const realSleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function completedAfter(store: IdempotencyStore, key: string, wait: () => Promise<unknown>) {
  const claim = await store.claim(key, 'f', 60_000);
  if (claim.status !== 'claimed') throw new Error(claim.status);
  await wait();
  const before = Date.now();
  await store.complete(key, claim.token, { kind: 'value', value: 1 }, 60_000);
  const after = Date.now();
  const replay = await store.claim(key, 'f', 60_000);
  if (replay.status !== 'completed') throw new Error(replay.status);
  return { record: replay.record, before, after };
}

describe('memoryStore completedAt is the clock at completion', () => {
  it('a frozen Date (vi.setSystemTime, timers real): completedAt is that date, not later', async () => {
    const frozen = new Date('2026-01-01T00:00:00.000Z').getTime();
    vi.setSystemTime(frozen);
    const store = memoryStore();
    const { record, after } = await completedAfter(store, 'k', () => realSleep(25));
    expect(record.createdAt).toBe(frozen);
    // Never later than the clock read just after the completion.
    expect(record.completedAt).toBeLessThanOrEqual(after);
    expect(record.completedAt).toBe(frozen);
    store.dispose();
  });

  it("fake timers that fake Date alone (toFake: ['Date']): completedAt is the fake date", async () => {
    vi.useFakeTimers({ toFake: ['Date'], now: 1_800_000_000_000 });
    const store = memoryStore();
    const { record, after } = await completedAfter(store, 'k', () => realSleep(25));
    expect(record.completedAt).toBeLessThanOrEqual(after);
    expect(record.completedAt).toBe(1_800_000_000_000);
    store.dispose();
  });

  it('vi fake timers (default toFake) moved by advanceTimersByTime: completedAt is Date.now()', async () => {
    vi.useFakeTimers({ now: 1_800_000_000_000 });
    const store = memoryStore();
    const { record, before, after } = await completedAfter(store, 'k', async () => vi.advanceTimersByTime(300));
    expect(record.completedAt).toBeGreaterThanOrEqual(before);
    expect(record.completedAt).toBeLessThanOrEqual(after);
    store.dispose();
  });

  it("fake timers that leave Date real (toFake: ['setTimeout']), advanced: completedAt is the real Date.now()", async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const store = memoryStore();
    const { record, before, after } = await completedAfter(store, 'k', async () => vi.advanceTimersByTime(500));
    expect(record.completedAt).toBeGreaterThanOrEqual(before);
    expect(record.completedAt).toBeLessThanOrEqual(after);
    store.dispose();
  });

  it('vi fake timers moved by setSystemTime within the second: completedAt is Date.now()', async () => {
    vi.useFakeTimers({ now: 1_800_000_000_000 });
    const store = memoryStore();
    const { record, after } = await completedAfter(store, 'k', async () => vi.setSystemTime(1_800_000_000_400));
    expect(record.completedAt).toBe(after);
    const back = await completedAfter(store, 'k2', async () => vi.setSystemTime(1_799_999_999_000));
    expect(back.record.completedAt).toBe(back.after);
    store.dispose();
  });

  it("a user's clock whose now() is fixed and monotonic() real: completedAt is its now()", async () => {
    const fixed = 1_750_000_000_000;
    const clock: Clock = {
      now: () => fixed,
      monotonic: () => (realClock.monotonic as () => number)(),
      setTimeout: (callback, ms) => setTimeout(callback, ms).unref() as TimerHandle,
      clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
    };
    const store = memoryStore({ clock });
    const { record } = await completedAfter(store, 'k', () => realSleep(25));
    expect(record.completedAt).toBe(fixed);
    store.dispose();
  });

  it('a ManualClock advanced by a fraction: completedAt is its now()', async () => {
    const clock = new ManualClock(1_700_000_000_000);
    const store = memoryStore({ clock });
    const { record } = await completedAfter(store, 'k', async () => clock.advance(0.5));
    expect(record.completedAt).toBe(clock.now());
    store.dispose();
  });

  it('a clock without monotonic(): completedAt is its now()', async () => {
    let wall = 1_700_000_000_000;
    const clock: Clock = {
      now: () => wall,
      setTimeout: (callback, ms) => setTimeout(callback, ms).unref() as TimerHandle,
      clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
    };
    const store = memoryStore({ clock });
    const { record } = await completedAfter(store, 'k', async () => {
      wall += 250.5;
    });
    expect(record.completedAt).toBe(wall);
    store.dispose();
  });

  it('the real clock: createdAt <= completedAt <= Date.now() after, for many keys', async () => {
    const store = memoryStore();
    for (let i = 0; i < 200; i++) {
      const { record, before, after } = await completedAfter(store, `k${i}`, async () => {});
      expect(record.createdAt).toBeLessThanOrEqual(record.completedAt);
      expect(record.completedAt).toBeGreaterThanOrEqual(before - 1);
      expect(record.completedAt).toBeLessThanOrEqual(after);
    }
    store.dispose();
  });

  it('a wall-clock step forward between claim and completion (stepWallClock): not dated before the claim', async () => {
    const store = memoryStore();
    const claim = await store.claim('k', 'f', 60_000);
    if (claim.status !== 'claimed') throw new Error(claim.status);
    stepWallClock(HOUR);
    await store.complete('k', claim.token, { kind: 'value', value: 1 }, 60_000);
    const after = Date.now();
    const replay = await store.claim('k', 'f', 60_000);
    if (replay.status !== 'completed') throw new Error(replay.status);
    expect(replay.record.completedAt).toBeGreaterThanOrEqual(replay.record.createdAt);
    expect(replay.record.completedAt).toBeLessThanOrEqual(after);
    store.dispose();
  });
});

describe('through the Fastify plugin, a frozen Date', () => {
  it('the record a retry finds was completed at the frozen date', async () => {
    const frozen = new Date('2026-03-01T12:00:00.000Z').getTime();
    vi.setSystemTime(frozen);
    const store = memoryStore();
    const app = Fastify();
    let runs = 0;
    await app.register(idempotency, { store, scope: 'global' });
    app.post('/orders', async () => {
      runs++;
      await realSleep(20);
      return { id: runs };
    });
    try {
      const send = () =>
        app.inject({
          method: 'POST',
          url: '/orders',
          headers: { 'idempotency-key': 'order-1', 'content-type': 'application/json' },
          payload: { n: 1 },
        });
      const first = await send();
      expect(first.statusCode).toBe(200);
      const second = await send();
      expect(second.json()).toEqual({ id: 1 });
      expect(runs).toBe(1);
      // The record as the store hands it out (claimed again with the request's fingerprint).
      const fingerprint = fingerprintOf('POST', '/orders', 'application/json', undefined, Buffer.from('{"n":1}'), []);
      const found = await store.claim('http:*:order-1', fingerprint, 1_000);
      if (found.status !== 'completed') throw new Error(found.status);
      expect(found.record.createdAt).toBe(frozen);
      expect(found.record.completedAt).toBe(frozen);
    } finally {
      await app.close();
      store.dispose();
    }
  });
});
