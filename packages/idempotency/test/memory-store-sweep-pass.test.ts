/**
 * memoryStore(): the pass that drops expired records before an eviction, next to the periodic
 * sweep, and what it costs a claim (counted, not timed).
 */
import { ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { type MemoryStore, memoryStore } from '../src/index.js';

async function completeValue(store: MemoryStore, key: string, ttlMs: number, leaseMs = 1_000): Promise<void> {
  const claim = await store.claim(key, 'fp', leaseMs);
  if (claim.status !== 'claimed') throw new Error(`${key}: ${claim.status}`);
  expect(await store.complete(key, claim.token, { kind: 'value', value: key }, ttlMs)).toBe(true);
}

describe('memoryStore(): the periodic sweep and the pass before an eviction', () => {
  it('a sweep that found nothing expired does not stop the next eviction from dropping expired records first', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const store = memoryStore({ maxEntries: 64, clock, sweepInterval: 1_000 });
    await completeValue(store, 'live', 3_600_000); // least recently used of all
    for (let i = 0; i < 63; i++) await completeValue(store, `short-${i}`, 1_500);
    await clock.advance(1_000); // the sweep runs: nothing has expired yet
    await clock.advance(600); // every short-lived record has expired, not swept yet
    expect(store.size).toBe(64);
    expect((await store.claim('new', 'fp', 1_000)).status).toBe('claimed');
    expect((await store.claim('live', 'fp', 1_000)).status).toBe('completed');
    store.dispose();
  });
});

describe('memoryStore(): a spray of keys on a full store', () => {
  it('reads O(1) records a claim, amortised, while every claim may have left an expired one', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const size = 1_024;
    const store = memoryStore({ maxEntries: size, clock, sweepInterval: 500 });
    // Records read by passes: each pass walks the store's Map.
    let read = 0;
    const values = Map.prototype.values;
    Map.prototype.values = function (this: Map<unknown, unknown>) {
      read += this.size;
      return values.call(this);
    };
    const claims = 20_000;
    try {
      for (let i = 0; i < claims; i++) {
        // A lease of 1 ms: the bound on the next expiry is always stale (the record completes
        // with a longer ttl); one record in 8 has a ttl short enough to expire within the run.
        await completeValue(store, `spray-${i}`, i % 8 === 0 ? 5 : 60_000, 1);
        await clock.advance(1);
      }
    } finally {
      Map.prototype.values = values;
    }
    expect(store.size).toBeLessThanOrEqual(size);
    // A pass per size/16 records added or freed by the last pass (a record is freed at most once
    // after it was added): at most 32 records read a claim, plus the periodic sweeps (one pass of
    // the store per 500 claims here).
    expect(read).toBeGreaterThan(0);
    expect(read).toBeLessThan(claims * 32 + (claims / 500 + 1) * size);
    store.dispose();
  });
});
