import { once } from 'node:events';
import { createServer } from 'node:net';
import { createBus, type EventOf } from '@holdfast/core';
import { failover } from '@holdfast/failover';
import { redisRoles } from '@holdfast/failover/ioredis';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, redisCommand, startRedis, stopAllRedis } from './support/redis.js';

/**
 * What a Sentinel failover leaves behind for a failover set. Sentinel does to every server it
 * promotes or reconfigures
 * `CLIENT KILL TYPE normal`, which closes every client connection (ioredis reconnects 50 ms
 * later). With `enableOfflineQueue: false`, as a failover set wants, a command sent meanwhile
 * fails at once without being written.
 */

const clients: Redis[] = [];
afterAll(async () => {
  for (const c of clients) c.disconnect();
  await stopAllRedis();
});

async function client(server: RedisServer): Promise<Redis> {
  const c = new Redis({ host: server.host, port: server.port, maxRetriesPerRequest: 0, enableOfflineQueue: false });
  c.on('error', () => {});
  clients.push(c);
  await once(c, 'ready');
  return c;
}

/** Closes every client connection of `server`, as Sentinel does, and waits until `c` saw it. */
async function killClients(server: RedisServer, c: Redis): Promise<void> {
  const closed = once(c, 'close');
  await redisCommand(server.port, ['CLIENT', 'KILL', 'TYPE', 'normal']);
  await closed;
  expect(c.status).toBe('reconnecting');
}

/** A set over a master's client (m) and a replica's (r), on a private bus. */
function pair(cm: Redis, cr: Redis, interval: number, timeout: number) {
  return failover({
    endpoints: [
      { name: 'm', target: cm },
      { name: 'r', target: cr },
    ],
    roles: redisRoles({ interval, timeout }),
    bus: createBus(),
    policies: false,
  });
}

describe.skipIf(!redisAvailable())("Sentinel's CLIENT KILL on a failover set's servers", () => {
  it('a role check sent while the client reconnects waits for it, and answers', async () => {
    const [server] = (await startRedis(1)) as [RedisServer];
    const c = await client(server);
    const { check } = redisRoles<Redis>({ timeout: 1_000 });
    await killClients(server, c);
    const report = await check({ name: 'r', target: c, weight: 1, priority: 0 }, new AbortController().signal);
    expect(report).toMatchObject({ role: 'primary' });
  });

  it('the new master and a replica keep their roles through it: no endpoint is called unreachable', async () => {
    const [m, r] = (await startRedis(2, ['--repl-diskless-sync-delay', '0'])) as [RedisServer, RedisServer];
    const [cm, cr] = [await client(m), await client(r)];
    await cr.replicaof(m.host, m.port);
    const bus = createBus();
    const roles: EventOf<'failover.role'>[] = [];
    bus.on('failover.role', (e) => roles.push(e));
    const db = failover({
      endpoints: [
        { name: 'm', target: cm },
        { name: 'r', target: cr },
      ],
      roles: redisRoles({ interval: 5_000, timeout: 1_000 }),
      bus,
      policies: false,
    });
    try {
      expect(await db.execute((e) => e.name)).toBe('m');
      const before = roles.length;
      await killClients(m, cm);
      await killClients(r, cr);
      // A failed call asks the role again at once (twice is unreachable): it must wait for the reconnection.
      await db.execute((e) => e.target.set('k', '1')).catch(() => {});
      await db.execute((e) => e.target.get('k'), { intent: 'read' }).catch(() => {});
      await db.execute((e) => e.target.set('k', '2')).catch(() => {});
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(roles.slice(before).map((e) => `${e.endpoint} ${e.role}`)).toEqual([]);
      expect(db.snapshot()).toMatchObject({
        primary: 'm',
        endpoints: [{ discovered: 'primary' }, { discovered: 'replica' }],
      });
    } finally {
      db.dispose();
    }
  });

  it('a read the client refused to send (its connection closed) is retried on another server', async () => {
    const [m, r] = (await startRedis(2, ['--repl-diskless-sync-delay', '0'])) as [RedisServer, RedisServer];
    const [cm, cr] = [await client(m), await client(r)];
    await cr.replicaof(m.host, m.port);
    await cm.set('cart', 'kettle');
    while (!(await cr.info('replication')).includes('master_link_status:up'))
      await new Promise((r) => setTimeout(r, 20));
    const db = pair(cm, cr, 5_000, 1_000);
    try {
      expect(await db.execute((e) => e.name)).toBe('m');
      expect(await db.execute((e) => e.name, { intent: 'read' })).toBe('r');
      await killClients(r, cr);
      const read = await db.execute(async (e) => `${e.name}:${await e.target.get('cart')}`, { intent: 'read' });
      expect(read).toBe('m:kettle');
    } finally {
      db.dispose();
    }
  });
});

