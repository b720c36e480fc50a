import { setTimeout as sleep } from 'node:timers/promises';
import { type FaultProxy, faultProxy } from '@holdfast/chaos';
import { createBus, type EventOf, type EventType } from '@holdfast/core';
import { type Failover, failover } from '@holdfast/failover';
import { pgRoles } from '@holdfast/failover/pg';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ordersDb } from '../examples/db-failover/orders-db.js';
import { simpleDb } from '../examples/db-failover/simple.js';
import { type PgNode, type PgPair, postgresAvailable, startPgPair } from './support/postgres.js';

/**
 * A real PostgreSQL streaming-replication pair, one set of pools over it, and a bounded load of
 * 200 reads/s and 20 writes/s through the set while the pair is killed, promoted, restarted
 * stale, rebuilt, frozen and cut off from the app (a fault proxy between the app and the primary,
 * replication untouched). One pair is reused across the scenarios, in order: each starts from
 * where the previous one left the pair. Figures are printed at the end.
 */

const interval = 500; // roles.interval
const checkTimeout = 500; // roles.timeout
const callTimeout = 2_000; // the per-try timeout

interface Outcome {
  readonly intent: 'read' | 'write';
  readonly started: number;
  readonly ended: number;
  readonly endpoint: string | undefined;
  readonly code: string | undefined;
  readonly id: string | undefined;
  /** Whether the call reached a server (the function ran). */
  readonly reached: boolean;
}

interface Figures {
  scenario: string;
  reads: number;
  readsFailed: number;
  writes: number;
  writesFailed: number;
  noPrimary: number;
  writesLost: number;
  onStale: number;
  switchMs: number | string;
  /** From the end of the fault to the first acknowledged write after it. */
  backMs?: number | string;
  /** Writes that failed (not acknowledged) yet are on the primary: sent before the cut, applied after. */
  appliedLate?: number;
  /** Failed calls by error code. */
  codes: string;
}

const figures: Figures[] = [];
const pools: pg.Pool[] = [];
const proxies: FaultProxy[] = [];

function pool(node: PgNode, port = node.port): pg.Pool {
  const p = new pg.Pool({
    ...node.connection,
    port,
    max: 12,
    connectionTimeoutMillis: 3_000,
    idleTimeoutMillis: 5_000,
  });
  // Without an 'error' listener, an idle connection lost with its server crashes the process.
  p.on('error', () => {});
  pools.push(p);
  return p;
}

/** The set over both servers; `via` reaches some of them through a fault proxy, by name. */
function makeSet(pair: PgPair, bus = createBus(), via: Record<string, FaultProxy> = {}) {
  const at = (node: PgNode) => ({ name: node.name, target: pool(node, via[node.name]?.port) });
  return failover({
    name: 'orders-db',
    endpoints: [at(pair.primary), at(pair.replica)],
    roles: pgRoles({ interval, timeout: checkTimeout }),
    timeout: callTimeout,
    retry: { idempotent: true }, // reads may move to another endpoint; writes never do
    bus,
    policies: false,
  });
}

let seq = 0;

/** 10 reads and 1 write every 50 ms until stopped: 200 reads/s and 20 writes/s. */
function load(db: Failover<pg.Pool>, phase: string) {
  const outcomes: Outcome[] = [];
  const pending = new Set<Promise<void>>();
  const call = (intent: 'read' | 'write') => {
    const id = intent === 'write' ? `${phase}-${++seq}` : undefined;
    const started = Date.now();
    let reached = false;
    const p = db
      .execute(
        async (e, { signal }) => {
          reached = true;
          if (intent === 'write') await e.target.query('insert into orders (id) values ($1)', [id]);
          else await e.target.query('select count(*) from orders');
          signal.throwIfAborted();
          return e.name;
        },
        { intent },
      )
      .then(
        (endpoint) =>
          void outcomes.push({ intent, started, ended: Date.now(), endpoint, code: undefined, id, reached }),
        (error: { code?: string; name?: string; message?: string }) =>
          void outcomes.push({
            intent,
            started,
            ended: Date.now(),
            endpoint: undefined,
            code: error.code ?? (/timeout/i.test(error.message ?? '') ? 'POOL_TIMEOUT' : error.name),
            id,
            reached,
          }),
      )
      .finally(() => pending.delete(p));
    pending.add(p);
  };
  const tick = setInterval(() => {
    for (let i = 0; i < 10; i++) call('read');
    call('write');
  }, 50);
  return {
    outcomes,
    async stop(): Promise<Outcome[]> {
      clearInterval(tick);
      await Promise.all(pending);
      return outcomes;
    },
  };
}

