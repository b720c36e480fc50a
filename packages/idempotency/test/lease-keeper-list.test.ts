import { ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { memoryStore } from '../src/index.js';
import { type HeldLease, LeaseKeeper } from '../src/lease.js';

// The keeper links its leases through themselves (no Set entry per run). A lease dropped while a
// tick visits the others (an event listener that settles another run) must not end the tick early.
class Lease implements HeldLease {
  older: HeldLease | undefined = undefined;
  newer: HeldLease | undefined = undefined;
  held = false;
  losses = 0;
  onLost: () => void = () => {};
  constructor(
    readonly stored: string,
    readonly token: string,
    readonly since: number,
  ) {}
  lost(): void {
    this.losses++;
    this.onLost();
  }
  async cap(): Promise<boolean> {
    return true;
  }
  failed(): void {}
}

describe('LeaseKeeper', () => {
  it('renews every lease still held when one lost drops another during the tick', async () => {
    const clock = new ManualClock();
    const store = memoryStore({ clock });
    const leases: Lease[] = [];
    for (const key of ['a', 'b', 'c', 'd']) {
      const claim = await store.claim(key, 'f', 1_500);
      if (claim.status !== 'claimed') throw new Error(claim.status);
      // 'a' holds a token the store does not know: its renewal finds it lost.
      leases.push(new Lease(key, key === 'a' ? 'stale' : claim.token, 0));
    }
    const keeper = new LeaseKeeper(store, clock, () => clock.now(), 3_000, 60_000, 'test');
    const [a, b, c, d] = leases as [Lease, Lease, Lease, Lease];
    for (const lease of leases) keeper.hold(lease);
    a.onLost = () => keeper.drop(b);
    // The first tick (at 1 s) renews for 3 s; at 1.6 s a lease it missed has run out.
    await clock.advance(1_000);
    await clock.advance(600);
    expect(a.losses).toBe(1);
    expect(keeper.size).toBe(2);
    expect((await store.claim('c', 'f', 1_500)).status).toBe('inProgress');
    expect((await store.claim('d', 'f', 1_500)).status).toBe('inProgress');
    // Dropped before the tick reached it: not renewed, taken over once its lease ran out.
    expect((await store.claim('b', 'f', 1_500)).status).toBe('claimed');
    // Dropped leases keep no neighbour alive; held ones stay linked.
    expect([a.older, a.newer, b.older, b.newer]).toEqual([undefined, undefined, undefined, undefined]);
    expect([c.newer, d.older, a.held, b.held, c.held]).toEqual([d, c, false, false, true]);
    keeper.drop(c);
    keeper.drop(d);
    keeper.drop(d);
    expect(keeper.size).toBe(0);
    store.dispose();
  });
});
