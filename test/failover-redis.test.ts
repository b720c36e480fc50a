import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createBus, type EventOf, type EventType } from '@holdfast/core';
import { type Failover, failover } from '@holdfast/failover';
import { redisRoles } from '@holdfast/failover/ioredis';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cartRedis } from '../examples/db-failover/cart-redis.js';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from './support/redis.js';
import { load } from './support/sentinel-load.js';

/**
 * A Redis master and replica started by the test, one ioredis client per server, and a set with
 * `redisRoles()` over them, under 200 reads/s and 20 writes/s: discovery, a failover by
 * `REPLICAOF NO ONE`, the old master back (empty, so fenced), its rejoin as a replica, and a
 * split brain (a replica promoted while the master still runs).
 */

const interval = 300;

interface Outcome {
  readonly intent: 'read' | 'write';
  readonly started: number;
  readonly endpoint: string | undefined;
  readonly code: string | undefined;
  readonly key: string | undefined;
}

const figures: Record<string, string | number>[] = [];
const clients: Redis[] = [];

function client(server: RedisServer): Redis {
  // No offline queue: a command on a lost connection fails at once, so the set can move on.
  const c = new Redis({ host: server.host, port: server.port, maxRetriesPerRequest: 0, enableOfflineQueue: false });
  c.on('error', () => {});
  clients.push(c);
  return c;
}

/** Ten reads and a write every 50 ms; the pair holds no `probe` key. */
const load10 = (db: Failover<Redis>, phase: string) => load(db, phase, { reads: 10, probe: false });

async function present(c: Redis, keys: readonly string[]): Promise<number> {
  if (keys.length === 0) return 0;
  return c.exists(...keys);
}

function acked(outcomes: readonly Outcome[], endpoint?: string): string[] {
  return outcomes
    .filter((o) => o.intent === 'write' && o.code === undefined && (endpoint === undefined || o.endpoint === endpoint))
    .map((o) => o.key as string);
}

function tally(scenario: string, outcomes: readonly Outcome[], extra: Record<string, string | number> = {}) {
  const reads = outcomes.filter((o) => o.intent === 'read');
  const writes = outcomes.filter((o) => o.intent === 'write');
  const f = {
    scenario,
    reads: reads.length,
    readsFailed: reads.filter((o) => o.code !== undefined).length,
    writes: writes.length,
    writesFailed: writes.filter((o) => o.code !== undefined).length,
    noPrimary: writes.filter((o) => o.code === 'E_NO_PRIMARY').length,
    ...extra,
  };
  figures.push(f);
  return f;
}

async function until(what: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await what())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(20);
  }
}

