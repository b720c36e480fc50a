import { setTimeout as sleep } from 'node:timers/promises';
import { createBus } from '@holdfast/core';
import { type Failover, failover } from '@holdfast/failover';
import { pgRoles } from '@holdfast/failover/pg';
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
