import { createBus } from '@holdfast/core';
import { failover } from '@holdfast/failover';
import { type PgQueryable, pgRoles } from '@holdfast/failover/pg';
import { afterEach, expect, it, vi } from 'vitest';
import { primaryRow, replicaRow } from './support/pg-rows.js';

/**
 * A set's first round of checks: a replica's lag that `pgRoles()` judges before every other
 * endpoint of the set answered (or was found unreachable) is judged without what they say. A set
 * started after a promotion, over the deposed primary (still up, timeline 1), the promoted one
 * (timeline 2, slow to answer its first check) and a replica re-pointed to it but still on
 * timeline 1 (through a plain role, received = replayed): the replica, judged against the deposed
 * primary alone, read lag 0, and took reads missing writes to the promoted one until its next
 * check (test/failover-pg-repoint-review.test.ts, 30 of 30 reads stale about 1 run in 3).
 */

afterEach(() => {
  vi.useRealTimers();
});

/** A target whose role query answers `row()` after `ms` (on the fake clock); `asked` counts its queries. */
function target(row: () => object, ms = 0) {
  const t = {
    asked: 0,
    query: () => {
      t.asked++;
      const answer = { rows: [row()] };
      return new Promise((resolve) => setTimeout(() => resolve(answer), ms));
    },
  };
  return t as typeof t & PgQueryable;
}

function set(endpoints: Record<string, PgQueryable>) {
  return failover({
    bus: createBus(),
    policies: false,
    retry: false,
    endpoints: Object.entries(endpoints).map(([name, t]) => ({ name, target: t })),
    roles: pgRoles<PgQueryable>({ interval: 100, timeout: 5_000, maxLag: 1_000 }),
  });
}

// Listed first or last: the first endpoint's first check is in the first round too.
it.each([
  ['a', 'b', 'c'],
  ['c', 'a', 'b'],
])(
  "a replica answering before the promoted primary's first check, judged against the deposed one: unknown lag, no read, from the first round on (%s, %s, %s)",
  async (...order) => {
    vi.useFakeTimers({ toFake: ['Date', 'performance', 'setTimeout', 'clearTimeout'] });
    const servers: Record<string, PgQueryable> = {
      a: target(() => ({ ...primaryRow(1, '0/5000000'), started: '1' })),
      b: target(() => ({ ...primaryRow(2, '0/6000000'), started: '2' }), 30),
      // After the deposed primary (first seen, a plain role's lag of 0 is unknown), before the promoted one.
      c: target(() => ({ ...replicaRow(1, '0/5000000'), started: '3' }), 5),
    };
    const db = set(Object.fromEntries(order.map((n) => [n, servers[n] as PgQueryable])));
    const endpoint = (n: string) => db.snapshot().endpoints.find((e) => e.name === n);
    try {
      // As the real test waits: the promoted primary and the replica discovered.
      for (let ms = 0; !(endpoint('b')?.discovered === 'primary' && endpoint('c')?.discovered === 'replica'); ms++) {
        expect(ms).toBeLessThan(1_000);
        await vi.advanceTimersByTimeAsync(1);
      }
      const served: string[] = [];
      for (let i = 0; i < 30; i++) served.push(await db.execute((e) => e.name, { intent: 'read' }));
      // Before: c's first check (lag 0, judged on a's sightings alone) stood until its next, 100 ms on.
      expect({ lag: endpoint('c')?.lag, onC: served.filter((n) => n === 'c').length }).toEqual({ lag: null, onC: 0 });
      // Later checks judge it below the promoted primary's timeline: unknown, still no read.
      await vi.advanceTimersByTimeAsync(500);
      expect(await db.execute((e) => e.name, { intent: 'read' })).toBe('b');
    } finally {
      db.dispose();
    }
  },
);

it('a caught-up replica answering first is asked again as soon as the others have answered: it takes reads from then, not an interval later', async () => {
  vi.useFakeTimers({ toFake: ['Date', 'performance', 'setTimeout', 'clearTimeout'] });
  const p = target(() => ({ ...primaryRow(2, '0/6000000'), started: '1' }), 30);
  const r = target(() => ({ ...replicaRow(2, '0/6000000'), started: '2' }));
  const db = set({ p, r });
  const endpoint = (n: string) => db.snapshot().endpoints.find((e) => e.name === n);
  try {
    await vi.advanceTimersByTimeAsync(30);
    expect(endpoint('p')?.discovered).toBe('primary');
    // Its first check, judged before the primary's answer, is not trusted; the one after it is
    // (its query answers 0 ms on: an interval is 100).
    await vi.advanceTimersByTimeAsync(1);
    expect({ lag: endpoint('r')?.lag, asked: r.asked }).toEqual({ lag: 0, asked: 2 });
    expect(await db.execute((e) => e.name, { intent: 'read' })).toBe('r');
  } finally {
    db.dispose();
  }
});

it('an endpoint hanging at start-up: a replica takes no read under maxLag until it is found unreachable, then at once', async () => {
  vi.useFakeTimers({ toFake: ['Date', 'performance', 'setTimeout', 'clearTimeout'] });
  const hung = { query: () => new Promise(() => {}) } as unknown as PgQueryable;
  const db = failover({
    bus: createBus(),
    policies: false,
    retry: false,
    endpoints: [
      { name: 'p', target: target(() => ({ ...primaryRow(2, '0/6000000'), started: '1' })) },
      { name: 'r', target: target(() => ({ ...replicaRow(2, '0/6000000'), started: '2' }), 5) },
      { name: 'h', target: hung },
    ],
    roles: pgRoles<PgQueryable>({ interval: 100, timeout: 500, maxLag: 1_000, wait: 1, unreachableAfter: 2 }),
  });
  // A call waits for the first round at most `wait` (1 ms) on the fake clock: a read, 10 ms on.
  const read = async () => {
    const r = db.execute((e) => e.name, { intent: 'read' });
    await vi.advanceTimersByTimeAsync(10);
    return r;
  };
  try {
    const served: string[] = [];
    // h's two checks time out at 500 ms and 1 s.
    for (let i = 0; i < 99; i++) served.push(await read());
    expect({ reads: served.length, off: served.filter((n) => n !== 'p') }).toEqual({ reads: 99, off: [] });
    await vi.advanceTimersByTimeAsync(20);
    expect(await read()).toBe('r');
  } finally {
    db.dispose();
  }
});
