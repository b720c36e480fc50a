import { createConnection, createServer, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { type FaultProxy, faultProxy } from '@holdfast/chaos';
import { createBus } from '@holdfast/core';
import { type Failover, failover } from '@holdfast/failover';
import { type PgRolesOptions, pgRoles } from '@holdfast/failover/pg';
import pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import { type PgNode, type PgPair, type PgPairOptions, startPgPair } from './postgres.js';

/** What `usePgPair()` gives a describe block. */
export interface PgPairUse {
  /**
   * A `pg.Pool` to `to` (a server of the pair, or connection options) with the block's pool
   * options and then `options`, its errors swallowed (a killed server makes idle clients emit
   * them), ended in the block's `afterAll`.
   */
  pool(to: PgNode | pg.PoolConfig, options?: pg.PoolConfig): pg.Pool;
}

/**
 * A pair for one describe block: started in its `beforeAll` (then `started` runs: keep the pair,
 * make tables, add servers), and in its `afterAll` `stopping` runs first (dispose sets, resume a
 * frozen server), then every pool made with `pool()` ends and the pair stops.
 */
export function usePgPair(options: {
  started(pair: PgPair): unknown;
  stopping?(): unknown;
  /** Options of every pool the block makes. No test asserts on these bounds: leave room for a loaded machine. */
  pool?: pg.PoolConfig;
  /** The `beforeAll`'s timeout, ms. */
  timeout?: number;
  /** How the pair's servers run. */
  servers?: PgPairOptions;
}): PgPairUse {
  let pair: PgPair | undefined;
  const pools: pg.Pool[] = [];
  beforeAll(async () => {
    pair = await startPgPair(options.servers);
    await options.started(pair);
  }, options.timeout ?? 90_000);
  afterAll(async () => {
    try {
      await options.stopping?.();
    } finally {
      await Promise.all(pools.map((p) => p.end().catch(() => {})));
      await pair?.stop();
    }
  }, 60_000);
  return {
    pool(to, own) {
      const connection = 'connection' in to ? (to as PgNode).connection : to;
      const p = new pg.Pool({ ...connection, ...options.pool, ...own });
      p.on('error', () => {});
      pools.push(p);
      return p;
    },
  };
}

/**
 * Makes `orders` on the pair's primary, and `app`, a plain role that reads and writes it (no
 * pg_read_all_stats: pg_stat_wal_receiver shows it the pid alone).
 */
export function plainRoleOrders(pair: PgPair): void {
  pair.primary.sql('create table orders (id int primary key)');
  pair.primary.sql('create role app login; grant select, insert on orders to app');
}

/**
 * Two fault proxies to `pair`'s primary, to cut it off: `toPrimary` for the sets' pools, `link` for
 * the replica's WAL receiver (re-pointed through it, streaming once this resolves). Closed by the caller.
 */
export async function proxiedPrimary(pair: PgPair): Promise<{ toPrimary: FaultProxy; link: FaultProxy }> {
  const { primary, replica } = pair;
  const toPrimary = await faultProxy({ target: { host: primary.host, port: primary.port }, bus: createBus() });
  const link = await faultProxy({ target: { host: primary.host, port: primary.port }, bus: createBus() });
  replica.sql(`alter system set primary_conninfo = 'user=postgres host=127.0.0.1 port=${link.port}'`);
  replica.sql('select pg_reload_conf()');
  await until(() => replica.sql('select sender_port from pg_stat_wal_receiver') === String(link.port));
  return { toPrimary, link };
}

/**
 * A pair for a partition test: `orders` and `app` made (plainRoleOrders), the primary behind two
 * fault proxies (proxiedPrimary); sets pushed on `sets` are disposed and the proxies closed at the end.
 */
export function usePartitionedPair() {
  const sets: Failover<pg.Pool>[] = [];
  const net = { sets } as { pair: PgPair; toPrimary: FaultProxy; link: FaultProxy; sets: typeof sets };
  const { pool } = usePgPair({
    pool: { max: 4, connectionTimeoutMillis: 5_000 },
    async started(pair) {
      net.pair = pair;
      plainRoleOrders(pair);
      Object.assign(net, await proxiedPrimary(pair));
    },
    async stopping() {
      for (const set of sets) set.dispose();
      await net.toPrimary?.close();
      await net.link?.close();
    },
  });
  return { net, pool, sets };
}

/**
 * A set over a partitioned pair's primary (through `toPrimary`) and replica, as `user` (the pair's
 * superuser if none), with `roles`; disposed at the end.
 */
export function partitionSet(
  { net, pool, sets }: ReturnType<typeof usePartitionedPair>,
  roles: PgRolesOptions<pg.Pool>,
  user?: string,
): Failover<pg.Pool> {
  const as = (c: pg.PoolConfig) => (user === undefined ? c : { ...c, user });
  const set = failover({
    bus: createBus(),
    policies: false,
    endpoints: [
      { name: 'primary', target: pool(as({ ...net.pair.primary.connection, port: net.toPrimary.port })) },
      { name: 'replica', target: pool(as(net.pair.replica.connection)) },
    ],
    roles,
    retry: false,
    // A read sent to the primary as the link is cut waits for nothing.
    timeout: 2_000,
  });
  sets.push(set);
  return set;
}

/**
 * ~80 inserts a second into `orders` through `writer`, ids from 1 in order, each acknowledgement's
 * time kept in `acks` (a count of rows below `acks.length` missed the write after it), until `stop()`.
 */
export function writeOrders(writer: pg.Pool): { acks: number[]; stop(): Promise<void> } {
  const acks: number[] = [];
  let writing = true;
  const writes = (async () => {
    const start = performance.now();
    for (let id = 1; writing; id++) {
      await writer.query('insert into orders (id) values ($1)', [id]);
      acks.push(performance.now());
      await sleep(Math.max(1, id * 12.5 - (performance.now() - start)));
    }
  })();
  return {
    acks,
    stop() {
      writing = false;
      return writes;
    },
  };
}

/** Polls `what` every 20 ms until it holds; throws after `ms`. */
export async function until(what: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await what())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(20);
  }
}