/**
 * Failed calls of `intent` that the fault explains: anything but a per-try or pool timeout. On a
 * starved machine (2 cores shared by many test processes) a query can outlive the timeout with
 * no fault at all; those are counted in the figures, not failed on.
 */
function faultFailures(outcomes: readonly Outcome[], intent: 'read' | 'write'): Outcome[] {
  return outcomes.filter(
    (o) => o.intent === intent && o.code !== undefined && o.code !== 'E_TIMEOUT' && o.code !== 'POOL_TIMEOUT',
  );
}

function ids(node: PgNode, list: readonly string[]): Set<string> {
  if (list.length === 0) return new Set();
  const quoted = list.map((id) => `'${id}'`).join(',');
  const out = node.sql(`select id from orders where id in (${quoted})`);
  return new Set(out === '' ? [] : out.split('\n'));
}

function tally(scenario: string, outcomes: readonly Outcome[], extra: Partial<Figures> = {}): Figures {
  const reads = outcomes.filter((o) => o.intent === 'read');
  const writes = outcomes.filter((o) => o.intent === 'write');
  const f: Figures = {
    scenario,
    reads: reads.length,
    readsFailed: reads.filter((o) => o.code !== undefined).length,
    writes: writes.length,
    writesFailed: writes.filter((o) => o.code !== undefined).length,
    noPrimary: writes.filter((o) => o.code === 'E_NO_PRIMARY').length,
    writesLost: 0,
    onStale: 0,
    switchMs: '-',
    codes: [
      ...outcomes
        .filter((o) => o.code !== undefined)
        .reduce(
          (m, o) => m.set(`${o.intent}:${o.code}`, (m.get(`${o.intent}:${o.code}`) ?? 0) + 1),
          new Map<string, number>(),
        ),
    ]
      .map(([k, n]) => `${k}=${n}`)
      .join(' '),
    ...extra,
  };
  figures.push(f);
  return f;
}

/** Acknowledged writes missing from `primary`, and acknowledged writes found on `stale`. */
function audit(outcomes: readonly Outcome[], primary: PgNode, stale?: PgNode) {
  const acked = outcomes.filter((o) => o.intent === 'write' && o.code === undefined).map((o) => o.id as string);
  const onPrimary = ids(primary, acked);
  return {
    acked: acked.length,
    lost: acked.filter((id) => !onPrimary.has(id)).length,
    onStale: stale?.running ? ids(stale, acked).size : 0,
  };
}

async function until(what: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!what()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(20);
  }
}

