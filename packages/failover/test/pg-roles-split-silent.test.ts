import { createBus } from '@holdfast/core';
import { failover } from '@holdfast/failover';
import { type PgQueryable, pgRoles } from '@holdfast/failover/pg';
import { expect, it, vi } from 'vitest';
import { primaryRow, replicaRow } from './support/pg-rows.js';

/**
 * Hostile review of the split-brain path: two primaries on one timeline, then one of them silent
 * (frozen, cut off). The set holds writes (it may be the side the operator keeps); the README says
 * the replicas' lag is unknown meanwhile. pgRoles() forgot the silent one at its first failed
 * check: a replica was judged against the other side's WAL alone, got lag 0, and took reads under
 * `maxLag`, from a history that may be thrown away.
 */

type Answer = object | 'down';

/** A target whose role query answers `answer()` (or fails to connect). */
const target = (answer: () => Answer): PgQueryable =>
  ({
    query: async () => {
      const row = answer();
      if (row === 'down') throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
      return { rows: [row] };
    },
  }) as unknown as PgQueryable;

it('one side of a split brain silent: a replica’s lag stays unknown, and it takes no read under maxLag, until the split brain ends', async () => {
  vi.useFakeTimers({ toFake: ['Date', 'performance', 'setTimeout', 'clearTimeout'] });
  let b: Answer = primaryRow(3, '0/6000000');
  const db = failover({
    endpoints: [
      { name: 'a', target: target(() => primaryRow(3, '0/5000000')) },
      { name: 'b', target: target(() => b) },
      // Caught up with a (past what its primary flushed, a replica follows another history: unknown).
      { name: 'r', target: target(() => replicaRow(3, '0/5000000')) },
    ],
    roles: pgRoles<PgQueryable>({ interval: 1_000, timeout: 500, maxLag: 10_000 }),
    bus: createBus(),
    policies: false,
  });
  const lag = () => db.snapshot().endpoints[2]?.lag;
  const read = () => db.execute((e) => e.name, { intent: 'read' }).catch((error: { code: string }) => error.code);
  try {
    await vi.advanceTimersByTimeAsync(1_100);
    expect(db.snapshot().splitBrain?.endpoints).toEqual(['a', 'b']);
    expect(lag()).toBeNull();
    b = 'down';
    for (let round = 0; round < 4; round++) {
      await vi.advanceTimersByTimeAsync(1_000);
      expect(db.snapshot().endpoints[1]?.discovered).toBe('unreachable');
      expect(db.snapshot().splitBrain?.endpoints).toEqual(['a', 'b']);
      expect(lag()).toBeNull();
      expect(await read()).toBe('E_NO_HEALTHY_ENDPOINT');
    }
    // b rebuilt as a replica of a: over; r is judged against a again.
    b = replicaRow(3, '0/5000000');
    await vi.advanceTimersByTimeAsync(2_100);
    expect(db.snapshot().splitBrain).toBeNull();
    expect(lag()).toBe(0);
  } finally {
    db.dispose();
  }
});
