/**
 * Outside review (s37): `failover()` with `redisRoles()` over REAL redis-server processes started
 * here (loopback only, free ports, every process killed by its pid after each test). Each test
 * marked [BUG] fails on the code reviewed; [GUARD] ones pass and pin behaviour that held.
 */
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { redisRolesHarness } from './support/redis-roles.js';

const { Server1, admin, queueing, target, until, linkUp, synced, makeSet, write, read, discovered, relay } =
  redisRolesHarness('s37');

describe('redisRoles() on real redis-server processes (review s37)', () => {
  it('[BUG] a replica restarted as a master from its own RDB (replicaof not persisted) outranks the live master: writes go to the stale copy', async () => {
    const a = await Server1.make();
    const b = await Server1.make();
    await a.start();
    await b.start(['--replicaof', '127.0.0.1', String(a.port)]);
    const ab = admin(b.port);
    await synced(a.port, ab);
    const db = makeSet([
      { name: 'redis-a', target: target(a.port) },
      { name: 'redis-b', target: target(b.port) },
    ]);
    expect(await write(db, 'k', 'v1')).toBe('redis-a');
    await until(async () => (await ab.get('k')) === 'v1');
    await ab.save(); // b's dump.rdb (Redis' default `save` would write one on its own)
    expect(await write(db, 'k', 'v2')).toBe('redis-a'); // on a only: b's RDB has v1
    // b crashes and comes back without `replicaof` (set at runtime, never in its config): a master of its RDB.
    await b.kill();
    await until(() => discovered(db, 'redis-b') === 'unreachable', 5_000, 'b unreachable');
    await b.start();
    await until(() => discovered(db, 'redis-b') !== 'unreachable', 5_000, 'b back');
    await sleep(600); // a few role rounds
    const snap = db.snapshot();
    const landed: string[] = [];
    for (let i = 0; i < 10; i++)
      landed.push(await write(db, `after:${i}`, 'x').catch((e: { code?: string }) => String(e.code)));
    const onStale = await admin(b.port).get('k');
    // Expected: a, the master that never failed and holds every write, keeps the writes; b (an RDB
    // copy of a's history, v1) is fenced or at worst a tie. Actual: b wins by its replid2.
    expect({
      primary: snap.primary,
      landed: [...new Set(landed)],
      valueOnChosen: snap.primary === 'redis-b' ? onStale : 'v2',
    }).toEqual({
      primary: 'redis-a',
      landed: ['redis-a'],
      valueOnChosen: 'v2',
    });
  }, 20_000);

  it('[BUG] a backup of the master (its dump.rdb) restored on a new server started as a master outranks the live master', async () => {
    const a = await Server1.make();
    const b = await Server1.make();
    const c = await Server1.make();
    await a.start();
    await b.start(['--replicaof', '127.0.0.1', String(a.port)]); // a master with a replica: its RDB records its replid
    await synced(a.port, admin(b.port));
    const aa = admin(a.port);
    await aa.set('k', 'v1');
    await aa.save();
    await aa.set('k', 'v2'); // after the backup
    copyFileSync(join(a.dir, 'dump.rdb'), join(c.dir, 'dump.rdb'));
    await c.start(); // e.g. a DR drill or a new replica booted before its replicaof is set
    const db = makeSet([
      { name: 'redis-a', target: target(a.port) },
      { name: 'redis-b', target: target(b.port) },
      { name: 'redis-c', target: target(c.port) },
    ]);
    const landed: string[] = [];
    for (let i = 0; i < 5; i++)
      landed.push(await write(db, `after:${i}`, 'x').catch((e: { code?: string }) => String(e.code)));
    const value = await db.execute(async (e) => e.target.get('k')).catch((e: { code?: string }) => String(e.code));
    // Expected: never the restored copy (pgRoles keeps the old primary: a split brain at worst).
    // Actual: c's replid2 is a's replid, so c "was promoted from a": every write goes to the backup.
    expect({ primary: db.snapshot().primary, landed: [...new Set(landed)], value }).toEqual({
      primary: 'redis-a',
      landed: ['redis-a'],
      value: 'v2',
    });
  }, 20_000);

  it('[GUARD] master frozen (SIGSTOP), replica promoted, master resumed at once, offline-queue clients and no set timeout: 0 acknowledged writes lost', async () => {
    const a = await Server1.make();
    const b = await Server1.make();
    await a.start();
    await b.start(['--replicaof', '127.0.0.1', String(a.port)]);
    const ab = admin(b.port);
    await synced(a.port, ab);
    const db = makeSet(
      [
        { name: 'redis-a', target: queueing(a.port) },
        { name: 'redis-b', target: queueing(b.port) },
      ],
      {},
      null, // no per-try timeout: a write waits for its answer
    );
    const acked: { key: string; on: string; at: number }[] = [];
    const failed: string[] = [];
    let n = 0;
    let running = true;
    const t0 = Date.now();
    const pending = new Set<Promise<void>>();
    const loop = (async () => {
      while (running) {
        const key = `w:${++n}`;
        const p = write(db, key, '1').then(
          (on) => void acked.push({ key, on, at: Date.now() - t0 }),
          (e: { code?: string }) => void failed.push(String(e.code)),
        );
        pending.add(p);
        void p.finally(() => pending.delete(p));
        await sleep(20);
      }
    })();
    await sleep(500);
    const stopAt = Date.now() - t0;
    a.signal('SIGSTOP');
    await sleep(700);
    await ab.replicaof('NO', 'ONE');
    const contAt = Date.now() - t0;
    a.signal('SIGCONT');
    await sleep(1_500);
    running = false;
    await loop;
    await Promise.race([Promise.all(pending), sleep(5_000)]);
    const keys = acked.map((x) => x.key);
    const onB = keys.length === 0 ? 0 : await ab.exists(...keys);
    const missing = [];
    for (const x of acked) if ((await ab.exists(x.key)) === 0) missing.push(`${x.key}@${x.on}+${x.at}ms`);
    expect({ pending: pending.size, lost: keys.length - onB, missing, stopAt, contAt }).toEqual({
      pending: 0,
      lost: 0,
      missing: [],
      stopAt,
      contAt,
    });
    expect(acked.filter((x) => x.on === 'redis-b').length).toBeGreaterThan(10);
  }, 20_000);

  it('[GUARD] a write queued by ioredis for a killed master lands on it restarted empty (fenced): the caller gets an error, never an acknowledgement', async () => {
    const a = await Server1.make();
    const b = await Server1.make();
    await a.start();
    await b.start(['--replicaof', '127.0.0.1', String(a.port)]);
    const ab = admin(b.port);
    await synced(a.port, ab);
    const ca = queueing(a.port, { maxRetriesPerRequest: null, lazyConnect: true });
    const db = makeSet(
      [
        { name: 'redis-a', target: ca },
        { name: 'redis-b', target: queueing(b.port, { lazyConnect: true }) },
      ],
      {},
      null, // no per-try timeout: a write waits for its answer
    );
    expect(await write(db, 'k0', '1')).toBe('redis-a');
    await a.kill();
    // Sent now, it waits in ioredis' queue for a (maxRetriesPerRequest: null) with no set timeout.
    const queued = write(db, 'queued', '1').then(
      (on) => `acked on ${on}`,
      (e: { code?: string; message?: string }) => String(e.code ?? e.message),
    );
    await sleep(300);
    await ab.replicaof('NO', 'ONE');
    await until(() => db.snapshot().primary === 'redis-b', 5_000, 'b primary');
    await a.start(); // empty, a master: fenced
    const outcome = await Promise.race([queued, sleep(8_000).then(() => 'still pending')]);
    const onA = await admin(a.port).exists('queued');
    expect({ outcome, fenced: discovered(db, 'redis-a') }).toEqual({
      outcome: 'E_UNCONFIRMED_WRITE',
      fenced: 'fenced',
    });
    expect(onA).toBe(1); // applied to the fenced node, reported as unconfirmed: as documented
  }, 20_000);

  it('[BUG] the old master restarted from its RDB after a failover ties with the promoted replica in a set started then: every write refused', async () => {
    const a = await Server1.make();
    const b = await Server1.make();
    await a.start();
    await b.start(['--replicaof', '127.0.0.1', String(a.port)]);
    const aa = admin(a.port);
    const ab = admin(b.port);
    await synced(a.port, ab);
    const db = makeSet([
      { name: 'redis-a', target: target(a.port) },
      { name: 'redis-b', target: target(b.port) },
    ]);
    expect(await write(db, 'k', 'v1')).toBe('redis-a');
    await aa.save(); // Redis' default config snapshots on its own
    await a.kill();
    await ab.replicaof('NO', 'ONE');
    await until(() => db.snapshot().primary === 'redis-b', 5_000, 'b primary');
    expect(await write(db, 'k', 'v2')).toBe('redis-b');
    await a.start(); // back as a master, loading its dump.rdb (k = v1)
    await until(() => discovered(db, 'redis-a') !== 'unreachable', 5_000, 'a back');
    // [GUARD] the set that watched the failover remembers a lost to b: writes stay on b.
    await sleep(400);
    expect(db.snapshot().primary).toBe('redis-b');
    expect(await write(db, 'k', 'v3')).toBe('redis-b');
    // A process started now (a deploy, a restart, autoscaling) sees the same two servers.
    const fresh = makeSet([
      { name: 'redis-a', target: target(a.port) },
      { name: 'redis-b', target: target(b.port) },
    ]);
    const outcomes: string[] = [];
    for (let i = 0; i < 10; i++) {
      outcomes.push(await write(fresh, `after:${i}`, 'x').catch((e: { code?: string }) => String(e.code)));
      await sleep(50);
    }
    const info = (await admin(a.port).info('replication')).match(/master_replid2?:\w+/g);
    // Expected (as pgRoles fences an old primary back on its old timeline): b keeps the writes, a
    // fenced. Actual: Redis 7 loads a master's RDB replid into replid2, so a looks promoted from
    // the same history as b: compareRedisTokens ties, a split brain, E_NO_PRIMARY for every write.
    expect({
      primary: fresh.snapshot().primary,
      outcomes: [...new Set(outcomes)],
      split: fresh.snapshot().splitBrain?.endpoints ?? null,
      info,
    }).toEqual({
      primary: 'redis-b',
      outcomes: ['redis-b'],
      split: null,
      info,
    });
  }, 20_000);

  it('[BUG] a replica still following the fenced old master (split brain) takes reads under maxLag: every read stale', async () => {
    const a = await Server1.make();
    const b = await Server1.make();
    const c = await Server1.make();
    await a.start();
    await b.start(['--replicaof', '127.0.0.1', String(a.port)]);
    await c.start(['--replicaof', '127.0.0.1', String(a.port)]);
    const ab = admin(b.port);
    const ac = admin(c.port);
    await synced(a.port, ab);
    await synced(a.port, ac);
    const db = makeSet(
      [
        { name: 'redis-a', target: target(a.port) },
        { name: 'redis-b', target: target(b.port) },
        { name: 'redis-c', target: target(c.port) },
      ],
      { maxLag: 1_000 },
    );
    expect(await write(db, 'k', 'v1')).toBe('redis-a');
    await ab.replicaof('NO', 'ONE'); // b promoted while a runs: a is fenced; c still replicates a
    await until(
      () => db.snapshot().primary === 'redis-b' && discovered(db, 'redis-a') === 'fenced',
      5_000,
      'b primary',
    );
    expect(await write(db, 'k', 'v2')).toBe('redis-b');
    await sleep(400);
    const reads: string[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await read(db, 'k').catch((e: { code?: string }) => ({ on: String(e.code), value: null }));
      reads.push(`${r.on}=${r.value}`);
    }
    const stale = reads.filter((r) => !r.endsWith('=v2'));
    // Expected: c (replid = the fenced a's, not the primary's) has an unknown lag under maxLag, as
    // pgRoles does for a replica of a deposed primary. Actual: link up => lag 0 => reads.
    expect({ stale: stale.length, sample: stale.slice(0, 2), cLag: db.snapshot().endpoints[2]?.lag }).toEqual({
      stale: 0,
      sample: [],
      cLag: null,
    });
  }, 20_000);

  it('[BUG] old master restarted EMPTY: its replica full-syncs from it and serves empty reads at lag 0, under maxLag', async () => {
    const a = await Server1.make();
    const b = await Server1.make();
    const c = await Server1.make();
    await a.start();
    await b.start(['--replicaof', '127.0.0.1', String(a.port)]);
    await c.start(['--replicaof', '127.0.0.1', String(a.port)]);
    const ab = admin(b.port);
    const ac = admin(c.port);
    await synced(a.port, ab);
    await synced(a.port, ac);
    const db = makeSet(
      [
        { name: 'redis-a', target: target(a.port) },
        { name: 'redis-b', target: target(b.port) },
        { name: 'redis-c', target: target(c.port) },
      ],
      { maxLag: 1_000 },
    );
    expect(await write(db, 'k', 'v1')).toBe('redis-a');
    await until(async () => (await ac.get('k')) === 'v1');
    await a.kill();
    await ab.replicaof('NO', 'ONE');
    await until(() => db.snapshot().primary === 'redis-b', 5_000, 'b primary');
    expect(await write(db, 'k', 'v2')).toBe('redis-b');
    await a.start(); // empty (no RDB), as a master: fenced by b
    await until(() => discovered(db, 'redis-a') === 'fenced', 5_000, 'a fenced');
    await until(() => linkUp(ac), 8_000, 'c resynced from the empty a');
    await sleep(400);
    const reads: string[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await read(db, 'k').catch((e: { code?: string }) => ({ on: String(e.code), value: null }));
      reads.push(`${r.on}=${r.value}`);
    }
    const wrong = reads.filter((r) => !r.endsWith('=v2'));
    expect({ wrong: wrong.length, sample: wrong.slice(0, 2) }).toEqual({ wrong: 0, sample: [] });
  }, 20_000);

  it('[BUG] a replica cut off from its master without a reset reads lag 0 until repl-timeout: stale reads under maxLag', async () => {
    const a = await Server1.make();
    const b = await Server1.make();
    await a.start();
    const link = await relay(a.port);
    await b.start(['--replicaof', '127.0.0.1', String(link.port)]);
    const ab = admin(b.port);
    await synced(a.port, ab);
    const db = makeSet(
      [
        { name: 'redis-a', target: target(a.port) },
        { name: 'redis-b', target: target(b.port) },
      ],
      { maxLag: 500 },
    );
    expect(await write(db, 'k', 'v1')).toBe('redis-a');
    await until(async () => (await ab.get('k')) === 'v1');
    link.freeze(); // b's link to a silently cut: a keeps taking writes
    expect(await write(db, 'k', 'v2')).toBe('redis-a');
    await sleep(2_500); // b is now 2.5 s behind, 5 x maxLag
    const reads: string[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await read(db, 'k').catch((e: { code?: string }) => ({ on: String(e.code), value: null }));
      reads.push(`${r.on}=${r.value}`);
    }
    const stale = reads.filter((r) => !r.endsWith('=v2'));
    const info = await ab.info('replication');
    const lastIo = /master_last_io_seconds_ago:(\d+)/.exec(info)?.[1];
    const masterSide = /slave0:[^\r\n]*lag=(\d+)/.exec(await admin(a.port).info('replication'))?.[1];
    expect({
      stale: stale.length,
      sample: stale.slice(0, 2),
      bLag: db.snapshot().endpoints[1]?.lag,
      lastIo,
      masterSide,
    }).toEqual({
      stale: 0,
      sample: [],
      bLag: expect.any(Number),
      lastIo,
      masterSide,
    });
  }, 20_000);
});
