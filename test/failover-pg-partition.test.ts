import { setTimeout as sleep } from 'node:timers/promises';
import type { Failover } from '@holdfast/failover';
import { pgRoles } from '@holdfast/failover/pg';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { partitionSet, until, usePartitionedPair, writeOrders } from './support/pg-pair-use.js';
import { postgresAvailable } from './support/postgres.js';

/**
 * A partition from the primary: the set and the replica both cut off from it (a fault proxy on
 * each link, every byte held), while another client keeps writing to it. The replica replayed
 * all it received, its own lag reads 0, and no new sighting of the primary comes: it took reads
 * under `maxLag` for as long as its WAL receiver waits (`wal_receiver_timeout`, 60 s).
 */

const maxLag = 1_000;
const interval = 200;
const timeout = 500;

describe.skipIf(!postgresAvailable())('failover on PostgreSQL: a partition from the primary', () => {
  const partitioned = usePartitionedPair();
  const { net, pool } = partitioned;

  /** A set over the primary (through `toPrimary`) and the replica, as `user`. */
  const pgSet = (user: string) => partitionSet(partitioned, pgRoles({ interval, timeout, maxLag }), user);

  it('cut off from the primary while it takes writes: reads under maxLag stop about maxLag after the cut, stay off a replica still cut off once the set sees the primary again, and come back after it heals', async () => {
    const writer = pool(net.pair.primary);
    const superuser = pgSet('postgres');
    const plain = pgSet('app');
    const replicaOf = (set: Failover<pg.Pool>) => set.snapshot().endpoints.find((e) => e.name === 'replica');
    for (const set of [superuser, plain]) await until(() => replicaOf(set)?.lag === 0);

    // ~80 writes/s from another client, straight to the primary; each acknowledgement's time kept.
    const writing = writeOrders(writer);
    const { acks } = writing;
    /** Per set: reads served by the replica, refused, and the staleness of each (ms since the first write it missed was acknowledged). */
    const tally = () => ({ replica: 0, refused: 0, staleness: [] as { at: number; ms: number }[] });
    type Tally = ReturnType<typeof tally>;
    const errors = new Set<string>();
    async function read(set: Failover<pg.Pool>, t: Tally, since: number): Promise<void> {
      const start = performance.now();
      const known = acks.length;
      const r = await set
        .execute(
          async (e) => ({
            endpoint: e.name,
            seen: (await e.target.query<{ n: number }>('select count(*)::int as n from orders')).rows[0]?.n ?? 0,
          }),
          { intent: 'read' },
        )
        .catch((error: Error) => {
          errors.add(error.message);
          return undefined;
        });
      if (r === undefined) {
        t.refused++;
        return;
      }
      if (r.endpoint === 'replica') t.replica++;
      // Ids are written in order: a count below the writes acknowledged missed the one after it.
      if (r.seen < known)
        t.staleness.push({ at: Math.round(start - since), ms: Math.round(start - (acks[r.seen] ?? start)) });
    }
    async function phase(ms: number, since: number) {
      const t = { superuser: tally(), plain: tally() };
      const end = performance.now() + ms;
      while (performance.now() < end) {
        await read(superuser, t.superuser, since);
        await read(plain, t.plain, since);
        await sleep(20);
      }
      return t;
    }
    const worst = (t: Tally) => Math.max(0, ...t.staleness.map((s) => s.ms));
    const beyond = (t: Tally) => t.staleness.filter((s) => s.ms > maxLag);

    try {
      const normal = await phase(3_000, performance.now());
      const written = acks.length;
      const cut = performance.now();
      const held = [net.toPrimary.add({ type: 'blackhole' }), net.link.add({ type: 'blackhole' })];
      const partitioned = await phase(5_000, cut);
      for (const h of held) h.remove();
      const healed = performance.now();
      await until(() => (replicaOf(superuser)?.lag ?? Number.POSITIVE_INFINITY) <= maxLag, 20_000);
      const back = Math.round(performance.now() - healed);
      const after = await phase(1_000, performance.now());
      // Cut again, and the set's link healed first: the primary answers, its WAL far past the
      // replica's replay, the replica still cut off. Seen past it only since now, the replica was
      // behind since the cut.
      const again = [net.toPrimary.add({ type: 'blackhole' }), net.link.add({ type: 'blackhole' })];
      await phase(3_000, performance.now());
      again[0]?.remove();
      const setHealed = await phase(3_000, performance.now());
      again[1]?.remove();
      const figures = (t: { superuser: Tally; plain: Tally }) =>
        Object.fromEntries(
          Object.entries(t).map(([k, v]) => [
            k,
            {
              replica: v.replica,
              refused: v.refused,
              stale: v.staleness.length,
              beyondMaxLag: beyond(v).length,
              worstMs: worst(v),
              lastStaleAt: v.staleness.at(-1)?.at ?? null,
            },
          ]),
        );
      console.log(
        JSON.stringify({
          writesPerSecond: Math.round(written / 3),
          normal: figures(normal),
          partitioned: figures(partitioned),
          backAfterMs: back,
          after: figures(after),
          setHealed: figures(setHealed),
          errors: [...errors].slice(0, 4),
        }),
      );
      // Cut off: the set judges a replica at its checks (every `interval`), and learns the primary
      // is gone when a check of it times out; no read misses a write acknowledged longer ago than that.
      for (const t of [partitioned.superuser, partitioned.plain, setHealed.superuser, setHealed.plain])
        expect(worst(t), 'the stalest read served after the cut, ms').toBeLessThanOrEqual(
          maxLag + 2 * (interval + timeout),
        );
      // Normal operation: replica reads go on, none misses a write acknowledged past maxLag.
      for (const t of [normal.superuser, normal.plain, after.superuser, after.plain]) {
        expect(beyond(t)).toEqual([]);
        expect(t.replica).toBeGreaterThan(0);
      }
    } finally {
      await writing.stop();
    }
  }, 90_000);
});
