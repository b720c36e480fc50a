import { setTimeout as sleep } from 'node:timers/promises';
import { createBus, type EventOf } from '@holdfast/core';
import { type Failover, failover } from '@holdfast/failover';
import { pgRole, pgRoles } from '@holdfast/failover/pg';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { type PgNode, type PgPair, postgresAvailable, startPgPair } from './support/postgres.js';

/**
 * A hostile review of `failover({ roles: pgRoles() })` on real PostgreSQL clusters: two servers
 * promoted apart (a split brain on one timeline), a promotion while the old primary still takes
 * writes, a third server that never answers. Each counts acknowledged writes against the rows on
 * each server, and which server each write reached. And `pgRoles()` at the edges of what `pg`
 * gives it: a pool without `connectionTimeoutMillis` before a frozen server, a `pg.Client` busy
 * or in a failed transaction, a pool whose password pg hides. One pair serves the file, in order.
 */

const figures: Record<string, string | number>[] = [];
const pools: pg.Pool[] = [];

function pool(node: PgNode): pg.Pool {
  const p = new pg.Pool({ ...node.connection, max: 8, connectionTimeoutMillis: 3_000, idleTimeoutMillis: 5_000 });
  p.on('error', () => {});
  pools.push(p);
  return p;
}

async function until(what: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await what())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(20);
  }
}

interface Write {
  readonly id: string;
  readonly started: number;
  readonly ended: number;
  /** The server that acknowledged it; undefined when it failed. */
  readonly endpoint: string | undefined;
  readonly code: string | undefined;
  readonly message: string | undefined;
}

let seq = 0;

/** One insert every `every` ms through `db` until stopped. */
function writes(db: Failover<pg.Pool>, label: string, every = 50) {
  const out: Write[] = [];
  const pending = new Set<Promise<void>>();
  const tick = setInterval(() => {
    const id = `${label}-${++seq}`;
    const started = Date.now();
    const p = db
      .execute(async (e) => {
        await e.target.query('insert into orders (id) values ($1)', [id]);
        return e.name;
      })
      .then(
        (endpoint) => void out.push({ id, started, ended: Date.now(), endpoint, code: undefined, message: undefined }),
        (error: { code?: string; name?: string; message?: string }) =>
          void out.push({
            id,
            started,
            ended: Date.now(),
            endpoint: undefined,
            code: error.code ?? error.name,
            message: error.message,
          }),
      )
      .finally(() => pending.delete(p));
    pending.add(p);
  }, every);
  return {
    out,
    async stop() {
      clearInterval(tick);
      await Promise.all(pending);
      return out;
    },
  };
}

function rows(node: PgNode, label: string): Set<string> {
  if (!node.running) return new Set();
  return new Set(node.sql(`select id from orders where id like '${label}-%'`).split('\n').filter(Boolean));
}

function byCode(list: readonly Write[]): string {
  const m = new Map<string, number>();
  for (const w of list) if (w.code !== undefined) m.set(w.code, (m.get(w.code) ?? 0) + 1);
  return [...m].map(([k, n]) => `${k}=${n}`).join(' ');
}

afterAll(async () => {
  await Promise.all(pools.map((p) => p.end().catch(() => {})));
  console.table(figures);
}, 30_000);

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

