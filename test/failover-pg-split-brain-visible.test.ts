import { setTimeout as sleep } from 'node:timers/promises';
import { createBus, createPolicyRegistry, type EventOf, healthReport } from '@holdfast/core';
import { failover } from '@holdfast/failover';
import { pgRoles } from '@holdfast/failover/pg';
import { describe, expect, it } from 'vitest';
import { usePgPair } from './support/pg-pair-use.js';
import { type PgNode, type PgPair, postgresAvailable } from './support/postgres.js';

/**
 * A split brain a user can see: two replicas of one primary promoted apart (both on timeline 2).
 * The set holds every write; before, only the `E_NO_PRIMARY` message said why, while its snapshot
 * showed two fenced endpoints, health said `2 endpoints up` and the bus said nothing of it.
 */

async function until(what: () => boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!what()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(20);
  }
}

describe.skipIf(!postgresAvailable())('failover on PostgreSQL: a split brain in snapshot, health and events', () => {
  let pair: PgPair;
  let b: PgNode;
  let c: PgNode;

  const { pool } = usePgPair({
    pool: { max: 2, connectionTimeoutMillis: 1_000, query_timeout: 1_000 },
    async started(started) {
      pair = started;
      pair.primary.sql('create table orders (id text primary key)');
      b = pair.replica;
      c = await pair.addReplica('pg-c', pair.primary);
      await until(() => c.sql("select to_regclass('orders') is not null") === 't');
      await pair.primary.kill();
      await b.promote();
      await c.promote();
    },
    timeout: 120_000,
  });

  it('starts, lasts while one side is dead, ends when it is rebuilt as a replica: snapshot, health, one event each way', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const events: EventOf<'failover.splitBrain'>[] = [];
    bus.on('failover.splitBrain', (e) => events.push(e));
    // Names with the connection string's password in them: never in an event, a snapshot, a report.
    const name = (node: PgNode) => `postgres://app:s3cr3t-pw@127.0.0.1:${node.connection.port}/postgres`;
    const db = failover({
      name: 'orders-db',
      endpoints: [
        { name: name(b), target: pool(b) },
        { name: name(c), target: pool(c) },
      ],
      roles: pgRoles({ interval: 200, timeout: 500 }),
      bus,
      policies,
    });
    const shown = db.snapshot().endpoints.map((e) => e.name);
    const check = () => healthReport({ policies }).checks.find((x) => x.name === 'orders-db');
    const started = Date.now();
    try {
      await until(() => db.snapshot().splitBrain !== null);
      const split = db.snapshot().splitBrain;
      expect(split).toMatchObject({ endpoints: shown });
      expect(split?.since).toBeGreaterThanOrEqual(started);
      expect(check()).toMatchObject({ status: 'warn', reason: expect.stringContaining('split brain') });
      expect(events).toMatchObject([{ active: true, endpoints: shown, since: split?.since }]);

      await c.kill();
      await until(() => db.snapshot().endpoints[1]?.discovered === 'unreachable');
      await sleep(600); // three more rounds of checks
      expect(db.snapshot().splitBrain).toEqual(split);
      expect(check()?.status).toBe('warn');
      expect(events).toHaveLength(1);

      await c.rebuildAsReplicaOf(b);
      await until(() => db.snapshot().primary === shown[0]);
      expect(db.snapshot().splitBrain).toBeNull();
      expect(check()?.status).toBe('pass');
      expect(events).toHaveLength(2);
      expect(events[1]).toMatchObject({ active: false, endpoints: shown, since: split?.since });
      console.table([{ 'split brain lasted (ms)': (events[1]?.time ?? 0) - (events[1]?.since ?? 0) }]);
      const seen = JSON.stringify([events, db.snapshot(), healthReport({ policies })]);
      expect(seen).not.toContain('s3cr3t-pw');
    } finally {
      db.dispose();
    }
  }, 120_000);
});
