import { expect, it, vi } from 'vitest';
import { primaryRow, replicaRow, rolesOf, server } from './support/pg-rows.js';

/**
 * Review of `pgRoles()`'s sightings per timeline. A primary whose check failed once (a timeout: a
 * flap, not a loss) no longer counted as a primary now, so the next sighting of a deposed primary
 * (a lower timeline, seen beside it all along) forgot the promoted primary's timeline: its stalled
 * replica was judged against the deposed primary's WAL, and its lag hidden.
 */

it('the promoted primary failing one check: the deposed one seen meanwhile does not hide its stalled replica', async () => {
  const check = rolesOf();
  let flap = false;
  // First seen where the replica is (behind the first sighting, its lag would be unknown).
  let at = '0/5800000';
  const promoted = server(() => {
    if (flap) throw new Error('timeout exceeded when trying to connect');
    return primaryRow(2, at);
  });
  const deposed = server(() => primaryRow(1, '0/5000000'));
  const replica = server(() => replicaRow(2, '0/5800000'));
  await check(promoted);
  at = '0/6000000';
  await check(promoted);
  vi.advanceTimersByTime(1_000);
  await check(deposed);
  vi.advanceTimersByTime(1_000);
  expect((await check(replica)).lag).toBe(2_000);
  flap = true;
  await expect(check(promoted)).rejects.toThrow('timeout');
  await check(deposed);
  vi.advanceTimersByTime(1_000);
  // Before the fix: 0 (judged against the deposed primary's 0/5000000).
  expect((await check(replica)).lag).toBe(3_000);
  flap = false;
  await check(promoted);
  vi.advanceTimersByTime(1_000);
  // Before the fix: 1000 (the promoted primary's sightings forgotten, counted again from now).
  expect((await check(replica)).lag).toBe(4_000);
});

it('the deposed primary, then demoted to a replica of the promoted one, is judged on the promoted timeline', async () => {
  const check = rolesOf();
  let row: object = primaryRow(1, '0/5000000');
  const old = server(() => row);
  // First seen where the demoted one will stall (behind the first sighting, its lag would be unknown).
  let at = '0/5900000';
  const promoted = server(() => primaryRow(2, at));
  await check(promoted);
  at = '0/6000000';
  await check(promoted);
  await check(old);
  vi.advanceTimersByTime(1_000);
  row = replicaRow(2, '0/6000000');
  expect((await check(old)).lag).toBe(0);
  row = replicaRow(2, '0/5900000');
  vi.advanceTimersByTime(1_000);
  expect((await check(old)).lag).toBe(2_000);
});

it('a split brain on one timeline (two primaries promoted apart): a replica of either has an unknown lag, not 0', async () => {
  const check = rolesOf();
  // Two histories on timeline 2: WAL positions of one say nothing of the other's replicas.
  const b = server(() => primaryRow(2, '0/6000000'));
  const c = server(() => primaryRow(2, '0/5000000'));
  // A replica of pg-b, its WAL receiver stalled at 0/5800000 (it replayed all it received).
  const stalled = server(() => replicaRow(2, '0/5800000'));
  const lags: (number | undefined)[] = [];
  for (let round = 0; round < 5; round++) {
    await check(b);
    await check(c);
    vi.advanceTimersByTime(1_000);
    lags.push((await check(stalled)).lag);
  }
  // Before the fix: each sighting of pg-c began the timeline's sightings anew: lag 0, every round.
  expect(lags).toEqual([undefined, undefined, undefined, undefined, undefined]);
});
