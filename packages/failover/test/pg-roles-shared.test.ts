import { createBus } from '@holdfast/core';
import { type Endpoint, failover } from '@holdfast/failover';
import { type PgQueryable, pgRoles } from '@holdfast/failover/pg';
import { expect, it, vi } from 'vitest';
import { primaryRow, replicaRow } from './support/pg-rows.js';

/**
 * One `pgRoles()` shared by two sets, each with a pool of its own to the one primary: both pools'
 * answers are sightings of one server. Two checks on two connections answer in any order: one
 * read an instant before the other may be answered after it, with a flush position a little
 * behind. pgRoles() took any sighting behind an earlier one for another history of the cluster
 * (a backup restored) and forgot the earlier ones: a replica whose WAL receiver is stalled was
 * judged against the last sighting only, and its lag never grew past an interval.
 */

const started = '1764930000123456';
const lsn = (n: number) => `0/${(0x6000000 + n * 0x10000).toString(16).toUpperCase()}`;

it('answers of one primary through two pools, overtaken: a stalled replica’s lag still grows from the first sighting past it', async () => {
  vi.useFakeTimers({ toFake: ['Date', 'performance', 'setTimeout', 'clearTimeout'] });
  const roles = pgRoles<PgQueryable>({ interval: 1_000, timeout: 1_000 });
  const check = roles.check as (e: Endpoint<PgQueryable>) => Promise<{ role: string; lag?: number }>;
  const settle: (() => void)[] = [];
  let round = 0;
  const endpoint = (name: string, query: () => Promise<{ rows: unknown[] }>) =>
    ({ name, target: { query } as unknown as PgQueryable }) as Endpoint<PgQueryable>;
  // The writes set's pool: answers at once with the primary's flush position now.
  const one = endpoint('primary', async () => ({ rows: [{ ...primaryRow(1, lsn(2 * round + 1)), started }] }));
  // The reads set's pool: its query read the primary a moment before, and is answered after.
  const two = endpoint(
    'primary',
    () =>
      new Promise((resolve) => {
        const row = { ...primaryRow(1, lsn(2 * round)), started };
        settle.push(() => resolve({ rows: [row] }));
      }),
  );
  // Stalled behind every sighting: replayed all it received, so its own figures say lag 0.
  const replica = endpoint('replica', async () => ({ rows: [{ ...replicaRow(1, '0/5000000'), started: '1' }] }));
  try {
    // First seen where the replica is (behind the first sighting, its lag would be unknown).
    await check(endpoint('primary', async () => ({ rows: [{ ...primaryRow(1, '0/5000000'), started }] })));
    for (round = 1; round <= 10; round++) {
      const late = check(two);
      await vi.advanceTimersByTimeAsync(10);
      await check(one);
      await vi.advanceTimersByTimeAsync(10);
      settle.shift()?.();
      await late;
      await vi.advanceTimersByTimeAsync(980);
    }
    // First seen past it 10 s ago, on the first round.
    const report = await check(replica);
    expect(report.lag).toBeGreaterThanOrEqual(9_000);
  } finally {
    vi.useRealTimers();
  }
});

type Answer = object | 'down';

/** A pool of its own to a server whose role query answers `answer()` (or fails to connect). */
const pool = (answer: () => Answer): PgQueryable =>
  ({
    query: async () => {
      const row = answer();
      if (row === 'down') throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
      return { rows: [row] };
    },
  }) as unknown as PgQueryable;

