import { expect, it, vi } from 'vitest';
import { primaryRow, replicaRow, rolesOf, server } from './support/pg-rows.js';

/**
 * `pgRoles()` judges a replica's lag against the primary WAL seen on the highest timeline a target
 * is a primary on now: a deposed primary (a lower timeline, still up) does not lower it, and a
 * timeline no target is a primary on any more (restored over from an older backup) does not hold
 * the restored cluster's replicas behind. Rows as the role query returns them; real servers in
 * test/failover-pg-restore-timeline.test.ts.
 */

it('a deposed primary up on timeline 1 does not hide a stalled replica of the timeline-2 primary', async () => {
  const check = rolesOf();
  const deposed = server(() => primaryRow(1, '0/5000000'));
  // First seen where the replica is (behind the first sighting, its lag would be unknown).
  let at = '0/5800000';
  const promoted = server(() => primaryRow(2, at));
  const replica = server(() => replicaRow(2, '0/5800000'));
  await check(promoted);
  at = '0/6000000';
  await check(promoted);
  vi.advanceTimersByTime(1_000);
  await check(deposed);
  vi.advanceTimersByTime(1_000);
  await check(replica);
  await check(promoted);
  vi.advanceTimersByTime(1_000);
  await check(deposed);
  // Behind the timeline-2 primary's WAL since it was first seen, 3 s ago.
  expect((await check(replica)).lag).toBe(3_000);
});

it('a primary restored in place onto a lower timeline: its replica is judged against its WAL, not the lost timeline’s', async () => {
  const check = rolesOf();
  // Timeline 2, at 0/9000000, seen for a minute.
  let row = primaryRow(2, '0/9000000');
  const db = server(() => row);
  for (let i = 0; i < 6; i++) {
    await check(db);
    vi.advanceTimersByTime(10_000);
  }
  // Restored from a backup of timeline 1 at 0/3000000, and a replica of it that replayed all.
  row = primaryRow(1, '0/3000100');
  const replica = server(() => replicaRow(1, '0/3000100'));
  expect((await check(db)).role).toBe('primary');
  vi.advanceTimersByTime(1_000);
  // Before the fix: 61000 (behind timeline 2's 0/9000000 since it was first seen).
  expect((await check(replica)).lag).toBe(0);
});

it('the lost primary of timeline 2 failing its checks: the restored one elsewhere, on timeline 1, is the one judged', async () => {
  const check = rolesOf();
  let up = true;
  const lost = server(() => {
    if (!up) throw new Error('connect ECONNREFUSED');
    return primaryRow(2, '0/9000000');
  });
  for (let i = 0; i < 3; i++) {
    await check(lost);
    vi.advanceTimersByTime(10_000);
  }
  up = false;
  // First seen where the stalled replica below is (behind the first sighting, its lag would be unknown).
  let at = '0/3000000';
  const restored = server(() => primaryRow(1, at));
  const replica = server(() => replicaRow(1, '0/3000100'));
  await expect(check(lost)).rejects.toThrow('ECONNREFUSED');
  await check(restored);
  at = '0/3000100';
  await check(restored);
  vi.advanceTimersByTime(1_000);
  // Before the fix: 31000.
  expect((await check(replica)).lag).toBe(0);
  // A stalled replica of the restored primary still shows: behind its WAL since it was seen.
  const stalled = server(() => replicaRow(1, '0/3000000'));
  vi.advanceTimersByTime(1_000);
  expect((await check(stalled)).lag).toBe(2_000);
});