/** Writes on `node` and switches WAL segments (1 MB each): its LSN moves `n` segments on. */
export function advance(node: PgNode, n: number): void {
  node.sql('create table if not exists filler (id serial primary key, at timestamptz default now())');
  for (let i = 0; i < n; i++) node.sql('insert into filler default values; select pg_switch_wal()');
}

/**
 * `n` reads of `select count(*) from orders` through `db` (`pause` ms apart): which endpoint served
 * each, and those that saw fewer than `acked` rows. A failed read counts in neither.
 */
export async function readOrders(db: Failover<pg.Pool>, n: number, acked: number, pause = 0) {
  const stale: { endpoint: string; seen: number }[] = [];
  const served: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await db
      .execute(
        async (e) => ({
          endpoint: e.name,
          seen: (await e.target.query<{ n: number }>('select count(*)::int as n from orders')).rows[0]?.n ?? 0,
        }),
        { intent: 'read' },
      )
      .catch(() => undefined);
    if (pause > 0) await sleep(pause);
    if (r === undefined) continue;
    served.push(r.endpoint);
    if (r.seen < acked) stale.push(r);
  }
  return { stale, served };
}

/**
 * A set over a deposed primary (`old`), the replica promoted in its place and a replica still
 * following the old one, each through its own pool; roles from `pgRoles()` checked every 100 ms,
 * reads under a `maxLag` of 1 s. The caller disposes it.
 */
export function deposedSet(
  pool: PgPairUse['pool'],
  servers: { old: PgNode; promoted: PgNode; follower: PgNode },
  timeout = 5_000,
): Failover<pg.Pool> {
  return failover({
    bus: createBus(),
    policies: false,
    endpoints: [
      { name: 'old', target: pool(servers.old) },
      { name: 'promoted', target: pool(servers.promoted) },
      { name: 'follower', target: pool(servers.follower) },
    ],
    roles: pgRoles({ interval: 100, timeout, maxLag: 1_000 }),
    retry: false,
  });
}

