import pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import { type PgNode, type PgPair, startPgPair } from './postgres.js';

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
}): PgPairUse {
  let pair: PgPair | undefined;
  const pools: pg.Pool[] = [];
  beforeAll(async () => {
    pair = await startPgPair();
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
