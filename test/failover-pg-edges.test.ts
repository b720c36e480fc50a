import { setTimeout as sleep } from 'node:timers/promises';
import { createBus, type EventOf } from '@holdfast/core';
import { failover } from '@holdfast/failover';
import { pgRole, pgRoles } from '@holdfast/failover/pg';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PgNode, type PgPair, postgresAvailable, startPgPair } from './support/postgres.js';

/**
 * `pgRoles()` at the edges of what `pg` gives it, on one real PostgreSQL pair: a pool without
 * `connectionTimeoutMillis` in front of a frozen server, a `pg.Client` busy with a long query or
 * held in a failed transaction, a pool whose password pg hides from its enumerable options.
 */

async function until(what: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await what())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(20);
  }
}

/** How `p` settled within `ms`: its value, its error, or 'pending'. */
function settled<T>(p: Promise<T>, ms: number): Promise<T | { error: unknown } | 'pending'> {
  return Promise.race([
    p.then(
      (v) => v,
      (error: unknown) => ({ error }),
    ),
    sleep(ms).then(() => 'pending' as const),
  ]);
}

/** Backends of the server with this application_name (pg_stat_activity). */
function backends(node: PgNode, app: string): number {
  return Number(node.sql(`select count(*) from pg_stat_activity where application_name = '${app}'`));
}

describe.skipIf(!postgresAvailable())('pgRoles() at the edges of pg (real PostgreSQL)', () => {
  let pair: PgPair;
  let a: PgNode;
  let b: PgNode;
  const closers: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    pair = await startPgPair();
    a = pair.primary;
    b = pair.replica;
    a.sql('create table orders (id text primary key)');
  }, 60_000);

  afterAll(async () => {
    b?.resume();
    await Promise.all(closers.map((close) => close().catch(() => {})));
    await pair?.stop();
  }, 30_000);

  function pool(node: PgNode, options: pg.PoolConfig = {}): pg.Pool {
    const p = new pg.Pool({ ...node.connection, ...options });
    p.on('error', () => {});
    closers.push(() => p.end());
    return p;
  }

  it('a pool without connectionTimeoutMillis before a frozen server: one check waits in it, not one per interval; a check ends at its timeout', async () => {
    const app = 'edges-frozen';
    const replica = pool(b, { application_name: app }); // pg's defaults: max 10, no connection timeout
    const db = failover({
      endpoints: [
        { name: 'pg-a', target: pool(a) },
        { name: 'pg-b', target: replica },
      ],
      roles: pgRoles({ interval: 50, timeout: 100 }),
      policies: false,
    });
    try {
      await until(() => db.snapshot().endpoints.every((e) => e.discovered !== 'unknown'));
      b.freeze();
      let most = 0;
      for (let i = 0; i < 40; i++) {
        most = Math.max(most, replica.totalCount + replica.waitingCount);
        await sleep(50);
      }
      // Asked straight, on its own deadline: not behind the pool's connect that never ends.
      const direct = await settled(pgRole(replica, 200), 2_000);
      b.resume();
      expect({ most, waiting: replica.waitingCount }).toEqual({ most: 1, waiting: 0 });
      expect(direct).toMatchObject({ error: { message: expect.stringMatching(/timed out|timeout/) } });
      // Resumed: the check that waited answers, and the pool holds what it needs, no pile of checks.
      await until(() => db.snapshot().endpoints.find((e) => e.name === 'pg-b')?.discovered === 'replica');
      expect(replica.totalCount).toBeLessThanOrEqual(1);
      await until(() => backends(b, app) <= 1);
    } finally {
      b.resume();
      db.dispose();
    }
  }, 30_000);

  it('a pg.Client busy with a long query: its check runs on a connection of its own, closed after; the primary is not called unreachable', async () => {
    const app = 'edges-client';
    const client = new pg.Client({ ...a.connection, application_name: app });
    client.on('error', () => {});
    await client.connect();
    closers.push(() => client.end());
    const bus = createBus();
    const roles: EventOf<'failover.role'>[] = [];
    bus.on('failover.role', (e) => void roles.push(e));
    const db = failover({
      endpoints: [
        { name: 'pg-a', target: client },
        { name: 'pg-b', target: pool(b) },
      ],
      roles: pgRoles({ interval: 100, timeout: 300 }),
      timeout: 5_000,
      bus,
      policies: false,
    });
    try {
      await until(() => db.snapshot().primary === 'pg-a');
      expect(backends(a, app)).toBe(1);
      // A report runs 1.5 s on the primary's client; a write is sent behind it.
      const report = db.execute((e) => e.target.query('select pg_sleep(1.5)'));
      await sleep(1_000);
      const write = await db
        .execute((e) => e.target.query('insert into orders (id) values ($1)', ['client-1']))
        .then(
          () => 'ok',
          (error: { code?: string }) => error.code,
        );
      await report;
      // A transaction failed and held open 1 s: a check inside it would fail with it.
      await db.execute(async (e) => {
        await e.target.query('begin');
        await e.target.query('select 1/0').catch(() => {});
        await sleep(1_000);
        await e.target.query('rollback');
      });
      expect(write).toBe('ok');
      expect(roles.filter((e) => e.endpoint === 'pg-a' && e.role !== 'primary')).toEqual([]);
      expect(db.snapshot().primary).toBe('pg-a');
      // Every connection of its own was closed: the server holds the user's one again.
      db.dispose();
      await until(() => backends(a, app) === 1);
    } finally {
      db.dispose();
    }
  }, 30_000);

  it('a full pool with a password: the check on a connection of its own logs in with it', async () => {
    // A role that must give its password over TCP (scram), the rest as before.
    a.sql("create role app login password 'app-secret'");
    a.sql('grant all on orders to app');
    const hba = a.sql('show hba_file');
    const lines = [
      'local all all trust',
      'host all app 127.0.0.1/32 scram-sha-256',
      'host all all 127.0.0.1/32 trust',
      'host replication all 127.0.0.1/32 trust',
    ];
    const values = lines.map((l, i) => `(${i}, '${l}')`).join(',');
    a.sql(`copy (select l from (values ${values}) v(n, l) order by n) to '${hba}'`);
    a.sql('select pg_reload_conf()');
    const small = pool(a, { user: 'app', password: 'app-secret', max: 1 });
    const db = failover({
      endpoints: [
        { name: 'pg-a', target: small },
        { name: 'pg-b', target: pool(b) },
      ],
      roles: pgRoles({ interval: 100, timeout: 500 }),
      timeout: 5_000,
      policies: false,
    });
    try {
      await until(() => db.snapshot().primary === 'pg-a');
      const report = db.execute((e) => e.target.query('select pg_sleep(1.5)'));
      await sleep(1_000);
      const write = await db
        .execute((e) => e.target.query('insert into orders (id) values ($1)', ['password-1']))
        .then(
          () => 'ok',
          (error: { code?: string }) => error.code,
        );
      await report;
      expect(write).toBe('ok');
    } finally {
      db.dispose();
    }
  }, 30_000);
});
