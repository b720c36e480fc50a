import { setTimeout as sleep } from 'node:timers/promises';
import { type Bus, createBus } from '@holdfast/core';
import { type Failover, failover } from '@holdfast/failover';
import { pgRoles } from '@holdfast/failover/pg';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { until, usePgPair } from './support/pg-pair-use.js';
import { type PgNode, type PgPair, postgresAvailable } from './support/postgres.js';

/**
 * The recovery half of the HA cycle, as a DBA runs it, while a client writes and reads through the
 * set: the replica B is promoted, the old primary A is stopped, rewound onto B's timeline
 * (pg_rewind) and started as B's replica; then back (A promoted live, B rewound and rejoined).
 * Asserted as a user would: no write acknowledged since the set switched is lost, no read misses
 * a write acknowledged more than maxLag before it, no split brain, and the rejoined server takes
 * reads again.
 */

const maxLag = 1_000;

interface Read {
  readonly endpoint: string;
  readonly at: number;
  /** The ids checked: the last acknowledged when the read started, the last acknowledged maxLag before. */
  readonly latest: number | undefined;
  readonly old: number | undefined;
  readonly seen: { latest: boolean; old: boolean };
}

/** A client writing and reading through `db` in turn until stopped or `ops` ran. */
function workload(db: Failover<pg.Pool>, ops: number) {
  const acked: { id: number; at: number; endpoint: string }[] = [];
  const reads: Read[] = [];
  let failed = 0;
  let stopped = false;
  const lastBefore = (t: number) => {
    for (let i = acked.length - 1; i >= 0; i--) if ((acked[i] as { at: number }).at <= t) return acked[i]?.id;
    return undefined;
  };
  const done = (async () => {
    for (let op = 0; op < ops && !stopped; op++) {
      const id = op + 1;
      if (op % 2 === 0) {
        const endpoint = await db
          .execute(async (e) => {
            await e.target.query('insert into orders (id) values ($1)', [id]);
            return e.name;
          })
          .catch(() => undefined);
        if (endpoint === undefined) failed++;
        else acked.push({ id, at: performance.now(), endpoint });
      } else {
        const at = performance.now();
        const latest = lastBefore(at);
        const old = lastBefore(at - maxLag);
        const read = await db
          .execute(
            async (e) => {
              const { rows } = await e.target.query<{ latest: boolean; old: boolean }>(
                'select exists(select 1 from orders where id = $1) as latest, exists(select 1 from orders where id = $2) as old',
                [latest ?? 0, old ?? 0],
              );
              return { endpoint: e.name, seen: rows[0] as { latest: boolean; old: boolean } };
            },
            { intent: 'read' },
          )
          .catch(() => undefined);
        if (read === undefined) failed++;
        else reads.push({ ...read, at, latest, old });
      }
      await sleep(5);
    }
  })();
  return {
    acked,
    reads,
    failed: () => failed,
    async stop() {
      stopped = true;
      await done;
    },
  };
}

function counter(bus: Bus) {
  const counts: Record<string, number> = {};
  for (const type of ['failover.role', 'failover.fence', 'failover.switch', 'failover.splitBrain'] as const)
    bus.on(type, () => void (counts[type] = (counts[type] ?? 0) + 1));
  return counts;
}

