/**
 * memoryStore() when full: expired records go before any live one. A live completed record (a
 * value, or an `aborted` verdict) forgotten before its ttl lets a repeat run the effect again;
 * one whose ttl ran out is forgotten already, whatever its place in the recency list.
 */
import { createBus, ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { type IdempotentContext, idempotent, type MemoryStore, memoryStore } from '../src/index.js';

const tick = () => new Promise((resolve) => setImmediate(resolve));

async function completeValue(store: MemoryStore, key: string, ttlMs: number): Promise<void> {
  const claim = await store.claim(key, 'fp', 1_000);
  if (claim.status !== 'claimed') throw new Error(`${key}: ${claim.status}`);
  expect(await store.complete(key, claim.token, { kind: 'value', value: key }, ttlMs)).toBe(true);
}

describe('memoryStore(): expired records are evicted before live ones', () => {
  it('maxEntries: a live completed record outlives an expired one used after it', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const store = memoryStore({ maxEntries: 2, clock });
    await completeValue(store, 'live', 60_000);
    await completeValue(store, 'short', 1_000);
    await clock.advance(2_000); // `short` expired, not swept yet; `live` is the least recently used
    expect((await store.claim('new', 'fp', 1_000)).status).toBe('claimed');
    const live = await store.claim('live', 'fp', 1_000);
    expect(live.status).toBe('completed');
    expect(store.size).toBe(2);
    store.dispose();
  });

  it('maxEntries: an `aborted` verdict is not forgotten while an expired record is there', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const store = memoryStore({ maxEntries: 2, clock });
    let charges = 0;
    const charge = idempotent(
      (_: string, ctx: IdempotentContext) =>
        new Promise<string>((resolve, reject) => {
          if (++charges > 1) return resolve('charged again');
          ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true });
        }),
      { store, key: (id) => id, bus: createBus(), clock, ttlMs: 3_600_000, namespace: 'charge' },
    );
    const ping = idempotent(async (id: string) => `pong ${id}`, {
      store,
      key: (id) => id,
      bus: createBus(),
      clock,
      ttlMs: 1_000,
      namespace: 'ping',
    });
    const controller = new AbortController();
    const call = charge('order-1', { signal: controller.signal });
    await tick();
    controller.abort(new Error('client left'));
    await expect(call).rejects.toThrow('client left');
    await tick();
    expect(await ping('p-1')).toBe('pong p-1');
    await clock.advance(2_000); // `p-1` expired; the verdict has an hour left
    expect(await ping('p-2')).toBe('pong p-2');
    await expect(charge('order-1')).rejects.toMatchObject({ code: 'E_IDEMPOTENCY_ABORTED' });
    expect(charges).toBe(1);
    store.dispose();
  });

  it('maxBytes: expired records go before live completed ones', async () => {
    // The bytes of three such records, measured on a store of their own.
    const probe = memoryStore();
    await completeValue(probe, 'live', 60_000);
    await completeValue(probe, 'exp1', 1_000);
    const two = probe.bytes;
    await probe.claim('new1', 'fp', 1_000);
    const three = probe.bytes;
    probe.dispose();

    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const store = memoryStore({ maxBytes: three - 1, clock });
    await completeValue(store, 'live', 60_000);
    await completeValue(store, 'exp1', 1_000);
    expect(store.bytes).toBe(two);
    await clock.advance(2_000);
    expect((await store.claim('new1', 'fp', 1_000)).status).toBe('claimed');
    expect((await store.claim('live', 'fp', 1_000)).status).toBe('completed');
    store.dispose();
  });

  it('with nothing expired, the least recently used completed record still goes, as documented', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const store = memoryStore({ maxEntries: 2, clock });
    await completeValue(store, 'a', 60_000);
    await completeValue(store, 'b', 60_000);
    await clock.advance(2_000);
    expect((await store.claim('c', 'fp', 1_000)).status).toBe('claimed');
    expect((await store.claim('a', 'fp', 1_000)).status).toBe('claimed');
    store.dispose();
  });

  it('a large store: each time records expire, they go first, over many rounds', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const store = memoryStore({ maxEntries: 1_000, clock, sweepInterval: 3_600_000 });
    // 100 long-lived records, least recently used of all.
    for (let i = 0; i < 100; i++) await completeValue(store, `live-${i}`, 3_600_000);
    let n = 0;
    for (let round = 0; round < 5; round++) {
      // Fill the rest with short-lived ones, let them expire, then fill again with new keys.
      while (store.size < 1_000) await completeValue(store, `short-${n++}`, 1_000);
      await clock.advance(2_000);
      for (let i = 0; i < 900; i++) await completeValue(store, `short-${n++}`, 1_000);
      await clock.advance(2_000);
    }
    for (let i = 0; i < 100; i++) {
      expect((await store.claim(`live-${i}`, 'fp', 1_000)).status).toBe('completed');
    }
    store.dispose();
  });
});
