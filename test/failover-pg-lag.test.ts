import { setTimeout as sleep } from 'node:timers/promises';
import { createBus } from '@holdfast/core';
import { failover } from '@holdfast/failover';
import { pgRole, pgRoles } from '@holdfast/failover/pg';
import { describe, expect, it } from 'vitest';
import { usePgPair } from './support/pg-pair-use.js';
import { type PgPair, postgresAvailable } from './support/postgres.js';

/**
 * `roles.maxLag` on a real PostgreSQL pair: an idle replica that streams from its primary is
 * fresh (lag 0, though it replayed nothing lately); once its primary is gone its lag is unknown
 * (having replayed all it received says nothing then), and with a bound no read goes to it.
 */

async function until(what: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await what())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(20);
  }
}

describe.skipIf(!postgresAvailable())('failover on PostgreSQL: replica lag and maxLag', () => {
  let pair: PgPair;

  const { pool } = usePgPair({
    // Bounds no test asserts on: room for a loaded machine (load 20 on two cores), where a check or
    // a write waiting 500 ms for a connection timed out and the write found no primary.
    pool: { max: 2, connectionTimeoutMillis: 5_000 },
    started: (started) => {
      pair = started;
    },
  });

  it('a replica restarted while its primary is idle: it streams, replayed all it has, its lag is 0 again', async () => {
    const replica = pool(pair.replica);
    await until(async () => (await pgRole(replica, 1_000)).lag === 0);
    // Restarted, it replays its own WAL to the end, then streams from the start of that segment:
    // it has received less than it replayed, and its idle primary sends nothing new.
    await pair.replica.kill();
    await pair.replica.start();
    await until(() => pair.replica.sql('select status from pg_stat_wal_receiver') === 'streaming');
    const report = await pgRole(replica, 1_000);
    expect(report).toMatchObject({ role: 'replica', lag: 0 });
  }, 30_000);

  it('a replica whose WAL receiver is frozen while the primary writes: it has replayed all it received, yet past maxLag it takes no reads, none stale', async () => {
    const primary = pool(pair.primary);
    const replica = pool(pair.replica);
    pair.primary.sql('create table frozen_link (id int primary key)');
    await until(() => pair.replica.sql("select to_regclass('frozen_link') is not null") === 't');
    const db = failover({
      bus: createBus(),
      policies: false,
      endpoints: [
        { name: 'primary', target: primary },
        { name: 'replica', target: replica },
      ],
      // maxLag is what is tested; a role check's timeout is not (at 500 ms, a check of the primary
      // timed out at load 20: "no primary to write to (primary: unreachable (E_TIMEOUT))").
      roles: pgRoles({ interval: 100, timeout: 5_000, maxLag: 500 }),
      retry: false,
    });
    // A slow link, at its worst: the replica's WAL receiver stops taking WAL (SIGSTOP), it
    // still shows as streaming and has replayed all it received.
    const receiver = Number(pair.replica.sql('select pid from pg_stat_wal_receiver'));
    let acked = 0;
    const stale: { endpoint: string; seen: number; acked: number }[] = [];
    try {
      await until(() => db.snapshot().endpoints.every((e) => e.discovered !== 'unknown'));
      process.kill(receiver, 'SIGSTOP');
      for (let i = 1; i <= 30; i++) {
        await db.execute((e) => e.target.query('insert into frozen_link (id) values ($1)', [i]));
        acked = i;
        await sleep(30);
      }
      // Past maxLag (500 ms) since the first write it did not get: reads see every write.
      for (let i = 0; i < 10; i++) {
        const { endpoint, seen } = await db.execute(
          async (e) => {
            const r = await e.target.query<{ n: number }>('select count(*)::int as n from frozen_link');
            return { endpoint: e.name, seen: r.rows[0]?.n ?? 0 };
          },
          { intent: 'read' },
        );
        if (seen < acked) stale.push({ endpoint, seen, acked });
      }
    } finally {
      process.kill(receiver, 'SIGCONT');
      db.dispose();
    }
    expect(stale).toEqual([]);
    // Its link back, it catches up and takes reads again.
    await until(async () => (await pgRole(replica, 1_000)).lag === 0);
  }, 30_000);

  it('an idle streaming replica takes reads under maxLag; once its primary is gone, its unknown lag keeps reads off it', async () => {
    const primary = pool(pair.primary);
    const replica = pool(pair.replica);
    // Idle and streaming: nothing to replay is not lag.
    await until(async () => (await pgRole(replica, 1_000)).lag === 0);
    const bounded = failover({
      bus: createBus(),
      policies: false,
      endpoints: [
        { name: 'primary', target: primary },
        { name: 'replica', target: replica },
      ],
      roles: pgRoles({ interval: 200, timeout: 5_000, maxLag: 5_000 }),
      retry: false,
    });
    const unbounded = failover({
      bus: createBus(),
      policies: false,
      endpoints: [
        { name: 'primary', target: primary },
        { name: 'replica', target: replica },
      ],
      roles: pgRoles({ interval: 200, timeout: 5_000 }),
      retry: false,
    });
    try {
      const read = (set: typeof bounded) =>
        set
          .execute(async (e) => (await e.target.query('select 1')).rowCount && e.name, { intent: 'read' })
          .then(
            (name) => String(name),
            (error: { code?: string }) => `failed: ${error.code}`,
          );
      await until(() => bounded.snapshot().endpoints.every((e) => e.discovered !== 'unknown'));
      // A replica checked in the set's first round has an unknown lag until it is asked again once
      // every endpoint has answered (under CI load, that second check came after the reads began).
      await until(() => bounded.snapshot().endpoints.find((e) => e.name === 'replica')?.lag === 0);
      const before: string[] = [];
      for (let i = 0; i < 5; i++) before.push(await read(bounded));
      expect(before).toEqual(Array(5).fill('replica'));

      await pair.primary.kill();
      // Its WAL receiver is gone: the replica replayed all it received, yet its lag is unknown.
      await until(async () => (await pgRole(replica, 1_000)).lag === undefined);
      await until(() => bounded.snapshot().endpoints.find((e) => e.name === 'replica')?.lag === null);
      await until(() => bounded.snapshot().endpoints.find((e) => e.name === 'primary')?.discovered === 'unreachable');
      const after: string[] = [];
      for (let i = 0; i < 5; i++) after.push(await read(bounded));
      expect(after.filter((r) => r === 'replica')).toEqual([]);
      expect(after).toEqual(Array(5).fill('failed: E_NO_HEALTHY_ENDPOINT'));
      // Without a bound, the replica still serves reads: an unknown lag only matters under maxLag.
      await until(() => unbounded.snapshot().endpoints.find((e) => e.name === 'replica')?.lag === null);
      expect(await read(unbounded)).toBe('replica');
    } finally {
      bounded.dispose();
      unbounded.dispose();
    }
  }, 60_000);
});
