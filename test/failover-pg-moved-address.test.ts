import { connect, createServer, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Endpoint } from '@holdfast/failover';
import { type PgQueryable, pgRoles } from '@holdfast/failover/pg';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { usePgPair } from './support/pg-pair-use.js';
import { type PgPair, postgresAvailable } from './support/postgres.js';

/**
 * One `pgRoles()` shared by two sets. pgRoles took a target that reached another server than
 * before for the old server restarted, and forgot that server's sightings through every other
 * target. But an address can move while the server it pointed to runs on: a virtual IP (or DNS
 * name) moved to a backup restored as a primary beside the old primary, which another set still
 * reaches through a pool of its own. Forgotten, the split brain was gone: a replica of the old
 * primary read lag 0 and took reads, in a set whose writes go to the other side.
 */

async function until(what: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await what())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(20);
  }
}

/** A TCP address (a virtual IP) that can be moved to another server: its connections are cut. */
async function movableAddress(port: number): Promise<{ port: number; moveTo(port: number): void; close(): void }> {
  let upstream = port;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const to = connect(upstream, '127.0.0.1');
    for (const s of [client, to]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
    }
    client.pipe(to).pipe(client);
    client.on('close', () => to.destroy());
    to.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return {
    port: address.port,
    moveTo(next) {
      upstream = next;
      for (const s of sockets) s.destroy();
    },
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

describe.skipIf(!postgresAvailable())(
  'failover on PostgreSQL: an address moved, its old server still a primary',
  () => {
    let pair: PgPair;
    let vip: Awaited<ReturnType<typeof movableAddress>> | undefined;

    const { pool } = usePgPair({
      pool: { max: 2, connectionTimeoutMillis: 5_000 },
      started: (started) => {
        pair = started;
      },
      stopping() {
        vip?.close();
      },
    });

    it('a replica of the old primary keeps an unknown lag while that primary is seen through the other set’s pool', async () => {
      const old = pair.primary;
      const backup = pair.replica;
      const x = await pair.addReplica('pg-x', old);
      vip = await movableAddress(old.port);
      const roles = pgRoles<PgQueryable>({ timeout: 5_000 });
      type Check = (
        e: Endpoint<PgQueryable>,
        s: AbortSignal,
        set: { interval: number; timeout: number },
      ) => Promise<{ role: string; lag?: number }>;
      const check = roles.check as unknown as Check;
      const endpoint = (name: string, target: pg.Pool) => ({ name, target }) as unknown as Endpoint<PgQueryable>;
      const signal = new AbortController().signal;
      // A set checking once a minute, over pools of its own to each server.
      const seldom = { interval: 60_000, timeout: 5_000 };
      // A set checking every 100 ms, its writes through the virtual IP.
      const often = { interval: 100, timeout: 5_000 };
      const oldDirect = endpoint('old', pool(old.connection));
      const viaVip = endpoint('vip', pool({ ...old.connection, port: vip.port }));
      const replica = endpoint('pg-x', pool(x.connection));

      expect((await check(oldDirect, signal, seldom)).role).toBe('primary');
      expect((await check(viaVip, signal, often)).role).toBe('primary');
      await until(async () => (await check(replica, signal, often)).lag === 0);

      // Disaster recovery gone wrong: the backup is started as a primary (same system identifier,
      // same timeline) and the virtual IP moved to it, while the old primary runs on, unfenced.
      await backup.restoreAsPrimary();
      vip.moveTo(backup.port);
      await until(async () => {
        const r = await check(viaVip, signal, often).catch(() => undefined);
        return r?.role === 'primary';
      });
      expect(old.sql('select pg_is_in_recovery()')).toBe('f');
      expect(backup.sql('select pg_is_in_recovery()')).toBe('f');
      // The often set's replica follows the old primary, not the one its writes go to: a split
      // brain, still seen through the seldom set's pool (its last check, within its horizon).
      // Time for pgRoles to ask the old primary again through the seldom set's pool: it answers.
      const lags: (number | undefined)[] = [];
      for (let i = 0; i < 10; i++) {
        await sleep(200);
        const r = await check(replica, signal, often);
        expect(r).toMatchObject({ role: 'replica' });
        lags.push(r.lag);
      }
      expect(lags).toEqual(Array(10).fill(undefined));
    }, 120_000);
  },
);