describe.skipIf(!postgresAvailable())('failover on PostgreSQL: rejoining a deposed primary with pg_rewind', () => {
  let pair: PgPair;
  let db: Failover<pg.Pool> | undefined;

  const { pool } = usePgPair({
    servers: { rewindable: true },
    pool: { max: 4, connectionTimeoutMillis: 5_000 },
    started(started) {
      pair = started;
      pair.primary.sql('create table orders (id int primary key)');
    },
    stopping: () => db?.dispose(),
  });

  it('promote B, rewind A onto it, then back: no write acknowledged since a switch lost, no read stale past maxLag, no split brain', async () => {
    const a = pair.primary;
    const b = pair.replica;
    const bus = createBus();
    const counts = counter(bus);
    const switches: { at: number; to: string }[] = [];
    bus.on('failover.switch', (e) => void switches.push({ at: performance.now(), to: String(e.to) }));
    db = failover({
      bus,
      policies: false,
      endpoints: [
        { name: 'a', target: pool(a) },
        { name: 'b', target: pool(b) },
      ],
      roles: pgRoles({ interval: 100, timeout: 5_000, maxLag }),
      retry: false,
    });
    const set = db;
    const endpoint = (n: string) => set.snapshot().endpoints.find((e) => e.name === n);
    await until(() => endpoint('a')?.discovered === 'primary' && endpoint('b')?.lag === 0);
    const work = workload(set, 4_000);
    const figures: Record<string, number> = {};
    /** Reads `node` served after `since`: when its first was, ms after `since`. */
    const firstRead = (name: string, since: number) => work.reads.find((r) => r.endpoint === name && r.at > since);
    try {
      await sleep(1_000);
      // Failover: B promoted while A runs on a moment; a client still on A writes one more row.
      const promoted = performance.now();
      await b.promote();
      a.sql('insert into orders (id) values (-1)');
      await until(() => endpoint('b')?.discovered === 'primary');
      await sleep(500);
      const rewound = performance.now();
      await a.rewindFrom(b);
      figures.rewindMs = performance.now() - rewound;
      await until(() => firstRead('a', rewound) !== undefined);
      figures.aReadsAgainMs = (firstRead('a', rewound) as Read).at - rewound;
      await sleep(1_000);

      // Failback, live: A promoted while B runs, B rewound onto A and rejoined.
      const back = performance.now();
      await a.promote();
      await until(() => endpoint('a')?.discovered === 'primary');
      await sleep(500);
      const rewoundB = performance.now();
      await b.rewindFrom(a);
      figures.rewindBackMs = performance.now() - rewoundB;
      await until(() => firstRead('b', rewoundB) !== undefined);
      figures.bReadsAgainMs = (firstRead('b', rewoundB) as Read).at - rewoundB;
      await sleep(1_000);
      figures.promotedAt = promoted;
      figures.backAt = back;
    } finally {
      await work.stop();
    }
    const kept = new Set(a.sql('select id from orders').split('\n').map(Number));
    const lost = work.acked.filter((w) => !kept.has(w.id));
    // Acknowledged by the deposed primary before the set saw the promotion: lost by design.
    const firstSwitch = switches.find((s) => s.at > (figures.promotedAt as number))?.at ?? Number.POSITIVE_INFINITY;
    const lostAfterSwitch = lost.filter((w) => w.at > firstSwitch);
    const staleBeyond = work.reads.filter((r) => r.old !== undefined && kept.has(r.old) && !r.seen.old);
    const stale = work.reads.filter((r) => r.latest !== undefined && kept.has(r.latest) && !r.seen.latest);
    console.log(
      JSON.stringify({
        ops: work.acked.length + work.reads.length + work.failed(),
        acked: work.acked.length,
        reads: work.reads.length,
        failed: work.failed(),
        lost: lost.map((w) => w.endpoint),
        lostAfterSwitch: lostAfterSwitch.length,
        stale: stale.map((r) => r.endpoint),
        staleBeyond: staleBeyond.map((r) => r.endpoint),
        readsBy: Object.fromEntries(['a', 'b'].map((n) => [n, work.reads.filter((r) => r.endpoint === n).length])),
        counts,
        figures,
        minus1: kept.has(-1),
      }),
    );
    expect(lostAfterSwitch).toEqual([]);
    expect(staleBeyond).toEqual([]);
    expect(counts['failover.splitBrain'] ?? 0).toBe(0);
    expect(kept.has(-1)).toBe(false);
  }, 60_000);
});

export type { PgNode };