/** A link a replica streams through (`host`, `port`), holding what its server sends once streaming starts. */
export interface ReplicationLink {
  readonly host: '127.0.0.1';
  readonly port: number;
  /** Whether a replication connection reached START_REPLICATION and its WAL is held now. */
  held(): boolean;
  /** Lets the held WAL, and all after, through. */
  release(): void;
  close(): Promise<void>;
}

/**
 * A TCP link on a free loopback port to `to`'s server that passes every message until the server
 * answers START_REPLICATION (CopyBothResponse, `W`), then holds what it sends next (the WAL,
 * keepalives) until `release()`: a WAL receiver that has only connected. The replica must
 * connect with `sslmode=disable gssencmode=disable` (a message stream from the first byte).
 */
export async function replicationLink(to: PgNode): Promise<ReplicationLink> {
  let released = false;
  const streams: { held: Buffer[]; client: Socket }[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = createConnection({ host: to.host, port: to.port });
    sockets.add(client).add(upstream);
    for (const s of [client, upstream]) {
      s.on('error', () => {});
      s.on('close', () => {
        client.destroy();
        upstream.destroy();
        sockets.delete(s);
      });
    }
    client.on('data', (chunk) => upstream.write(chunk));
    let pending = Buffer.alloc(0);
    let stream: { held: Buffer[]; client: Socket } | undefined;
    upstream.on('data', (chunk) => {
      if (stream !== undefined) {
        if (released) client.write(chunk);
        else stream.held.push(chunk);
        return;
      }
      pending = Buffer.concat([pending, chunk]);
      // Typed messages: one byte, then their length (itself included).
      while (stream === undefined && pending.length >= 5) {
        const end = 1 + pending.readInt32BE(1);
        if (pending.length < end) break;
        client.write(pending.subarray(0, end));
        if (pending[0] === 0x57) {
          stream = { held: [], client };
          streams.push(stream);
        }
        pending = pending.subarray(end);
      }
      if (stream !== undefined && pending.length > 0) {
        if (released) client.write(pending);
        else stream.held.push(pending);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('no port');
  return {
    host: '127.0.0.1',
    port: address.port,
    held: () => !released && streams.length > 0,
    release() {
      released = true;
      for (const s of streams) for (const chunk of s.held.splice(0)) s.client.write(chunk);
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * Three servers for one describe block: the pair, `orders` and `app` (plainRoleOrders), and a second
 * replica of the primary, `pg-c`; `started(pair, c)` keeps them. `pgSet()` makes a set over some of
 * them as `user` (the superuser by default), roles checked every `interval` ms (100 by default),
 * timeout 5 s, `maxLag`; the sets it makes, and those pushed on `sets`, are disposed before `stopping`.
 */
export function usePgTrio(options: {
  started(pair: PgPair, c: PgNode): void;
  stopping?(): unknown;
  maxLag: number;
  /** The `beforeAll`'s timeout, ms. */
  timeout?: number;
}) {
  const sets: Failover<pg.Pool>[] = [];
  const { pool } = usePgPair({
    pool: { max: 4, connectionTimeoutMillis: 5_000 },
    async started(pair) {
      plainRoleOrders(pair);
      options.started(pair, await pair.addReplica('pg-c', pair.primary));
    },
    async stopping() {
      for (const set of sets) set.dispose();
      await options.stopping?.();
    },
    timeout: options.timeout,
  });
  function pgSet(servers: Record<string, PgNode>, user = 'postgres', interval = 100): Failover<pg.Pool> {
    const set = failover({
      bus: createBus(),
      policies: false,
      endpoints: Object.entries(servers).map(([name, s]) => ({ name, target: pool({ ...s.connection, user }) })),
      roles: pgRoles({ interval, timeout: 5_000, maxLag: options.maxLag }),
      retry: false,
    });
    sets.push(set);
    return set;
  }
  /** `set`'s endpoint `name` as its snapshot shows it. */
  const endpoint = (set: Failover<pg.Pool>, name: string) => set.snapshot().endpoints.find((e) => e.name === name);
  return { pool, sets, pgSet, endpoint };
}
