import type { Endpoint, RoleCheckSettings } from '@holdfast/failover';
import { type PgQueryable, pgRoles } from '@holdfast/failover/pg';
import { expect, it, vi } from 'vitest';
import { primaryRow, replicaRow } from './support/pg-rows.js';

/**
 * Review of the partition bound (pg-roles-partition.test.ts) with one `pgRoles()` shared by two
 * sets that check at different intervals, each through pools of its own (one server seen through
 * two targets). A slow set's last sighting of the primary, still within its own cycle (its next
 * check is not due), counted as the primary answering for the fast set whose own checks of it
 * failed: the fast set's replica, cut off with the primary, read lag 0 for a minute.
 */

const lsn = (n: number) => `0/${(0x6000000 + n * 0x10000).toString(16).toUpperCase()}`;
const down = Object.assign(new Error('timeout'), { code: 'E_TIMEOUT' });
type Check = (e: Endpoint<PgQueryable>, signal: AbortSignal, set: RoleCheckSettings) => Promise<{ lag?: number }>;

function cluster() {
  vi.useFakeTimers({ toFake: ['Date', 'performance', 'setTimeout', 'clearTimeout'] });
  const roles = pgRoles<PgQueryable>();
  const check = roles.check as unknown as Check;
  const state = { written: 10, replayed: 11, cut: new Set<string>() };
  const endpoint = (name: string, query: () => Promise<unknown>) =>
    ({ name, target: { query } as unknown as PgQueryable }) as Endpoint<PgQueryable>;
  // One primary server (started '1') and one replica server (started '2'), each reached through two pools.
  const primary = (pool: string) =>
    endpoint(pool, async () => {
      if (state.cut.has(pool)) throw down;
      return { rows: [{ ...primaryRow(1, lsn(state.written)), started: '1' }] };
    });
  const replica = (pool: string) =>
    endpoint(pool, async () => ({ rows: [{ ...replicaRow(1, lsn(state.replayed)), started: '2' }] }));
  return { check, state, primary, replica };
}

const signal = new AbortController().signal;
const fast = { interval: 200, timeout: 500 };
const slow = { interval: 60_000, timeout: 1_000 };

it("a slow set's primary sighting, its next check not due, does not hide from a fast set that the primary stopped answering its checks", async () => {
  const { check, state, primary, replica } = cluster();
  const [fastPrimary, fastReplica, slowPrimary] = [primary('a'), replica('a-replica'), primary('b')];
  // The slow set checks the primary once (its next check is a minute away).
  await check(slowPrimary, signal, slow);
  const round = async () => {
    state.written++;
    await check(fastPrimary, signal, fast).catch(() => {});
    const { lag } = await check(fastReplica, signal, fast);
    await vi.advanceTimersByTimeAsync(200);
    return lag;
  };
  for (let i = 0; i < 3; i++) {
    state.replayed = state.written + 1; // keeps up
    expect(await round()).toBe(0);
  }
  // A partition from the primary: every pool's link and the replica's (it replays nothing more).
  state.cut = new Set(['a', 'b']);
  const lags: (number | undefined)[] = [];
  for (let i = 0; i < 10; i++) lags.push(await round());
  expect(lags, "the fast set's replica cut off with the primary").toEqual([
    200, 400, 600, 800, 1_000, 1_200, 1_400, 1_600, 1_800, 2_000,
  ]);
  // The fast set's link heals first, the replica still cut off: behind since the cut.
  state.cut = new Set(['b']);
  expect(await round(), 'seen again past the replica after a gap').toBe(2_200);
});

it("a slow set's replica keeps reads while the primary answers its fast neighbour's checks, and the fast one's keep theirs", async () => {
  const { check, state, primary, replica } = cluster();
  const [fastPrimary, fastReplica, slowPrimary, slowReplica] = [
    primary('a'),
    replica('a-replica'),
    primary('b'),
    replica('b-replica'),
  ];
  await check(slowPrimary, signal, slow);
  const lags = { fast: [] as (number | undefined)[], slow: [] as (number | undefined)[] };
  // A minute and a half of normal operation: the replica replays each write before the next check.
  for (let i = 0; i < 450; i++) {
    state.written++;
    await check(fastPrimary, signal, fast);
    state.replayed = state.written;
    lags.fast.push((await check(fastReplica, signal, fast)).lag);
    if (i % 300 === 299) await check(slowPrimary, signal, slow);
    if (i % 50 === 0) lags.slow.push((await check(slowReplica, signal, slow)).lag);
    await vi.advanceTimersByTimeAsync(200);
  }
  expect(lags.fast.filter((l) => l !== 0)).toEqual([]);
  expect(lags.slow.filter((l) => l !== 0)).toEqual([]);
});
