import type { Endpoint } from '@holdfast/failover';
import { type PgQueryable, pgRoles } from '@holdfast/failover/pg';
import { expect, it, vi } from 'vitest';
import { primaryRow, replicaRow } from './support/pg-rows.js';

/**
 * The partition of test/failover-pg-partition.test.ts on a fake clock, check by check: the primary
 * writes on, unseen (its checks fail), and the replica has replayed all it received (lag 0 by its
 * own figures). It read lag 0 throughout, and again when the primary answered with WAL far past it.
 */

const lsn = (n: number) => `0/${(0x6000000 + n * 0x10000).toString(16).toUpperCase()}`;
const down = Object.assign(new Error('timeout'), { code: 'E_TIMEOUT' });

it('the primary unseen: a replica caught up with its last sighting lags since that sighting, and still after the primary is seen again past it', async () => {
  vi.useFakeTimers({ toFake: ['Date', 'performance', 'setTimeout', 'clearTimeout'] });
  const roles = pgRoles<PgQueryable>({ interval: 200, timeout: 500 });
  const check = roles.check as (e: Endpoint<PgQueryable>) => Promise<{ role: string; lag?: number }>;
  let written = 10;
  let cut = false;
  const endpoint = (query: () => Promise<unknown>) =>
    ({ name: 'e', target: { query } as unknown as PgQueryable }) as Endpoint<PgQueryable>;
  const primary = endpoint(async () => {
    if (cut) throw down;
    return { rows: [{ ...primaryRow(1, lsn(written)), started: '1' }] };
  });
  let replayed = written;
  const replica = endpoint(async () => ({ rows: [{ ...replicaRow(1, lsn(replayed)), started: '2' }] }));
  const round = async () => {
    written++;
    await check(primary).catch(() => {});
    const { lag } = await check(replica);
    await vi.advanceTimersByTimeAsync(200);
    return lag;
  };
  await check(primary);
  for (let i = 0; i < 5; i++) {
    replayed = written + 1; // keeps up
    expect(await round()).toBe(0);
  }
  cut = true; // its last sighting: lsn(written), which the replica replayed
  const lags: (number | undefined)[] = [];
  for (let i = 0; i < 10; i++) lags.push(await round());
  // 200 ms a round since the last sighting (taken at the round's start, before the clock moved).
  expect(lags).toEqual([200, 400, 600, 800, 1_000, 1_200, 1_400, 1_600, 1_800, 2_000]);
  // The set sees the primary again, far past the replica, still cut off: behind since the cut.
  cut = false;
  expect(await round()).toBe(2_200);
  expect(await round()).toBe(2_400);
  // Caught up: fresh again.
  replayed = written + 1;
  expect(await round()).toBe(0);
});