it('two sets sharing one pgRoles(), a real split brain, one side silent: the replica’s lag stays unknown in both; over, known again in both', async () => {
  vi.useFakeTimers({ toFake: ['Date', 'performance', 'setTimeout', 'clearTimeout'] });
  const a = () => ({ ...primaryRow(3, '0/5000000'), started: '1764930000000001' });
  let b: () => Answer = () => ({ ...primaryRow(3, '0/6000000'), started: '1764930000000002' });
  // Caught up with a (past what its primary flushed, a replica follows another history: unknown).
  const r = () => ({ ...replicaRow(3, '0/5000000'), started: '1764930000000003' });
  const roles = pgRoles<PgQueryable>({ interval: 1_000, timeout: 500, maxLag: 10_000 });
  const sets = ['one', 'two'].map((name) =>
    failover({
      name,
      endpoints: [
        { name: 'a', target: pool(a) },
        { name: 'b', target: pool(() => b()) },
        { name: 'r', target: pool(r) },
      ],
      roles,
      bus: createBus(),
      policies: false,
    }),
  );
  const lags = () => sets.map((db) => db.snapshot().endpoints[2]?.lag);
  try {
    await vi.advanceTimersByTimeAsync(1_100);
    for (const db of sets) expect(db.snapshot().splitBrain?.endpoints).toEqual(['a', 'b']);
    expect(lags()).toEqual([null, null]);
    b = () => 'down';
    for (let round = 0; round < 4; round++) {
      await vi.advanceTimersByTimeAsync(1_000);
      expect(lags()).toEqual([null, null]);
    }
    // b rebuilt as a replica of a: over; r is judged against a again, in both sets.
    b = () => ({ ...replicaRow(3, '0/5000000'), started: '1764930000000004' });
    await vi.advanceTimersByTimeAsync(2_100);
    for (const db of sets) expect(db.snapshot().splitBrain).toBeNull();
    expect(lags()).toEqual([0, 0]);
  } finally {
    for (const db of sets) db.dispose();
    vi.useRealTimers();
  }
});

it('two sets sharing one pgRoles(), each with a pool of its own to one primary: one primary, the replica’s lag known in both', async () => {
  vi.useFakeTimers({ toFake: ['Date', 'performance', 'setTimeout', 'clearTimeout'] });
  const a = () => ({ ...primaryRow(3, '0/5000000'), started: '1764930000000001' });
  const r = () => ({ ...replicaRow(3, '0/5000000'), started: '1764930000000003' });
  const roles = pgRoles<PgQueryable>({ interval: 1_000, timeout: 500, maxLag: 10_000 });
  const sets = ['one', 'two'].map((name) =>
    failover({
      name,
      endpoints: [
        { name: 'a', target: pool(a) },
        { name: 'r', target: pool(r) },
      ],
      roles,
      bus: createBus(),
      policies: false,
    }),
  );
  try {
    await vi.advanceTimersByTimeAsync(3_100);
    expect(sets.map((db) => db.snapshot().endpoints[1]?.lag)).toEqual([0, 0]);
  } finally {
    for (const db of sets) db.dispose();
    vi.useRealTimers();
  }
});

it('a busy primary seen through two sets’ pools for a minute: a replica stalled since the start lags a minute, not the last 64 sightings', async () => {
  vi.useFakeTimers({ toFake: ['Date', 'performance', 'setTimeout', 'clearTimeout'] });
  const roles = pgRoles<PgQueryable>({ interval: 100, timeout: 1_000 });
  const check = roles.check as (e: Endpoint<PgQueryable>) => Promise<{ role: string; lag?: number }>;
  let written = 0;
  const endpoint = (name: string, row: () => object) =>
    ({ name, target: { query: async () => ({ rows: [row()] }) } as unknown as PgQueryable }) as Endpoint<PgQueryable>;
  // Each set's pool to the primary, which writes on: a new flush position at every check.
  const pools = [1, 2].map(() => endpoint('primary', () => ({ ...primaryRow(1, lsn(++written)), started })));
  // Its WAL receiver stalled before the first check: replayed all it received, lag 0 by its own figures.
  const replica = endpoint('replica', () => ({ ...replicaRow(1, '0/5000000'), started: '1' }));
  // Another, stalled half way: at the position written 30 s before the end.
  const half = endpoint('half', () => ({ ...replicaRow(1, lsn(600)), started: '2' }));
  try {
    // First seen where the replica is (behind the first sighting, its lag would be unknown).
    await check(endpoint('primary', () => ({ ...primaryRow(1, '0/5000000'), started })));
    for (let round = 0; round < 600; round++) {
      for (const p of pools) await check(p);
      await vi.advanceTimersByTimeAsync(100);
    }
    const report = await check(replica);
    // Two sightings every 100 ms: the 64 kept spanned 3.2 s, and the lag stopped there. Judged by
    // the first sighting past the one where it was caught up, which thinning may drop: short by at
    // most a fifth of its lag, as the one below.
    expect(report.lag).toBeGreaterThanOrEqual(48_000);
    // Judged by the first sighting kept past it: short by at most a fifth of its lag.
    const behind = (await check(half)).lag;
    expect(behind).toBeGreaterThanOrEqual(24_000);
    expect(behind).toBeLessThanOrEqual(30_000);
  } finally {
    vi.useRealTimers();
  }
});
