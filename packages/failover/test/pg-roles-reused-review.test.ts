import type { Endpoint } from '@holdfast/failover';
import { type PgQueryable, pgRoles } from '@holdfast/failover/pg';
import { expect, it, vi } from 'vitest';
import { primaryRow, replicaRow, server } from './support/pg-rows.js';

/**
 * Review: one `pgRoles()` reused by the sets a service builds over its life (a set disposed, a new
 * one over other servers). A target no set checks any more stayed a primary "now" for good: on a
 * higher timeline than the new set's primary, it marked that primary deposed, and the new set's
 * replicas were judged against its WAL, not their own primary's: a stalled replica's lag hidden.
 */

it('a primary no set checks any more (its set disposed) does not judge the replicas of the next set', async () => {
  vi.useFakeTimers({ toFake: ['Date', 'performance'] });
  const roles = pgRoles<PgQueryable>({ interval: 2_000, timeout: 1_000 });
  const check = roles.check as (e: Endpoint<PgQueryable>) => Promise<{ role: string; lag?: number }>;
  // The first set: its primary on timeline 2, at 0/5000000, checked every interval for a minute.
  const removed = server(() => primaryRow(2, '0/5000000'));
  for (let i = 0; i < 30; i++) {
    await check(removed);
    vi.advanceTimersByTime(2_000);
  }
  // Disposed; a minute on, a set over a cluster restored onto timeline 1, further on: its primary
  // at 0/9000000 and a replica stalled at 0/8000000 (it replayed all it received: own lag 0).
  vi.advanceTimersByTime(60_000);
  // First seen where the replica is (behind the first sighting, its lag would be unknown).
  let at = '0/8000000';
  const primary = server(() => primaryRow(1, at));
  const stalled = server(() => replicaRow(1, '0/8000000'));
  await check(primary);
  at = '0/9000000';
  expect((await check(primary)).role).toBe('primary');
  vi.advanceTimersByTime(2_000);
  await check(primary);
  vi.advanceTimersByTime(1_000);
  // Behind its primary's WAL since it was first seen, 3 s ago.
  expect((await check(stalled)).lag).toBe(3_000);
});
