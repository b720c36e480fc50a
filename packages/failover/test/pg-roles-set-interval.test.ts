import { createBus } from '@holdfast/core';
import { failover } from '@holdfast/failover';
import { type PgQueryable, pgRoles } from '@holdfast/failover/pg';
import { expect, it, vi } from 'vitest';
import { primaryRow, replicaRow } from './support/pg-rows.js';

/**
 * `{ ...pgRoles(), interval: 60_000 }`: pgRoles' options spread into a set with settings of its own.
 * pgRoles() remembered a primary for 5 × (its own interval, 2 s by default, + timeout): 15 s, a
 * quarter of the set's interval. Each round, a replica that answered before the primaries was
 * judged with none remembered: in a split brain, its lag (unknown: two histories) was made up
 * from one of them, and it took reads under `maxLag`.
 */

/** A target whose role query answers `row` after `ms` (on the fake clock). */
const target = (row: object, ms = 0): PgQueryable =>
  ({
    query: () => new Promise((resolve) => setTimeout(() => resolve({ rows: [row] }), ms)),
  }) as unknown as PgQueryable;

it('a set checking every 60 s remembers its primaries between checks: a replica beside a split brain has no lag, and takes no read under maxLag', async () => {
  vi.useFakeTimers({ toFake: ['Date', 'performance', 'setTimeout', 'clearTimeout'] });
  const db = failover({
    endpoints: [
      { name: 'a', target: target(primaryRow(3, '0/5000000'), 5) },
      { name: 'b', target: target(primaryRow(3, '0/6000000'), 5) },
      { name: 'r', target: target(replicaRow(3, '0/7000000')) },
    ],
    roles: { ...pgRoles<PgQueryable>(), interval: 60_000, maxLag: 10_000 },
    bus: createBus(),
    policies: false,
  });
  const lag = () => db.snapshot().endpoints[2]?.lag;
  const read = () => db.execute((e) => e.name, { intent: 'read' }).catch((error: { code: string }) => error.code);
  try {
    await vi.advanceTimersByTimeAsync(100);
    expect(db.snapshot().splitBrain).not.toBeNull();
    // Every round the replica answers first, the primaries 5 ms later.
    for (let round = 1; round <= 3; round++) {
      await vi.advanceTimersByTimeAsync(60_000);
      expect(lag()).toBeNull();
      expect(await read()).toBe('E_NO_HEALTHY_ENDPOINT');
    }
  } finally {
    db.dispose();
  }
});
