import { expect, it, vi } from 'vitest';
import { primaryRow, replicaRow, rolesOf, server } from './support/pg-rows.js';

/**
 * A replica's lag, as `pgRoles()` raises it from its primary's sightings, counts from the first
 * sighting of the primary past what it replayed. Behind the first sighting a set keeps, it was
 * behind before the set first saw the primary, for how long nobody saw: read as the time since that
 * sighting, a set started while a replica's WAL receiver had only connected (through a plain role,
 * received = replayed) sent it reads missing writes acknowledged seconds before, for maxLag.
 */

it('a replica behind the first sighting of its primary has an unknown lag; past it, its lag counts from the first sighting past it', async () => {
  const check = rolesOf();
  let at = '0/6000000';
  const primary = server(() => primaryRow(1, at));
  let replayed = '0/5000000';
  const replica = server(() => replicaRow(1, replayed));
  await check(primary);
  vi.advanceTimersByTime(500);
  // Before: 500 (the time since the set first saw the primary), under a maxLag of 1 s.
  expect((await check(replica)).lag).toBeUndefined();
  vi.advanceTimersByTime(500);
  replayed = '0/6000000';
  expect((await check(replica)).lag).toBe(0);
  at = '0/7000000';
  await check(primary);
  vi.advanceTimersByTime(1_000);
  expect((await check(replica)).lag).toBe(1_000);
});

it('checked before any primary of its cluster, a replica whose receiver is hidden (a plain role) has an unknown lag of 0; shown streaming, or with a lag of its own, it keeps it', async () => {
  const check = rolesOf();
  // Through a plain role: received = replayed is all it shows. Before: 0.
  expect((await check(server(() => replicaRow(1, '0/5000000')))).lag).toBeUndefined();
  // Its receiver shown streaming (pg_read_all_stats): 0 says it replayed its sender's last WAL end.
  expect((await check(server(() => ({ ...replicaRow(1, '0/5000000'), streams: 1 })))).lag).toBe(0);
  // The age of its last replayed transaction bounds what it misses: kept.
  expect((await check(server(() => ({ ...replicaRow(1, '0/5000000'), lag: 300 })))).lag).toBe(300);
  // Once the primary is seen at what it replayed, 0 stands.
  await check(server(() => primaryRow(1, '0/5000000')));
  expect((await check(server(() => replicaRow(1, '0/5000000')))).lag).toBe(0);
});

it('a replica that replayed past what its primary flushed at a check started after (another history: a promotion the set never saw) has an unknown lag', async () => {
  const check = rolesOf();
  // Through a plain role its timeline shows 1 (before a restartpoint), its LSN that of timeline 2.
  const replica = server(() => replicaRow(1, '0/C000050'));
  const primary = server(() => primaryRow(1, '0/8000E50'));
  await check(primary);
  vi.advanceTimersByTime(100);
  // Its first check: nothing yet says the primary never wrote what it replayed.
  await check(replica);
  vi.advanceTimersByTime(100);
  await check(primary);
  vi.advanceTimersByTime(100);
  // Before: 0 (past every sighting), and it took reads missing every write to the primary.
  expect((await check(replica)).lag).toBeUndefined();
  vi.advanceTimersByTime(100);
  expect((await check(replica)).lag).toBeUndefined();
});