describe.skipIf(!redisAvailable())('a replica that has not synced since it started', () => {
  // The old master restarted empty, demoted by the Sentinels, or a replica restarted without
  // persistence: until its first sync ends it answers reads from what it holds (nothing).
  it('takes no reads, with the default settings: they go to the master', async () => {
    const [m, r] = (await startRedis(2)) as [RedisServer, RedisServer];
    const [cm, cr] = [await client(m), await client(r)];
    await cm.set('cart', 'kettle');
    const dead = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as { port: number };
        probe.close(() => resolve(port));
      });
    });
    await cr.replicaof('127.0.0.1', dead); // its master never answers: it never syncs
    const db = pair(cm, cr, 5_000, 1_000);
    try {
      const reads: string[] = [];
      for (let i = 0; i < 5; i++) {
        reads.push(await db.execute(async (e) => `${e.name}:${await e.target.get('cart')}`, { intent: 'read' }));
      }
      expect(reads).toEqual(Array(5).fill('m:kettle'));
      expect(db.snapshot().endpoints[1]).toMatchObject({ discovered: 'replica', lag: null });
    } finally {
      db.dispose();
    }
  });
});

describe.skipIf(!redisAvailable())('min-replicas-to-write on the master', () => {
  // The server's own fence: with its replicas gone it refuses writes (NOREPLICAS). That is an
  // answer, not a failure: the master is not ejected, nor the write sent anywhere else.
  it('writes fail with NOREPLICAS while no replica is linked; the master stays primary and is not ejected', async () => {
    const [m, r] = (await startRedis(2, ['--repl-diskless-sync-delay', '0'])) as [RedisServer, RedisServer];
    const [cm, cr] = [await client(m), await client(r)];
    await cm.config('SET', 'min-replicas-to-write', '1');
    await cm.config('SET', 'min-replicas-max-lag', '1');
    await cr.replicaof(m.host, m.port);
    // Linked is not enough: the master takes writes once it counts the replica good (an ack).
    while (!(await cm.info('replication')).includes('min_slaves_good_slaves:1'))
      await new Promise((x) => setTimeout(x, 20));
    const db = pair(cm, cr, 200, 500);
    try {
      expect(await db.execute((e) => e.target.set('k', '1').then(() => e.name))).toBe('m');
      await r.kill();
      // The master counts a replica good for min-replicas-max-lag (1 s) after its last ack.
      let refusal: unknown;
      const deadline = Date.now() + 5_000;
      while (refusal === undefined && Date.now() < deadline) {
        refusal = await db
          .execute((e) => e.target.set('k', '2'))
          .then(
            () => undefined,
            (error: unknown) => error,
          );
        await new Promise((x) => setTimeout(x, 100));
      }
      expect(String((refusal as Error).message)).toMatch(/^NOREPLICAS/);
      const errors: string[] = [];
      for (let i = 0; i < 10; i++) {
        errors.push(
          await db.execute((e) => e.target.set('k', '3')).catch((e: Error) => e.message.split(' ')[0] as string),
        );
      }
      expect(errors).toEqual(Array(10).fill('NOREPLICAS'));
      expect(db.snapshot()).toMatchObject({ primary: 'm', endpoints: [{ ejection: 'none' }, {}] });
    } finally {
      db.dispose();
    }
  });
});
