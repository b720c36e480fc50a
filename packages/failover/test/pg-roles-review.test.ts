import type { Endpoint } from '@holdfast/failover';
import { type PgQueryable, pgRoles } from '@holdfast/failover/pg';
import { afterEach, expect, it, vi } from 'vitest';

/**
 * `pgRoles()` raises a replica's lag from its cluster's primary, keyed by the system identifier.
 * A cluster restored from a base backup keeps that identifier (and, without archive recovery,
 * its timeline) but writes a history of its own, from an older LSN: the old primary's sightings
 * say nothing of the replicas of the restored one.
 */

interface Row {
  replica: boolean;
  walfile: string | null;
  checkpoint_timeline: number;
  system: string;
  flushed: string | null;
  lsn: string;
  lag: number | null;
}

/** A server answering the role query with `row()`: what pgRoles reads, and nothing else. */
function server(row: () => Row): Endpoint<PgQueryable> {
  const target: PgQueryable = { query: async () => ({ rows: [row()] }) } as unknown as PgQueryable;
  return { name: 'db', target } as Endpoint<PgQueryable>;
}

const primaryAt = (lsn: string, segment: string): Row => ({
  replica: false,
  walfile: `0000000100000000${segment}`,
  checkpoint_timeline: 1,
  system: '7400000000000000001',
  flushed: lsn,
  lsn,
  lag: null,
});

afterEach(() => {
  vi.useRealTimers();
});

it('a replica of a primary restored from a backup (same system identifier, same timeline, older LSN) is not held behind the old primary', async () => {
  vi.useFakeTimers({ toFake: ['Date', 'performance'] });
  const roles = pgRoles<PgQueryable>({ timeout: 1_000 });
  const check = roles.check as (e: Endpoint<PgQueryable>) => Promise<{ role: string; lag?: number }>;

  // The old primary, at 0/9000000, seen for a minute before the disaster.
  let lsn = 0x9000000;
  const old = server(() => primaryAt(`0/${lsn.toString(16).toUpperCase()}`, '00000009'));
  for (let i = 0; i < 6; i++) {
    await check(old);
    lsn += 0x100;
    vi.advanceTimersByTime(10_000);
  }

  // Restored from a base backup taken at 0/3000000: a primary again, on timeline 1, with a
  // freshly built replica that has replayed all its primary flushed.
  vi.advanceTimersByTime(60_000);
  const restored = server(() => primaryAt('0/3000100', '00000003'));
  const replica = server(() => ({
    replica: true,
    walfile: null,
    checkpoint_timeline: 1,
    system: '7400000000000000001',
    flushed: null,
    lsn: '0/3000100',
    lag: 0,
  }));
  expect((await check(restored)).role).toBe('primary');
  vi.advanceTimersByTime(1_000);
  const seen = await check(replica);
  expect(seen.role).toBe('replica');
  expect(seen.lag).toBe(0);
});

it('a wall-clock step (NTP, a VM resumed) neither raises nor hides a replica’s lag: it is measured on monotonic time', async () => {
  vi.useFakeTimers({ toFake: ['Date', 'performance'] });
  vi.setSystemTime(new Date('2026-01-01T00:00:00Z'));
  const roles = pgRoles<PgQueryable>({ timeout: 1_000 });
  const check = roles.check as (e: Endpoint<PgQueryable>) => Promise<{ role: string; lag?: number }>;
  const replicaAt = (lsn: string, lag: number) =>
    server(() => ({
      replica: true,
      walfile: null,
      checkpoint_timeline: 1,
      system: '7400000000000000001',
      flushed: null,
      lsn,
      lag,
    }));
  // The primary seen at 0/5000000, then at 0/5000100; a second later the replica has replayed
  // 0/5000000 and says it lags 0 (it replayed all it received: a stalled link): it lags a second.
  let at = '0/5000000';
  const primary = server(() => primaryAt(at, '00000005'));
  await check(primary);
  at = '0/5000100';
  await check(primary);
  vi.advanceTimersByTime(1_000);
  expect((await check(replicaAt('0/5000000', 0))).lag).toBe(1_000);
  // The wall clock steps 10 minutes on (or back) meanwhile: still a second more.
  vi.setSystemTime(Date.now() + 600_000);
  vi.advanceTimersByTime(1_000);
  expect((await check(replicaAt('0/5000000', 0))).lag).toBe(2_000);
  vi.setSystemTime(Date.now() - 1_200_000);
  vi.advanceTimersByTime(1_000);
  expect((await check(replicaAt('0/5000000', 0))).lag).toBe(3_000);
});

/**
 * A pg-native `Client` as pg 8.23.1 makes it (lib/native/client.js): `connectionParameters`,
 * `getTransactionStatus()` and the `_queryable`/`_ending` flags as pg's own Client, but no
 * `readyForQuery`. Its queries are answered here; every instance made is counted.
 */
let made = 0;
class NativeLikeClient {
  readonly connectionParameters = { host: '127.0.0.1', port: 5432, user: 'u', database: 'd' };
  _queryable = true;
  _ending = false;
  queries = 0;
  constructor(_options?: object) {
    made++;
  }
  getTransactionStatus() {
    return 'I';
  }
  on() {
    return this;
  }
  async connect() {}
  async end() {}
  async query() {
    this.queries++;
    return { rows: [primaryAt('0/5000100', '00000005')] };
  }
}

it('an idle pg-native Client is checked through itself, not on a new connection each check', async () => {
  const roles = pgRoles<PgQueryable>({ timeout: 1_000 });
  const check = roles.check as (e: Endpoint<PgQueryable>) => Promise<{ role: string }>;
  const client = new NativeLikeClient();
  made = 0;
  for (let i = 0; i < 5; i++) {
    expect((await check({ name: 'db', target: client as unknown as PgQueryable } as Endpoint<PgQueryable>)).role).toBe(
      'primary',
    );
  }
  expect({ connectionsOpened: made, queriesThroughIt: client.queries }).toEqual({
    connectionsOpened: 0,
    queriesThroughIt: 5,
  });
});
