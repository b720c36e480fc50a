import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { advance, readOrders, until, usePgTrio } from './support/pg-pair-use.js';
import { type PgNode, type PgPair, postgresAvailable } from './support/postgres.js';

/**
 * `pgRoles()` takes a replica's lag as unknown while it is behind the set's first sighting of its
 * primary; past it, its lag counts from the first sighting past what it replayed. "Past" is an LSN
 * compared with the judged primary's: one of another timeline (a promotion the set never saw)
 * counts positions of another history, and a replica far ahead there misses every write the
 * judged primary acknowledged since the fork.
 */

const maxLag = 1_000;

describe.skipIf(!postgresAvailable())('failover on PostgreSQL: past the first sighting, on another timeline', () => {
  let pair: PgPair;
  let c: PgNode;

  const { pool, pgSet, endpoint } = usePgTrio({
    maxLag,
    started(started, third) {
      pair = started;
      c = third;
    },
    timeout: 120_000,
  });

  it('under constant writes, sets started mid-load (superuser, plain role) and a primary restarted: replicas take reads within a few checks, no read misses a write acknowledged past maxLag', async () => {
    const a = pair.primary;
    const b = pair.replica;
    a.sql('create table load (id int primary key)');
    a.sql('grant select on load to app');
    const writer = pool(a, { max: 1 });
    const acks: number[] = [];
    let writing = true;
    let failedWrites = 0;
    const load = (async () => {
      for (let i = 1; writing; i++) {
        try {
          await writer.query('insert into load (id) values ($1)', [i]);
          acks.push(performance.now());
        } catch {
          failedWrites++;
          await sleep(50);
        }
        await sleep(5);
      }
    })();
    try {
      await sleep(500);
      const figures: Record<string, unknown> = {};
      for (const user of ['postgres', 'app']) {
        const start = performance.now();
        const set = pgSet({ a, b, c }, user);
        await until(
          () => ['b', 'c'].every((n) => (endpoint(set, n)?.lag ?? Number.POSITIVE_INFINITY) <= maxLag),
          20_000,
        );
        const checksToReads = Math.ceil((performance.now() - start) / 100);
        let stale = 0;
        let refused = 0;
        const served: Record<string, number> = {};
        const read = async () => {
          const asked = performance.now();
          const owed = acks.filter((t) => t <= asked - maxLag).length;
          const r = await set
            .execute(
              async (e) => ({
                name: e.name,
                n: (await e.target.query<{ n: number }>('select count(*)::int as n from load')).rows[0]?.n ?? 0,
              }),
              { intent: 'read' },
            )
            .catch(() => undefined);
          if (r === undefined) refused++;
          else {
            served[r.name] = (served[r.name] ?? 0) + 1;
            if (r.n < owed) stale++;
          }
        };
        for (let i = 0; i < 40; i++) {
          await read();
          await sleep(25);
        }
        figures[user] = { checksToReads, stale, refused, served: { ...served } };
        console.log(
          JSON.stringify({ user, ...(figures[user] as object), lags: ['b', 'c'].map((n) => endpoint(set, n)?.lag) }),
        );
        if (user === 'app') {
          // The primary restarted (a new run, its LSN going on): reads on, none stale.
          await a.stop();
          await a.start();
          stale = 0;
          refused = 0;
          for (const k of Object.keys(served)) delete served[k];
          // Its replicas' receivers reconnect (wal_retrieve_retry_interval, 5 s): no lag meanwhile.
          const back = performance.now();
          while ((served.b ?? 0) + (served.c ?? 0) === 0 && performance.now() - back < 20_000) {
            await read();
            await sleep(25);
          }
          const msToReplicaReads = Math.round(performance.now() - back);
          for (let i = 0; i < 40; i++) {
            await read();
            await sleep(25);
          }
          figures.restarted = { msToReplicaReads, stale, refused, served };
        }
        expect(stale).toBe(0);
        expect((served.b ?? 0) + (served.c ?? 0)).toBeGreaterThan(0);
      }
      console.log(JSON.stringify({ ...figures, writes: acks.length, failedWrites }));
    } finally {
      writing = false;
      await load;
    }
  }, 120_000);

  it('a replica following a promotion the set never saw, far ahead of the primary it writes to: no read misses a write acknowledged past maxLag', async () => {
    const a = pair.primary;
    const b = pair.replica;
    a.sql('insert into orders values (1)');
    const at = a.sql('select pg_current_wal_lsn()');
    for (const n of [b, c]) await until(() => n.sql(`select pg_last_wal_replay_lsn() >= '${at}'`) === 't');
    // C cascades from B, then B is promoted (timeline 2): C follows it. A runs on, on timeline 1.
    c.sql(`alter system set primary_conninfo = 'user=postgres host=${b.host} port=${b.port}'`);
    c.sql('select pg_reload_conf()');
    await until(() => c.sql('select sender_port from pg_stat_wal_receiver') === String(b.port));
    await b.promote();
    advance(b, 4);
    const ahead = b.sql('select pg_current_wal_lsn()');
    await until(() => c.sql(`select pg_last_wal_replay_lsn() >= '${ahead}'`) === 't');
    // A set that lists A and C (B is not in it yet), through a plain role: writes go to A.
    const set = pgSet({ a, c }, 'app');
    await until(() => endpoint(set, 'a')?.discovered === 'primary' && endpoint(set, 'c')?.discovered === 'replica');
    const reached: string[] = [];
    for (let i = 2; i <= 21; i++)
      reached.push(
        await set.execute(async (e) => {
          await e.target.query('insert into orders (id) values ($1)', [i]);
          return e.name;
        }),
      );
    const acked = Number(a.sql('select count(*) from orders'));
    await sleep(maxLag + 500);
    const reads = await readOrders(set, 30, acked);
    console.log(
      JSON.stringify({
        reached: reached.filter((n) => n === 'a').length,
        acked,
        onC: c.sql('select count(*) from orders'),
        lsn: { a: a.sql('select pg_current_wal_lsn()'), c: c.sql('select pg_last_wal_replay_lsn()') },
        control: c.sql('select min_recovery_end_timeline from pg_control_recovery()'),
        checkpoint: c.sql('select timeline_id from pg_control_checkpoint()'),
        lag: endpoint(set, 'c')?.lag,
        stale: reads.stale.length,
        served: reads.served.length,
      }),
    );
    expect(reads.stale).toEqual([]);
  }, 120_000);
});
