import type { Failover } from '@holdfast/failover';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { advance, deposedSet, readOrders, until, usePgPair } from './support/pg-pair-use.js';
import { type PgNode, type PgPair, postgresAvailable } from './support/postgres.js';

/**
 * A hostile review of "a replica following a deposed primary takes no reads under maxLag" on real
 * PostgreSQL. The set runs through the failover (as a service does: it saw the old primary before
 * the promotion), the deposed primary runs on and its follower replays past the fork, and then the
 * promoted primary misses checks (frozen: a stall, a partition from the service). The follower has
 * none of the promoted primary's writes whether or not that primary answers this second.
 */

describe.skipIf(!postgresAvailable())(
  'failover on PostgreSQL: the new primary misses checks beside a deposed one',
  () => {
    let pair: PgPair;
    let follower: PgNode;
    let db: Failover<pg.Pool> | undefined;

    const { pool } = usePgPair({
      // A read sent to the frozen primary ends (query_timeout) and fails.
      pool: { max: 2, connectionTimeoutMillis: 5_000, query_timeout: 500 },
      async started(started) {
        pair = started;
        pair.primary.sql('create table orders (id int primary key)');
        follower = await pair.addReplica('pg-follower', pair.primary);
      },
      stopping() {
        pair?.replica.resume();
        db?.dispose();
      },
    });

    it('a replica of the deposed primary serves no read while the promoted primary is frozen', async () => {
      const old = pair.primary;
      const promoted = pair.replica;
      db = deposedSet(pool, { old, promoted, follower }, 300);
      const set = db;
      const endpoint = (n: string) => set.snapshot().endpoints.find((e) => e.name === n);
      await until(() => endpoint('old')?.discovered === 'primary' && endpoint('follower')?.lag === 0);

      const oldLsn = old.sql('select pg_current_wal_lsn()');
      await until(() => promoted.sql(`select pg_last_wal_replay_lsn() >= '${oldLsn}'`) === 't');
      await promoted.promote();
      advance(old, 4);
      const ran = old.sql('select pg_current_wal_lsn()');
      await until(() => follower.sql(`select pg_last_wal_replay_lsn() >= '${ran}'`) === 't');
      await until(() => endpoint('promoted')?.discovered === 'primary');
      for (let i = 1; i <= 20; i++)
        await set.execute((e) => e.target.query('insert into orders (id) values ($1)', [i]));
      await until(() => endpoint('follower')?.lag === null);

      promoted.freeze();
      let reads: Awaited<ReturnType<typeof readOrders>>;
      try {
        // Its checks time out (300 ms): reads for 2 s, one every 20 ms.
        reads = await readOrders(set, 100, 20, 20);
      } finally {
        promoted.resume();
      }
      expect({
        stale: reads.stale.length,
        fromFollower: reads.served.filter((s) => s === 'follower').length,
      }).toEqual({ stale: 0, fromFollower: 0 });
    }, 120_000);
  },
);