describe.skipIf(!redisAvailable())('failover on a real Redis master and replica', () => {
  let a: RedisServer;
  let b: RedisServer;
  let ca: Redis;
  let cb: Redis;
  let db: Failover<Redis>;
  let dir: string;
  const events: EventOf<EventType>[] = [];
  const bus = createBus();
  bus.on('*', (e) => void events.push(e as EventOf<EventType>));
  const of = <K extends EventType>(type: K) => events.filter((e) => e.type === type) as unknown as EventOf<K>[];
  const linkUp = async (c: Redis) => (await c.info('replication')).includes('master_link_status:up');

  beforeAll(async () => {
    // Diskless replication in a temp dir: no dump.rdb anywhere, so a restarted server comes back empty.
    dir = mkdtempSync(join(tmpdir(), 'holdfast-redis-'));
    const args = ['--dir', dir, '--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '0'];
    [a, b] = (await startRedis(2, [...args, '--repl-diskless-load', 'on-empty-db'])) as [RedisServer, RedisServer];
    ca = client(a);
    cb = client(b);
    await Promise.all([once(ca, 'ready'), once(cb, 'ready')]);
    await cb.replicaof(a.host, a.port);
    await until(() => linkUp(cb));
    db = failover({
      name: 'cart-redis',
      endpoints: [
        { name: 'redis-a', target: ca },
        { name: 'redis-b', target: cb },
      ],
      roles: redisRoles({ interval, timeout: 300 }),
      timeout: 500,
      retry: { idempotent: true },
      bus,
      policies: false,
    });
  }, 30_000);

  afterAll(async () => {
    db?.dispose();
    for (const c of clients) c.disconnect();
    await stopAllRedis();
    rmSync(dir, { recursive: true, force: true });
    console.log('\nfailover on Redis: 200 reads/s + 20 writes/s, roles.interval 300 ms\n');
    console.table(figures);
  });

  it('discovers the master and the replica: writes to the master, reads to the replica', async () => {
    const run = load10(db, 'discover');
    await sleep(1_000);
    const outcomes = await run.stop();
    const f = tally('R1 discovery', outcomes);
    expect(f.readsFailed + f.writesFailed).toBe(0);
    expect(new Set(outcomes.filter((o) => o.intent === 'write').map((o) => o.endpoint))).toEqual(new Set(['redis-a']));
    expect(new Set(outcomes.filter((o) => o.intent === 'read').map((o) => o.endpoint))).toEqual(new Set(['redis-b']));
    expect(db.snapshot()).toMatchObject({
      primary: 'redis-a',
      endpoints: [{ discovered: 'primary' }, { discovered: 'replica', lag: 0 }],
    });
  });

  it('the example the docs show (examples/db-failover/cart-redis.ts) runs against the pair', async () => {
    const carts = cartRedis([
      { name: 'r-a', options: { host: a.host, port: a.port } },
      { name: 'r-b', options: { host: b.host, port: b.port } },
    ]);
    await carts.addToCart('42', 'kettle');
    await until(async () => (await cb.hget('cart:42', 'kettle')) === '1');
    expect(await carts.readCart('42')).toEqual({ kettle: '1' });
    expect(carts.cache.snapshot()).toMatchObject({ primary: 'r-a' });
    carts.close();
  });

  it('clients still making their first connection: the first role check waits for it, and finds the roles', async () => {
    // Without an offline queue, a command sent before the connection is ready fails at once: the
    // first check called both servers unreachable, and roles were known only an interval later.
    const local = createBus();
    const roles: string[] = [];
    local.on('failover.role', (e) => roles.push(`${e.endpoint} ${e.role}`));
    const started = Date.now();
    const set = failover({
      name: 'fresh',
      endpoints: [
        { name: 'redis-a', target: client(a) },
        { name: 'redis-b', target: client(b) },
      ],
      roles: redisRoles({ interval: 5_000, timeout: 2_000 }),
      timeout: 2_000,
      bus: local,
      policies: false,
    });
    try {
      expect(await set.execute(async (e) => e.name)).toBe('redis-a');
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(roles.sort()).toEqual(['redis-a primary', 'redis-b replica']);
    } finally {
      set.dispose();
    }
  });

  it('master killed, then REPLICAOF NO ONE on the replica: reads never fail, writes move to the new master', async () => {
    const run = load10(db, 'failover');
    await sleep(300);
    const killedAt = Date.now();
    await a.kill();
    await sleep(1_500);
    await cb.replicaof('NO', 'ONE');
    const promotedAt = Date.now();
    await until(() => db.snapshot().primary === 'redis-b');
    const switchedAt = Date.now();
    await sleep(1_000);
    const outcomes = await run.stop();
    const lost = acked(outcomes, 'redis-b').length - (await present(cb, acked(outcomes, 'redis-b')));
    const f = tally('R2 kill master + REPLICAOF NO ONE', outcomes, {
      writesLost: lost,
      switchMs: switchedAt - promotedAt,
    });
    expect(f.readsFailed).toBe(0);
    expect(f.noPrimary).toBeGreaterThan(5); // refused while nothing was master
    expect(lost).toBe(0);
    const late = outcomes.filter((o) => o.intent === 'write' && o.started > switchedAt);
    expect(late.length).toBeGreaterThan(10);
    expect(late.every((o) => o.code === undefined && o.endpoint === 'redis-b')).toBe(true);
    expect(killedAt).toBeLessThan(promotedAt);
  });

  it('the old master comes back empty: it is fenced, 0 acknowledged writes land on it', async () => {
    const run = load10(db, 'stale');
    await sleep(200);
    await a.restart();
    await until(() => db.snapshot().endpoints[0]?.discovered === 'fenced');
    await sleep(1_000);
    const outcomes = await run.stop();
    const keys = acked(outcomes);
    const onStale = await present(ca, keys);
    const lost = keys.length - (await present(cb, keys));
    const f = tally('R3 stale master back', outcomes, { writesLost: lost, onStale });
    expect(f.readsFailed + f.writesFailed).toBe(0);
    expect(onStale).toBe(0);
    expect(lost).toBe(0);
    expect(of('failover.fence')).toContainEqual(expect.objectContaining({ endpoint: 'redis-a', primary: 'redis-b' }));
  });

  it('the old master rejoins as a replica (REPLICAOF) and takes reads again', async () => {
    const run = load10(db, 'rejoin');
    await sleep(200);
    await ca.replicaof(b.host, b.port);
    await until(() => linkUp(ca));
    await until(() => db.snapshot().endpoints[0]?.discovered === 'replica');
    const rejoinedAt = Date.now();
    await sleep(1_000);
    const outcomes = await run.stop();
    const f = tally('R4 old master rejoins', outcomes);
    expect(f.readsFailed + f.writesFailed).toBe(0);
    expect(outcomes.filter((o) => o.started > rejoinedAt && o.endpoint === 'redis-a').length).toBeGreaterThan(50);
  });

  it('split brain: a replica promoted while the master runs wins by its history; the old master is fenced', async () => {
    const run = load10(db, 'split');
    await sleep(200);
    await ca.replicaof('NO', 'ONE'); // both are masters now; a's replid2 is b's replid
    await until(() => db.snapshot().primary === 'redis-a');
    const fencedAt = Date.now();
    await sleep(1_000);
    const outcomes = await run.stop();
    const after = outcomes.filter((o) => o.intent === 'write' && o.started > fencedAt);
    // Writes acknowledged by b between the promotion and its discovery: the operator's to fence.
    const beforeDiscovery = acked(
      outcomes.filter((o) => o.started <= fencedAt),
      'redis-b',
    );
    const lostOnOld = beforeDiscovery.length - (await present(ca, beforeDiscovery));
    tally('R5 split brain', outcomes, { ackedByOldMasterLost: lostOnOld });
    expect(after.length).toBeGreaterThan(10);
    expect(after.every((o) => o.code === undefined && o.endpoint === 'redis-a')).toBe(true);
    expect(db.snapshot().endpoints[1]).toMatchObject({ discovered: 'fenced' });
    expect(outcomes.filter((o) => o.intent === 'read' && o.code !== undefined)).toEqual([]);
  });
});
