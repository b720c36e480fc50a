import { setTimeout as sleep } from 'node:timers/promises';
import { createBus } from '@holdfast/core';
import { type Failover, failover } from '@holdfast/failover';
import { pgRoles } from '@holdfast/failover/pg';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { advance, readOrders, until, usePgPair } from './support/pg-pair-use.js';
import { type PgNode, type PgPair, postgresAvailable } from './support/postgres.js';

/**
 * A user's first day: the pools connect as a plain role (`app`: LOGIN, CONNECT on the database,
 * SELECT and INSERT on its table; no superuser, no pg_monitor, no pg_read_all_stats). PostgreSQL
 * hides every column of `pg_stat_wal_receiver` but `pid` from such a role (`status`,
 * `received_tli`), while `pg_control_*()` stay readable. `pgRoles()` must still find the roles
 * (writes reach the primary, replicas take reads) and, before and after a promotion, give no
 * stale read under `maxLag`. What such a role cannot see (the timeline a replica's WAL receiver
 * streams) costs reads, never freshness: a replica cascading from the promoted server takes none
 * until a restartpoint records the new timeline, or `GRANT pg_read_all_stats TO app`.
 */

describe.skipIf(!postgresAvailable())('failover on PostgreSQL through a plain role (no pg_monitor)', () => {
  let pair: PgPair;
  let follower: PgNode;
  let cascade: PgNode;
  let db: Failover<pg.Pool> | undefined;

  const { pool } = usePgPair({
    pool: { max: 2, connectionTimeoutMillis: 5_000 },
    async started(started) {
      pair = started;
      pair.primary.sql('create table orders (id int primary key)');
      pair.primary.sql('create role app login');
      pair.primary.sql('revoke connect on database postgres from public');
      pair.primary.sql('grant connect on database postgres to app');
      pair.primary.sql('grant select, insert on orders to app');
      // One more replica of the primary (to be deposed), one cascading from the replica (to be promoted).
      follower = await pair.addReplica('pg-follower', pair.primary);
      // (A base backup of a standby needs full_page_writes, off here: a replica of the primary re-pointed.)
      cascade = await pair.addReplica('pg-cascade', pair.primary);
      const { host, port } = pair.replica;
      cascade.sql(`alter system set primary_conninfo = 'user=postgres host=${host} port=${port}'`);
      cascade.sql('select pg_reload_conf()');
      await until(() => cascade.sql('select sender_port from pg_stat_wal_receiver') === String(port));
    },
    stopping: () => db?.dispose(),
    timeout: 120_000,
  });

  const name = (e: { name: string }) => e.name;
  const endpoint = (n: string) => db?.snapshot().endpoints.find((e) => e.name === n);

  async function write(from: number, to: number): Promise<string[]> {
    const reached: string[] = [];
    for (let i = from; i <= to; i++)
      reached.push(
        await (db as Failover<pg.Pool>).execute(async (e) => {
          await e.target.query('insert into orders (id) values ($1)', [i]);
          return name(e);
        }),
      );
    return reached;
  }

  it('finds the primary and the replicas, and gives no stale read, as a role without monitoring grants', async () => {
    const as = (node: PgNode) => pool({ ...node.connection, user: 'app' });
    // The role sees no receiver's status nor timeline: what the checks run on.
    const hidden = await as(pair.replica).query('select status, received_tli from pg_stat_wal_receiver');
    expect(hidden.rows).toEqual([{ status: null, received_tli: null }]);

    db = failover({
      bus: createBus(),
      policies: false,
      endpoints: [
        { name: 'a', target: as(pair.primary) },
        { name: 'b', target: as(pair.replica) },
        { name: 'follower', target: as(follower) },
        { name: 'cascade', target: as(cascade) },
      ],
      roles: pgRoles({ interval: 100, timeout: 5_000, maxLag: 1_000 }),
      retry: false,
    });
    await until(() =>
      ['a', 'b', 'follower', 'cascade'].every((n) => endpoint(n)?.discovered === (n === 'a' ? 'primary' : 'replica')),
    );
    expect(await write(1, 20)).toEqual(Array(20).fill('a'));
    // Acknowledged is not yet streamed (synchronous_commit is off here): a read within maxLag of a
    // write may miss it. Once every replica has them, none may.
    for (const node of [pair.replica, follower, cascade])
      await until(() => node.sql('select count(*) from orders') === '20');
    await until(() => ['b', 'follower', 'cascade'].every((n) => endpoint(n)?.lag === 0));
    const before = await readOrders(db as Failover<pg.Pool>, 30, 20);
    expect(before.stale).toEqual([]);
    expect(new Set(before.served).size).toBeGreaterThan(1);
    expect(before.served).not.toContain('a');
  }, 120_000);

  it('after a promotion: writes reach the promoted server, no stale read from a replica of the deposed one, reads back once it follows the new timeline', async () => {
    const set = db as Failover<pg.Pool>;
    const old = pair.primary;
    const promoted = pair.replica;
    const oldLsn = old.sql('select pg_current_wal_lsn()');
    await until(() => promoted.sql(`select pg_last_wal_replay_lsn() >= '${oldLsn}'`) === 't');
    await promoted.promote();
    // The deposed primary runs on (a client still on it, its checkpoints): its follower replays past the fork.
    advance(old, 4);
    const ran = old.sql('select pg_current_wal_lsn()');
    await until(() => follower.sql(`select pg_last_wal_replay_lsn() >= '${ran}'`) === 't');
    await until(() => endpoint('b')?.discovered === 'primary');

    expect(await write(21, 40)).toEqual(Array(20).fill('b'));
    expect(promoted.sql('select count(*) from orders')).toBe('40');
    await until(() => cascade.sql('select count(*) from orders') === '40');
    // Past maxLag since the first write the follower never gets.
    await sleep(1_500);
    const after = await readOrders(db as Failover<pg.Pool>, 30, 40);
    expect(after.stale).toEqual([]);
    expect(endpoint('follower')?.lag).toBe(null);
    // The cascading replica streams timeline 2, which this role cannot see before a restartpoint:
    // an unknown lag, no reads (safe, not fresh-looking).
    expect(endpoint('cascade')?.lag).toBe(null);

    // The grant the README names: the receiver's timeline is shown, and the cascading replica takes reads.
    old.sql('select 1'); // the deposed primary is still up
    promoted.sql('grant pg_read_all_stats to app');
    await until(() => endpoint('cascade')?.lag === 0);
    const granted = await readOrders(db as Failover<pg.Pool>, 30, 40);
    expect(granted.stale).toEqual([]);
    expect(granted.served).toContain('cascade');
    expect(endpoint('follower')?.lag).toBe(null);

    // Rebuilt from the new primary, the deposed primary's follower takes reads again.
    await follower.rebuildAsReplicaOf(promoted);
    await until(() => endpoint('follower')?.lag === 0);
    const rebuilt = await readOrders(db as Failover<pg.Pool>, 30, 40);
    expect(rebuilt.stale).toEqual([]);
    expect(rebuilt.served).toContain('follower');
    // The deposed primary takes no write.
    expect(set.snapshot().endpoints.find((e) => e.name === 'a')?.discovered).toBe('fenced');
  }, 180_000);
});
