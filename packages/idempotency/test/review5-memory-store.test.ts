import { ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { memoryStore } from '../src/index.js';

describe('review5: memoryStore deadlines in whole ms', () => {
  it('a running claim is never forgotten before its lease ends, for a lease under 1 ms at a fraction of a ms', async () => {
    // Claimed at 10.5 with a 0.6 ms lease: it runs until 11.1 (kept as 12, rounded up).
    const clock = new ManualClock(10.5);
    const store = memoryStore({ clock });
    const first = await store.claim('k', 'fp', 0.6);
    expect(first.status).toBe('claimed');
    await clock.advance(0.55); // 11.05: the first claim's lease still runs
    const second = await store.claim('k', 'fp', 0.6);
    // Not a fresh claim (takeover: false) beside the running one.
    expect(second.status === 'claimed' && !second.takeover).toBe(false);
    expect(second.status).toBe('inProgress');
    store.dispose();
  });

  it('leases of 1 ms and up at fractions of a ms: inProgress until the lease ends, claimable at most 1 ms after', async () => {
    for (const lease of [1, 1.25, 2, 999.9]) {
      for (const start of [0, 0.1, 0.5, 0.9, 0.999]) {
        const clock = new ManualClock(start);
        const store = memoryStore({ clock });
        expect((await store.claim('k', 'fp', lease)).status).toBe('claimed');
        await clock.advance(lease - 0.001);
        expect((await store.claim('k', 'fp', lease)).status).toBe('inProgress');
        await clock.advance(1.002);
        const after = await store.claim('k', 'fp', lease);
        expect(after.status).toBe('claimed');
        store.dispose();
      }
    }
  });
});
