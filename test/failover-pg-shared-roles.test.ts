import { setTimeout as sleep } from 'node:timers/promises';
import { createBus } from '@holdfast/core';
import { type Failover, failover } from '@holdfast/failover';
import { pgRoles } from '@holdfast/failover/pg';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { usePgPair } from './support/pg-pair-use.js';
import { type PgNode, type PgPair, postgresAvailable } from './support/postgres.js';

/**
 * One `pgRoles()` shared by two failover sets running at once, each with pools of its own to the
 * same servers (a writes set and a reads set, or one per tenant). pgRoles() remembered primaries
 * by target: the one primary, seen through two pools, was two primaries on one timeline (a split
 * brain), so both sets' replicas had an unknown lag and took no read under `maxLag`.
 */

async function until(what: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await what())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(20);
  }
}

describe.skipIf(!postgresAvailable())('failover on PostgreSQL: one pgRoles() shared by two sets', () => {
  let pair: PgPair;
  const sets: Failover<pg.Pool>[] = [];
  /** A set over pools of its own to the primary and the replica. */
  const set = (name: string, roles: ReturnType<typeof pgRoles<pg.Pool>>, interval?: number) => {
    const db = failover({
      name,
      bus: createBus(),
      policies: false,
      endpoints: [
        { name: 'primary', target: pool(pair.primary) },
        { name: 'replica', target: pool(pair.replica) },
      ],
      roles: interval === undefined ? roles : { ...roles, interval },
      retry: false,
    });
    sets.push(db);
    return db;
  };
  const lag = (db: Failover<pg.Pool>) => db.snapshot().endpoints.find((e) => e.name === 'replica')?.lag;
  const read = (db: Failover<pg.Pool>) =>
    db
      .execute(async (e) => (await e.target.query('select 1')).rowCount && e.name, { intent: 'read' })
      .then(
        (name) => String(name),
        (error: { code?: string }) => `failed: ${error.code}`,
      );

  const { pool } = usePgPair({
    // Room for a loaded machine: no test asserts on these bounds.
    pool: { max: 3, connectionTimeoutMillis: 5_000 },
    async started(started) {
      pair = started;
      pair.primary.sql('create table shared_roles (id int primary key)');
      await until(() => pair.replica.sql("select to_regclass('shared_roles') is not null") === 't');
    },
    stopping() {
      for (const db of sets) db.dispose();
    },
  });

  it('both sets: the replica takes reads under maxLag, the primary takes writes, no split brain', async () => {
    // The check's timeout is not what is tested: room for a loaded machine.
    const roles = pgRoles<pg.Pool>({ interval: 200, timeout: 5_000, maxLag: 5_000 });
    const writes = set('writes', roles);
    const reads = set('reads', roles);
    await until(() => [writes, reads].every((db) => db.snapshot().endpoints.every((e) => e.discovered !== 'unknown')));
    // A few rounds of checks of both sets, interleaved.
    await sleep(1_000);
    for (const db of [writes, reads]) {
      expect(db.snapshot().splitBrain).toBeNull();
      expect(db.snapshot().primary).toBe('primary');
      expect(lag(db)).toBe(0);
      expect(await read(db)).toBe('replica');
      expect(await db.execute(async (e) => (await e.target.query('select 1')).rowCount && e.name)).toBe('primary');
    }
  }, 60_000);

  it('both sets, the replica’s WAL receiver stalled while the primary writes: its lag is raised past maxLag in both, no read is stale', async () => {
    const roles = pgRoles<pg.Pool>({ interval: 100, timeout: 5_000, maxLag: 500 });
    const writes = set('stall-writes', roles);
    const reads = set('stall-reads', roles);
    await until(() => [writes, reads].every((db) => lag(db) === 0));
    const receiver = Number(pair.replica.sql('select pid from pg_stat_wal_receiver'));
    let acked = 0;
    const stale: { set: string; endpoint: string; seen: number; acked: number }[] = [];
    process.kill(receiver, 'SIGSTOP');
    try {
      for (let i = 1; i <= 30; i++) {
        await writes.execute((e) => e.target.query('insert into shared_roles (id) values ($1)', [i]));
        acked = i;
        await sleep(30);
      }
      await until(() => [writes, reads].every((db) => (lag(db) ?? 0) > 500));
      for (const db of [writes, reads])
        for (let i = 0; i < 5; i++) {
          const { endpoint, seen } = await db.execute(
            async (e) => {
              const r = await e.target.query<{ n: number }>('select count(*)::int as n from shared_roles');
              return { endpoint: e.name, seen: r.rows[0]?.n ?? 0 };
            },
            { intent: 'read' },
          );
          if (seen < acked) stale.push({ set: db.name, endpoint, seen, acked });
        }
    } finally {
      process.kill(receiver, 'SIGCONT');
    }
    expect(stale).toEqual([]);
    // Its link back, it catches up and takes reads again, in both.
    await until(() => [writes, reads].every((db) => lag(db) === 0));
    for (const db of [writes, reads]) expect(await read(db)).toBe('replica');
  }, 60_000);

  it('the primary restarted: the set checking often takes reads on the replica again without waiting for the other set’s next check of the primary', async () => {
    const roles = pgRoles<pg.Pool>({ timeout: 5_000, maxLag: 5_000 });
    const often = set('often', roles, 100);
    // Checks the primary once a minute: its last sighting is of the run before the restart.
    const seldom = set('seldom', roles, 60_000);
    await until(() => [often, seldom].every((db) => lag(db) === 0));
    await pair.primary.kill();
    await pair.primary.start();
    // The replica's WAL receiver streams again (it retries every 5 s): its own figures say lag 0.
    await until(() => pair.replica.sql('select status from pg_stat_wal_receiver') === 'streaming');
    await until(() => often.snapshot().primary === 'primary');
    // Before: the primary's run before the restart, seen through the other set's pool, and its run
    // now were two primaries on one timeline until that set checked it again, a minute later.
    await until(() => lag(often) === 0, 15_000);
    expect(await read(often)).toBe('replica');
  }, 60_000);
});