describe.skipIf(!postgresAvailable())('failover on PostgreSQL, hostile review', () => {
  // One pair for the file, in order: the tests that leave it as it was, then a promotion, then a
  // split brain on the servers the promotion left. Servers a test adds go with it, by PID.
  let pair: PgPair;

  beforeAll(async () => {
    pair = await startPgPair();
    pair.primary.sql('create table orders (id text primary key)');
    await until(() => pair.replica.sql("select to_regclass('orders') is not null") === 't');
  }, 60_000);

  afterAll(() => pair?.stop(), 60_000);

  describe('a server restarted empty', () => {
    it('a server restarted empty (initdb) claims primary on timeline 1 beside the real one: no write reaches it', async () => {
      const { primary: a, replica: b } = pair;
      const empty = await pair.addEmpty('pg-empty');
      onTestFinished(() => empty.kill());
      empty.sql('create table orders (id text primary key)'); // so a write that reaches it succeeds
      const bus = createBus();
      const fenced = new Set<string>();
      bus.on('failover.fence', (e) => void fenced.add(e.endpoint));
      const db = failover({
        name: 'orders-db',
        endpoints: [
          { name: 'pg-a', target: pool(a) },
          { name: 'pg-b', target: pool(b) },
          { name: 'pg-empty', target: pool(empty) },
        ],
        roles: pgRoles({ interval: 200, timeout: 500 }),
        timeout: 2_000,
        bus,
        policies: false,
      });
      const run = writes(db, 'empty');
      await sleep(1_000);
      // Idle, it switches WAL files (archive_timeout, a backup): its LSN jumps a segment each time.
      for (let i = 0; i < 4; i++) empty.sql(`create table t${i} (); select pg_switch_wal()`);
      await sleep(1_500);
      const out = await run.stop();
      db.dispose();
      const onEmpty = rows(empty, 'empty');
      figures.push({
        scenario: 'a server restarted empty, timeline 1',
        writes: out.length,
        acknowledged: out.filter((w) => w.code === undefined).length,
        'on the empty server': onEmpty.size,
        failed: byCode(out),
      });
      expect(onEmpty.size).toBe(0);
      expect(out.filter((w) => w.endpoint === 'pg-empty')).toEqual([]);
      // Told: both claimants fenced, writes refused naming the tie.
      expect(fenced).toEqual(new Set(['pg-a', 'pg-empty']));
      expect(out.filter((w) => w.code !== 'E_NO_PRIMARY')).toEqual([]);
    }, 120_000);
  });

  describe('lag, a busy pool', () => {
    it('a replica whose replay is paused falls behind: past maxLag it takes no reads, and no read sees stale data', async () => {
      const { primary: a, replica: b } = pair;
      await until(() => b.sql("select to_regclass('orders') is not null") === 't');
      const db = failover({
        name: 'orders-db',
        endpoints: [
          { name: 'pg-a', target: pool(a) },
          { name: 'pg-b', target: pool(b) },
        ],
        roles: pgRoles({ interval: 200, timeout: 500, maxLag: 1_000 }),
        timeout: 2_000,
        policies: false,
      });
      const run = writes(db, 'lag');
      await sleep(500);
      b.sql('select pg_wal_replay_pause()');
      const pausedAt = Date.now();
      await sleep(2_000); // past maxLag, plus a check
      // Read-your-writes through the set: the count of acknowledged writes vs what a read sees.
      const stale: { endpoint: string; seen: number; acked: number }[] = [];
      for (let i = 0; i < 20; i++) {
        const acked = run.out.filter((w) => w.code === undefined).length;
        const { endpoint, seen } = await db.execute(
          async (e) => {
            const r = await e.target.query<{ n: number }>(
              "select count(*)::int as n from orders where id like 'lag-%'",
            );
            return { endpoint: e.name, seen: r.rows[0]?.n ?? 0 };
          },
          { intent: 'read' },
        );
        if (seen < acked - 5) stale.push({ endpoint, seen, acked }); // a few in flight may land between
        await sleep(50);
      }
      b.sql('select pg_wal_replay_resume()');
      const out = await run.stop();
      db.dispose();
      figures.push({
        scenario: 'replay paused, maxLag 1 s',
        writes: out.length,
        'stale reads': stale.length,
        'lag seen (ms)': Date.now() - pausedAt,
      });
      expect(stale).toEqual([]);
    }, 120_000);

    it('a pool busy with long queries: the primary is not called unreachable, writes wait for the pool', async () => {
      const { primary: a, replica: b } = pair;
      const small = new pg.Pool({ ...a.connection, max: 2 });
      small.on('error', () => {});
      pools.push(small);
      const db = failover({
        name: 'orders-db',
        endpoints: [
          { name: 'pg-a', target: small },
          { name: 'pg-b', target: pool(b) },
        ],
        roles: pgRoles({ interval: 200, timeout: 500 }),
        policies: false,
      });
      await until(() => db.snapshot().primary === 'pg-a');
      // Two reports (written to the primary: the default intent) fill the pool for 3 s.
      const reports = [1, 2].map(() => db.execute((e) => e.target.query('select pg_sleep(3)')));
      await sleep(1_500);
      const result = await db
        .execute((e) => e.target.query('insert into orders (id) values ($1)', ['busy-1']))
        .then(
          () => 'ok',
          (error: { code?: string }) => error.code,
        );
      await Promise.all(reports);
      db.dispose();
      figures.push({ scenario: 'pool busy 3 s with 2 of 2 connections', 'write during it': String(result) });
      expect(result).toBe('ok');
    }, 120_000);
  });

  describe('dispose, abort, two sets', () => {
    it('two sets on one pair of pools, one disposed mid-check, a caller aborting a write: each call settles as its caller sees it', async () => {
      const { primary: a, replica: b } = pair;
      const endpoints = [
        { name: 'pg-a', target: pool(a) },
        { name: 'pg-b', target: pool(b) },
      ];
      const make = () => failover({ endpoints, roles: pgRoles({ interval: 100, timeout: 500 }), policies: false });
      const first = make();
      const second = make();
      // Disposed while its first checks run: a call waiting for them is refused at once.
      const waiting = second.execute((e) => e.target.query('select 1'));
      second.dispose();
      await expect(waiting).rejects.toMatchObject({ code: 'E_DISPOSED' });
      // The other set over the same pools goes on: writes to the primary, reads to the replica.
      const where = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          first.execute(async (e) => {
            await e.target.query('insert into orders (id) values ($1)', [`sets-${i}`]);
            return e.name;
          }),
        ),
      );
      expect(new Set(where)).toEqual(new Set(['pg-a']));
      const read = await first.execute(async (e) => e.name, { intent: 'read' });
      expect(read).toBe('pg-b');
      // A caller's abort settles the call at once with its reason, and says nothing of the server.
      const controller = new AbortController();
      const started = Date.now();
      const aborted = first.execute(
        (e) => e.target.query("select pg_sleep(0.5); insert into orders values ('abort-1')"),
        {
          signal: controller.signal,
        },
      );
      setTimeout(() => controller.abort(new Error('user went away')), 50);
      await expect(aborted).rejects.toThrow('user went away');
      expect(Date.now() - started).toBeLessThan(400);
      await sleep(800);
      expect(first.snapshot()).toMatchObject({
        primary: 'pg-a',
        endpoints: [{ ejection: 'none' }, { ejection: 'none' }],
      });
      // The statement ran on: an aborted write's outcome is unknown, as a timeout's is.
      expect(a.sql("select count(*) from orders where id = 'abort-1'")).toBe('1');
      first.dispose();
      const pgA = endpoints[0]?.target as pg.Pool;
      expect(pgA.waitingCount).toBe(0);
    }, 120_000);
  });

  describe('pgRoles() at the edges of pg: a pool without a connection timeout, a busy pg.Client, a password', () => {
    let a: PgNode;
    let b: PgNode;
    beforeAll(() => {
      ({ primary: a, replica: b } = pair);
    });

    /** A pool of pg's defaults but for `options`, ended with the file's pools. */
    function pool(node: PgNode, options: pg.PoolConfig = {}): pg.Pool {
      const p = new pg.Pool({ ...node.connection, ...options });
      p.on('error', () => {});
      pools.push(p);
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
      onTestFinished(() => client.end());
      const bus = createBus();
      const roles: EventOf<'failover.role'>[] = [];
      bus.on('failover.role', (e) => void roles.push(e));
      // Both queried alike; pg's types differ only in what this test does not call.
      const db = failover<pg.Client>({
        endpoints: [
          { name: 'pg-a', target: client },
          { name: 'pg-b', target: pool(b) as unknown as pg.Client },
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
        await until(() => backends(a, app) === 1);
        // Its connection ended by the server mid-query: pg never reconnects a Client, so the
        // target is gone for good, and is called so (not checked beside it, as if usable).
        const lost = db
          .execute((e) => e.target.query('select pg_sleep(5)'))
          .then(
            () => 'done',
            () => 'lost',
          );
        await until(
          () =>
            backends(a, app) === 1 &&
            a.sql(
              `select count(*) from pg_stat_activity where application_name = '${app}' and query like '%pg_sleep(5)%'`,
            ) === '1',
        );
        a.sql(`select pg_terminate_backend(pid) from pg_stat_activity where application_name = '${app}'`);
        expect(await lost).toBe('lost');
        await until(() => db.snapshot().endpoints.find((e) => e.name === 'pg-a')?.discovered === 'unreachable', 3_000);
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

  describe('a silent server, a promotion', () => {
    it('a third server frozen (SIGSTOP): a new app instance writes to the primary without waiting on it', async () => {
      const { primary: a, replica: b } = pair;
      const c = await pair.addReplica('pg-c', a);
      onTestFinished(() => c.kill());
      const startup = async (label: string, withThird: boolean) => {
        const db = failover({
          name: 'orders-db',
          endpoints: [
            { name: 'pg-a', target: pool(a) },
            { name: 'pg-b', target: pool(b) },
            ...(withThird ? [{ name: 'pg-c', target: pool(c) }] : []),
          ],
          roles: pgRoles(), // the defaults: interval 2 s, timeout 1 s, wait 5 s
          policies: false,
        });
        const started = Date.now();
        const endpoint = await db.execute(async (e) => {
          await e.target.query('insert into orders (id) values ($1)', [`${label}-${++seq}`]);
          return e.name;
        });
        const firstWrite = Date.now() - started;
        // Then 20 writes one after another: each as fast as without the silent server.
        const each: number[] = [];
        for (let i = 0; i < 20; i++) {
          const t = Date.now();
          await db.execute((e) => e.target.query('insert into orders (id) values ($1)', [`${label}-${++seq}`]));
          each.push(Date.now() - t);
        }
        db.dispose();
        each.sort((x, y) => x - y);
        return { endpoint, firstWrite, slowest: each[each.length - 1] ?? 0 };
      };
      const quiet = await startup('two', false);
      c.freeze();
      let frozen: Awaited<ReturnType<typeof startup>>;
      try {
        frozen = await startup('frozen', true);
      } finally {
        c.resume();
      }
      await c.kill(); // now it refuses connections
      const refused = await startup('refused', true);
      figures.push({
        scenario: 'new instance, third server frozen / refusing',
        'first write, 2 servers (ms)': quiet.firstWrite,
        'first write, + frozen 3rd (ms)': frozen.firstWrite,
        'first write, + refusing 3rd (ms)': refused.firstWrite,
        'slowest of 20 next writes (ms)': Math.max(frozen.slowest, refused.slowest),
      });
      expect([frozen.endpoint, refused.endpoint]).toEqual(['pg-a', 'pg-a']);
      expect(frozen.slowest).toBeLessThan(500);
      expect(refused.slowest).toBeLessThan(500);
      // A server that refuses is asked twice in a row, not an interval (2 s) apart.
      expect(refused.firstWrite).toBeLessThan(1_000);
      // A frozen server: two checks that time out (1 s each), not two with an interval between.
      expect(frozen.firstWrite).toBeLessThan(2_700);
    }, 120_000);

    it('a replica promoted while the old primary still takes writes: only writes acknowledged before the set saw it are lost', async () => {
      const { primary: a, replica: b } = pair;
      await until(() => b.sql("select to_regclass('orders') is not null") === 't');
      const bus = createBus();
      let fencedAt = 0;
      bus.on('failover.fence', (e) => {
        if (e.endpoint === 'pg-a' && fencedAt === 0) fencedAt = Date.now();
      });
      const interval = 500;
      const db = failover({
        name: 'orders-db',
        endpoints: [
          { name: 'pg-a', target: pool(a) },
          { name: 'pg-b', target: pool(b) },
        ],
        roles: pgRoles({ interval, timeout: 500 }),
        timeout: 2_000,
        bus,
        policies: false,
      });
      await until(() => db.snapshot().primary === 'pg-a');
      const run = writes(db, 'race', 20);
      await sleep(1_000);
      const promoting = Date.now();
      await b.promote(); // the old primary is not fenced at the database: it goes on taking writes
      const promoted = Date.now();
      await sleep(2_000);
      const out = await run.stop();
      db.dispose();
      const onA = rows(a, 'race');
      const onB = rows(b, 'race');
      const acked = out.filter((w) => w.code === undefined);
      const lost = acked.filter((w) => !onB.has(w.id));
      const unconfirmed = out.filter((w) => w.code === 'E_UNCONFIRMED_WRITE');
      figures.push({
        scenario: 'promote, old primary running',
        writes: out.length,
        acknowledged: acked.length,
        'acked by pg-a after the promotion': acked.filter((w) => w.endpoint === 'pg-a' && w.ended >= promoted).length,
        'acked, lost (not on pg-b)': lost.length,
        'promotion seen (ms)': fencedAt - promoted,
        'E_UNCONFIRMED_WRITE on pg-a': unconfirmed.filter((w) => onA.has(w.id)).length,
        'E_UNCONFIRMED_WRITE on pg-b': unconfirmed.filter((w) => onB.has(w.id)).length,
        failed: byCode(out),
      });
      expect(fencedAt).toBeGreaterThan(0);
      // Lost: acknowledged by pg-a after the promotion, before the set's next check of pg-b saw it.
      for (const w of lost) {
        expect(w.endpoint).toBe('pg-a');
        expect(w.started).toBeGreaterThanOrEqual(promoting - 1_000);
        expect(w.started).toBeLessThanOrEqual(fencedAt);
      }
      expect(fencedAt - promoted).toBeLessThan(interval + 1_000);
      // Once the set saw it, every write went to pg-b and none was refused for nothing.
      const after = out.filter((w) => w.started > fencedAt);
      expect(after.length).toBeGreaterThan(40);
      expect(after.filter((w) => w.endpoint !== 'pg-b')).toEqual([]);
      // A write reported unconfirmed was never one pg-b, the primary kept, holds.
      expect(unconfirmed.filter((w) => onB.has(w.id))).toEqual([]);
    }, 120_000);
  });

  describe('a split brain', () => {
    it('two replicas promoted apart (a split brain on one timeline): writes never reach both', async () => {
      // Run last, on the servers the promotion above left: pg-b the primary, on timeline 2. Its two
      // new replicas are this test's b and c; the old primary is this test's a.
      await pair.primary.kill(); // the primary of timeline 1, deposed above
      const a = pair.replica;
      const b = await pair.addReplica('pg-d', a);
      const c = await pair.addReplica('pg-e', a);
      onTestFinished(async () => {
        await Promise.all([b.kill(), c.kill()]);
      });
      await until(() => c.sql("select to_regclass('orders') is not null") === 't');
      await a.kill();
      // Two failover managers each promote "their" replica: both start timeline 3, apart.
      await b.promote();
      await c.promote();
      const timeline = 'select substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)';
      expect(b.sql(timeline)).toBe('00000003');
      expect(c.sql(timeline)).toBe('00000003');
      const bus = createBus();
      const fences: EventOf<'failover.fence'>[] = [];
      bus.on('failover.fence', (e) => void fences.push(e));
      const db = failover({
        name: 'orders-db',
        endpoints: [
          { name: 'pg-a', target: pool(a) },
          { name: 'pg-b', target: pool(b) },
          { name: 'pg-c', target: pool(c) },
        ],
        roles: pgRoles({ interval: 200, timeout: 500 }),
        timeout: 2_000,
        bus,
        policies: false,
      });
      const run = writes(db, 'split');
      await sleep(1_500);
      // An idle server switches WAL files (archive_timeout, a base backup, a checkpoint): its LSN
      // jumps ahead while it takes no writes. Here on both, in turn.
      for (const node of [b, c]) {
        node.sql('select pg_switch_wal()');
        await sleep(1_500);
      }
      const out = await run.stop();
      db.dispose();
      const acked = out.filter((w) => w.code === undefined);
      const onB = rows(b, 'split');
      const onC = rows(c, 'split');
      const reached = new Set(acked.map((w) => w.endpoint));
      figures.push({
        scenario: 'split brain, one timeline',
        writes: out.length,
        acknowledged: acked.length,
        'acked on pg-b': acked.filter((w) => onB.has(w.id)).length,
        'acked on pg-c': acked.filter((w) => onC.has(w.id)).length,
        failed: byCode(out),
      });
      // Whichever of the two the operator keeps, the writes acknowledged by the other are lost.
      expect(Math.min(acked.filter((w) => onB.has(w.id)).length, acked.filter((w) => onC.has(w.id)).length)).toBe(0);
      expect([...reached]).toEqual([]);
      // The user is told: writes are refused, saying two primaries tie.
      expect(out.length).toBeGreaterThan(40);
      expect(out.every((w) => w.code === 'E_NO_PRIMARY')).toBe(true);
      expect(out[0]?.message).toMatch(/primaries tie/);
    }, 120_000);
  });
});
