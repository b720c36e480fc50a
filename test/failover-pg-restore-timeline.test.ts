import { setTimeout as sleep } from 'node:timers/promises';
import type { Endpoint } from '@holdfast/failover';
import { type PgQueryable, pgRole, pgRoles } from '@holdfast/failover/pg';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { usePgPair } from './support/pg-pair-use.js';
import { type PgPair, postgresAvailable } from './support/postgres.js';

/**
 * `pgRoles()` raises a replica's lag from its cluster's primary WAL, as seen by earlier checks. A
 * cluster restored from a backup taken before a failover keeps its system identifier and writes on
 * the LOWER timeline the backup had: the promoted primary's sightings, on the higher timeline, are
 * WAL the restored primary never reaches, and must not hold its replicas behind.
 */

async function until(what: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await what())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(20);
  }
}

/** Writes and switches WAL segments (1 MB each): the LSN moves `n` segments on. */
function advance(node: PgPair['primary'], n: number): void {
  node.sql('create table if not exists filler (id serial primary key, at timestamptz default now())');
  for (let i = 0; i < n; i++) node.sql('insert into filler default values; select pg_switch_wal()');
}

describe.skipIf(!postgresAvailable())('pgRoles on PostgreSQL: a primary restored onto a lower timeline', () => {
  let pair: PgPair;

  const { pool } = usePgPair({
    pool: { max: 2, connectionTimeoutMillis: 500 },
    started: (started) => {
      pair = started;
    },
  });

  it("the restored primary's streaming replica, caught up, has lag 0, not the time since the lost timeline's WAL was seen", async () => {
    const timelineOf = (node: PgPair['primary']) =>
      Number.parseInt(node.sql('select substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)'), 16);
    // The backup: a copy of timeline 1, taken now and set aside.
    const backup = await pair.addReplica('pg-backup', pair.primary);
    await backup.kill();
    advance(pair.primary, 2);
    // The primary is lost; its replica is promoted onto timeline 2 and writes on, past the backup.
    await until(() => pair.replica.sql('select pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn()') === 't');
    await pair.primary.kill();
    await pair.replica.promote();
    expect(timelineOf(pair.replica)).toBe(2);
    advance(pair.replica, 4);

    const roles = pgRoles<PgQueryable>({ timeout: 2_000 });
    const check = roles.check as (e: Endpoint<PgQueryable>, s?: AbortSignal) => Promise<{ role: string; lag?: number }>;
    const endpoint = (name: string, target: pg.Pool) => ({ name, target }) as unknown as Endpoint<PgQueryable>;
    const promoted = endpoint('pg-b', pool(pair.replica));
    for (let i = 0; i < 5; i++) expect((await check(promoted)).role).toBe('primary');

    // Disaster on timeline 2: the backup is restored as the primary (timeline 1, an older LSN), and
    // the old primary's server is rebuilt as its replica.
    await pair.replica.kill();
    await backup.restoreAsPrimary();
    expect(timelineOf(backup)).toBe(1);
    await pair.primary.rebuildAsReplicaOf(backup);
    const restored = endpoint('pg-backup', pool(backup));
    const replica = endpoint('pg-a', pool(pair.primary));
    const replicaPool = (replica as unknown as { target: pg.Pool }).target;
    // The replica's own figures: streaming, caught up.
    await until(async () => (await pgRole(replicaPool, 2_000)).lag === 0);

    // Checked as a set checks them, a round at a time; the lost primary's target fails its checks.
    const lags: (number | undefined)[] = [];
    for (let round = 0; round < 10; round++) {
      await check(promoted).catch(() => undefined);
      expect((await check(restored)).role).toBe('primary');
      const r = await check(replica);
      expect(r.role).toBe('replica');
      lags.push(r.lag);
      if (r.lag === 0) break;
      await sleep(50);
    }
    // Before the fix: the time since timeline 2's primary was seen past the replica's LSN (seconds),
    // every round, until 64 sightings of the restored primary pushed timeline 2's out.
    expect(lags.at(-1)).toBe(0);
  }, 90_000);
});