describe.skipIf(!postgresAvailable())('failover on PostgreSQL: a split brain, one pgRoles() shared by two sets', () => {
  let pair: PgPair;
  let b: PgNode;
  let c: PgNode;
  let d: PgNode;

  const { pool } = usePgPair({
    pool: { max: 2, connectionTimeoutMillis: 5_000 },
    async started(started) {
      pair = started;
      b = pair.replica;
      c = await pair.addReplica('pg-c', pair.primary);
      await pair.primary.kill();
      // Two replicas of one primary promoted apart: both on timeline 2. pg-d follows pg-b.
      await b.promote();
      await c.promote();
      d = await pair.addReplica('pg-d', b);
    },
    timeout: 120_000,
  });

  it('still a split brain in both sets: a replica’s lag stays unknown, no read under maxLag', async () => {
    const roles = pgRoles<pg.Pool>({ interval: 200, timeout: 5_000, maxLag: 5_000 });
    const sets = ['one', 'two'].map((name) =>
      failover({
        name,
        bus: createBus(),
        policies: false,
        endpoints: [
          { name: 'pg-b', target: pool(b) },
          { name: 'pg-c', target: pool(c) },
          { name: 'pg-d', target: pool(d) },
        ],
        roles,
        retry: false,
      }),
    );
    try {
      await until(() => sets.every((db) => db.snapshot().endpoints.every((e) => e.discovered !== 'unknown')));
      await sleep(1_000);
      for (const db of sets) {
        expect(db.snapshot().splitBrain?.endpoints).toEqual(['pg-b', 'pg-c']);
        expect(db.snapshot().endpoints[2]).toMatchObject({ discovered: 'replica', lag: null });
        await expect(db.execute((e) => e.name, { intent: 'read' })).rejects.toMatchObject({
          code: 'E_NO_HEALTHY_ENDPOINT',
        });
      }
    } finally {
      for (const db of sets) db.dispose();
    }
  }, 60_000);
});