describe.skipIf(!postgresAvailable())('failover on a real PostgreSQL streaming-replication pair', () => {
  let pair: PgPair;
  let a: PgNode; // the first primary
  let b: PgNode; // the first replica, promoted in scenario 2
  let db: Failover<pg.Pool>;
  const events: EventOf<EventType>[] = [];
  const bus = createBus();
  bus.on('*', (e) => void events.push(e as EventOf<EventType>));
  const of = <K extends EventType>(type: K) => events.filter((e) => e.type === type) as unknown as EventOf<K>[];

  beforeAll(async () => {
    pair = await startPgPair();
    a = pair.primary;
    b = pair.replica;
    a.sql('create table orders (id text primary key, total int, at timestamptz not null default now())');
    await until(() => b.sql("select to_regclass('orders') is not null") === 't');
    db = makeSet(pair, bus);
    // Warm up: both roles known, one write through.
    await db.execute((e) => e.target.query('select 1'));
  }, 90_000);

  afterAll(async () => {
    db?.dispose();
    await Promise.all(pools.map((p) => p.end().catch(() => {})));
    await Promise.all(proxies.map((p) => p.close()));
    await pair?.stop();
    console.log(
      `\nfailover on PostgreSQL ${process.env.CI === 'true' ? '(CI)' : ''}: 200 reads/s + 20 writes/s, roles.interval ${interval} ms, timeout ${callTimeout} ms\n`,
    );
    console.table(figures);
  }, 30_000);

  it('the examples the docs show (examples/db-failover) run against the pair', async () => {
    const orders = ordersDb({
      servers: [
        { name: 'db-1', connection: a.connection },
        { name: 'db-2', connection: b.connection },
      ],
    });
    await orders.placeOrder('example-1', 4200);
    await until(() => b.sql("select count(*) from orders where id = 'example-1'") === '1');
    expect(await orders.countOrders()).toBeGreaterThanOrEqual(1);
    expect(orders.db.snapshot()).toMatchObject({
      primary: 'db-1',
      endpoints: [{ discovered: 'primary' }, { discovered: 'replica' }],
    });
    await orders.close();

    const simple = simpleDb(pool(a), pool(b));
    const reads = await Promise.all(
      Array.from({ length: 5 }, () =>
        simple.execute(
          async (e) => {
            await e.target.query('select 1');
            return e.name;
          },
          { intent: 'read' },
        ),
      ),
    );
    expect(reads).toEqual(['primary', 'primary', 'primary', 'primary', 'primary']); // reads: 'primary'
    simple.dispose();
  });

  it('(1) kill -9 the primary: 0 failed reads; writes fail fast with E_NO_PRIMARY until a promotion', async () => {
    const run = load(db, 'kill');
    await sleep(500);
    const killedAt = Date.now();
    await a.kill();
    await sleep(2_500);
    const outcomes = await run.stop();
    const writesAfter = outcomes.filter((o) => o.intent === 'write' && o.started > killedAt);
    const firstRefusal = writesAfter.find((o) => o.code === 'E_NO_PRIMARY');
    tally('1 kill -9 primary', outcomes, {
      switchMs: firstRefusal === undefined ? 'never' : firstRefusal.ended - killedAt,
    });
    expect(faultFailures(outcomes, 'read')).toEqual([]);
    expect(firstRefusal).toBeDefined();
    // Once the set knows, every write is refused at once, without touching a server.
    const later = writesAfter.filter((o) => o.started >= (firstRefusal?.ended ?? 0));
    expect(later.length).toBeGreaterThan(20);
    expect(later.every((o) => o.code === 'E_NO_PRIMARY')).toBe(true);
    expect(later.filter((o) => o.reached)).toEqual([]); // refused without touching a server
    const err = await db.execute((e) => e.target.query('select 1')).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'E_NO_PRIMARY', roles: { 'pg-a': 'unreachable', 'pg-b': 'replica' } });
    expect((err as Error).cause).toBeDefined();
    expect(of('failover.role')).toContainEqual(expect.objectContaining({ endpoint: 'pg-a', role: 'unreachable' }));
  });

  it('(2) promote the replica: writes succeed again, within one interval plus the check timeout', async () => {
    const run = load(db, 'promote');
    await sleep(300);
    await b.promote();
    const promotedAt = Date.now();
    await sleep(2_000);
    const outcomes = await run.stop();
    const firstWrite = outcomes.find((o) => o.intent === 'write' && o.code === undefined && o.started >= promotedAt);
    const { lost } = audit(outcomes, b);
    tally('2 promote replica', outcomes, {
      writesLost: lost,
      switchMs: firstWrite === undefined ? 'never' : firstWrite.ended - promotedAt,
    });
    expect(faultFailures(outcomes, 'read')).toEqual([]);
    expect(lost).toBe(0);
    // Every write sent once the promotion had time to be seen succeeded, on the new primary.
    const settled = outcomes.filter((o) => o.intent === 'write' && o.started > (firstWrite?.ended ?? Date.now()));
    expect(settled.length).toBeGreaterThan(10);
    expect(faultFailures(settled, 'write')).toEqual([]);
    expect(new Set(settled.map((o) => o.endpoint))).toEqual(new Set(['pg-b']));
    expect(db.snapshot()).toMatchObject({ primary: 'pg-b' });
  });

  it('(3) restart the old primary as it was: it is fenced, 0 acknowledged writes land on it', async () => {
    const run = load(db, 'stale');
    await sleep(300);
    const restartedAt = Date.now();
    await a.start();
    expect(a.sql('select pg_is_in_recovery()')).toBe('f'); // a second primary, on the old timeline
    await until(() => db.snapshot().endpoints[0]?.discovered === 'fenced');
    const fencedAt = Date.now();
    await sleep(1_500);
    const outcomes = await run.stop();
    const { lost, onStale } = audit(outcomes, b, a);
    tally('3 stale primary back', outcomes, { writesLost: lost, onStale, switchMs: fencedAt - restartedAt });
    expect(faultFailures(outcomes, 'read')).toEqual([]);
    expect(faultFailures(outcomes, 'write')).toEqual([]);
    expect(onStale).toBe(0);
    expect(lost).toBe(0);
    expect(of('failover.fence')).toContainEqual(expect.objectContaining({ endpoint: 'pg-a', primary: 'pg-b' }));
    expect(outcomes.filter((o) => o.endpoint === 'pg-a')).toEqual([]);
  });

  it('(4) a new app instance started while the stale primary runs: 0 writes to it', async () => {
    const fresh = makeSet(pair);
    const startedAt = Date.now();
    // Its first writes go out before it has checked anything: they wait for discovery.
    const first = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) =>
        fresh.execute(async (e) => {
          await e.target.query('insert into orders (id) values ($1)', [`fresh-${i}`]);
          return e.name;
        }),
      ),
    );
    const firstDone = Date.now();
    const run = load(fresh, 'fresh');
    await sleep(1_500);
    const outcomes = await run.stop();
    fresh.dispose();
    const all: Outcome[] = [
      ...first.map((r, i) => ({
        intent: 'write' as const,
        started: startedAt,
        ended: firstDone,
        endpoint: r.status === 'fulfilled' ? r.value : undefined,
        code: r.status === 'rejected' ? String((r.reason as { code?: string }).code) : undefined,
        id: `fresh-${i}`,
        reached: true,
      })),
      ...outcomes,
    ];
    const { lost, onStale } = audit(all, b, a);
    tally('4 new app, stale running', all, { writesLost: lost, onStale, switchMs: firstDone - startedAt });
    expect(first.every((r) => r.status === 'fulfilled' && r.value === 'pg-b')).toBe(true);
    expect(faultFailures(all, 'write')).toEqual([]);
    expect(faultFailures(all, 'read')).toEqual([]);
    expect(onStale).toBe(0);
    expect(lost).toBe(0);
  });

  it('(7) a burst of constraint violations: the primary is not ejected, writes go on', async () => {
    const before = of('failover.eject').length;
    let violations = 0;
    for (let i = 0; i < 25; i++) {
      await db
        .execute((e) => e.target.query("insert into orders (id) values ('fresh-0')"))
        .catch((error: { code?: string }) => {
          if (error.code === '23505') violations++;
        });
    }
    const run = load(db, 'dup');
    await sleep(1_000);
    const outcomes = await run.stop();
    tally('7 25 duplicate keys', outcomes);
    expect(violations).toBe(25);
    expect(of('failover.eject').length).toBe(before);
    expect(db.snapshot().endpoints.find((e) => e.name === 'pg-b')).toMatchObject({ ejection: 'none' });
    expect(faultFailures(outcomes, 'write')).toEqual([]);
    expect(faultFailures(outcomes, 'read')).toEqual([]);
  });

  it('(5) rebuild the old primary as a replica: it takes reads again, 0 failures', async () => {
    const run = load(db, 'rebuild');
    await sleep(300);
    const rebuildAt = Date.now();
    await a.rebuildAsReplicaOf(b);
    await until(() => db.snapshot().endpoints[0]?.discovered === 'replica');
    const rejoinedAt = Date.now();
    await sleep(1_500);
    const outcomes = await run.stop();
    const { lost } = audit(outcomes, b);
    tally('5 rebuild old as replica', outcomes, { writesLost: lost, switchMs: rejoinedAt - rebuildAt });
    expect(faultFailures(outcomes, 'read')).toEqual([]);
    expect(faultFailures(outcomes, 'write')).toEqual([]);
    expect(lost).toBe(0);
    const readsOnA = outcomes.filter((o) => o.intent === 'read' && o.endpoint === 'pg-a' && o.started > rejoinedAt);
    expect(readsOnA.length).toBeGreaterThan(100);
    expect(of('failover.role').filter((e) => e.endpoint === 'pg-a' && e.time >= rebuildAt)).toContainEqual(
      expect.objectContaining({ role: 'replica' }),
    );
    expect(db.failback()).toBe(false); // the primary stays where the database put it
  });

  it('(6) freeze the primary (SIGSTOP 5 s): every call settles within the timeout, reads all succeed', async () => {
    const run = load(db, 'freeze');
    await sleep(300);
    const frozenAt = Date.now();
    b.freeze();
    await sleep(5_000);
    b.resume();
    const resumedAt = Date.now();
    await until(() => db.snapshot().primary === 'pg-b');
    const backAt = Date.now();
    await sleep(2_000);
    const outcomes = await run.stop();
    const { lost } = audit(outcomes, b);
    const refusal = outcomes.find((o) => o.intent === 'write' && o.code === 'E_NO_PRIMARY' && o.started > frozenAt);
    tally('6 SIGSTOP primary 5 s', outcomes, {
      writesLost: lost,
      switchMs: refusal === undefined ? 'never' : refusal.ended - frozenAt,
    });
    expect(faultFailures(outcomes, 'read')).toEqual([]);
    expect(lost).toBe(0);
    // A write to the frozen primary is cut by the per-try timeout, then refused at once.
    const overdue = outcomes.filter((o) => o.ended - o.started > callTimeout + 1_000);
    expect(overdue).toEqual([]);
    // What failed were writes: cut by the per-try timeout (or the pool's connection timeout), then refused.
    expect(outcomes.filter((o) => o.code !== undefined && o.intent === 'read')).toEqual([]);
    const codes: Record<string, number> = {};
    for (const o of outcomes) if (o.code !== undefined) codes[o.code] = (codes[o.code] ?? 0) + 1;
    console.log('freeze: failed writes by code', codes);
    expect(refusal).toBeDefined();
    const after = outcomes.filter((o) => o.intent === 'write' && o.started > backAt);
    expect(after.length).toBeGreaterThan(5);
    expect(faultFailures(after, 'write')).toEqual([]);
    expect(resumedAt).toBeLessThanOrEqual(backAt);
  });

  // A partition, unlike SIGSTOP: the primary is alive and its replica still streams from it, but
  // the app's connections to it hold every byte (blackhole) or are reset and refused.
  for (const [n, cut] of [
    [8, 'blackhole'],
    [9, 'reset'],
  ] as const) {
    it(`(${n}) partition the app from the primary (${cut}) 5 s, replication untouched: calls settle, reads all succeed, 0 acknowledged writes lost, the primary is used again`, async () => {
      const proxy = await faultProxy({ target: { port: b.port }, name: `app-to-${b.name}` });
      proxies.push(proxy);
      const setBus = createBus();
      const roles: EventOf<'failover.role'>[] = [];
      setBus.on('failover.role', (e) => void roles.push(e));
      const cutOff = makeSet(pair, setBus, { [b.name]: proxy });
      await cutOff.execute((e) => e.target.query('select 1'));
      expect(cutOff.snapshot()).toMatchObject({ primary: b.name });
      const run = load(cutOff, `cut-${cut}`);
      await sleep(300);
      const cutAt = Date.now();
      const hole = cut === 'blackhole' ? proxy.freeze() : undefined;
      if (cut === 'reset') await proxy.kill();
      await sleep(2_500);
      // The primary is alive and its replica still streams from it: a write made on it directly
      // reaches the replica during the partition.
      const direct = `direct-${cut}-${Date.now()}`;
      b.sql(`insert into orders (id) values ('${direct}')`);
      await until(() => a.sql(`select count(*) from orders where id = '${direct}'`) === '1', 5_000);
      await sleep(Math.max(0, cutAt + 5_000 - Date.now()));
      if (hole !== undefined) hole.remove();
      else await proxy.restore();
      const healedAt = Date.now();
      await until(() => cutOff.snapshot().primary === b.name);
      const backAt = Date.now();
      await sleep(2_000);
      const outcomes = await run.stop();
      cutOff.dispose();
      const { lost } = audit(outcomes, b);
      const writes = outcomes.filter((o) => o.intent === 'write');
      const refused = writes.filter((o) => o.code !== undefined && !o.reached).map((o) => o.id as string);
      const failedReached = writes.filter((o) => o.code !== undefined && o.reached).map((o) => o.id as string);
      const refusal = writes.find((o) => o.code === 'E_NO_PRIMARY' && o.started > cutAt);
      const firstBack = writes.find((o) => o.code === undefined && o.started >= healedAt);
      const appliedLate = ids(b, failedReached).size;
      tally(`${n} partition app-primary (${cut}) 5 s`, outcomes, {
        writesLost: lost,
        switchMs: refusal === undefined ? 'never' : refusal.ended - cutAt,
        backMs: firstBack === undefined ? 'never' : firstBack.ended - healedAt,
        appliedLate,
      });
      // Every call settles within its timeout (plus slack for a starved machine).
      expect(outcomes.filter((o) => o.ended - o.started > callTimeout + 1_000)).toEqual([]);
      // Reads never needed the primary: all of them succeeded, from the replica.
      expect(outcomes.filter((o) => o.intent === 'read' && o.code !== undefined)).toEqual([]);
      expect(outcomes.filter((o) => o.intent === 'read' && o.endpoint !== a.name)).toEqual([]);
      // The set saw the primary go and refused writes without sending them; none of those exists.
      expect(refusal).toBeDefined();
      expect(roles).toContainEqual(expect.objectContaining({ endpoint: b.name, role: 'unreachable' }));
      expect(refused.length).toBeGreaterThan(20);
      expect(ids(b, refused).size).toBe(0);
      // No acknowledged write is lost, and none went to the replica.
      expect(lost).toBe(0);
      expect(writes.filter((o) => o.code === undefined && o.endpoint !== b.name)).toEqual([]);
      // Healed: the primary is found again and takes every write.
      expect(cutOff.snapshot().primary).toBe(b.name);
      const after = writes.filter((o) => o.started > backAt);
      expect(after.length).toBeGreaterThan(20);
      expect(faultFailures(after, 'write')).toEqual([]);
      expect(new Set(after.filter((o) => o.code === undefined).map((o) => o.endpoint))).toEqual(new Set([b.name]));
      expect(proxy.snapshot().accepted).toBeGreaterThan(0);
    });
  }
});
