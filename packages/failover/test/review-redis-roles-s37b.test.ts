/**
 * Outside review (s37b, of b573a064): `failover()` with `redisRoles()` over REAL redis-server processes started
 * here (loopback only, free ports, every process killed by its pid after each test). Each test
 * marked [BUG] fails on the code of b573a064; [GUARD] ones pass and pin behaviour that held;
 * [DOCUMENTED] ones pin the split brain the README documents where INFO cannot tell which master is stale.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import type { Failover } from '../src/index.js';
import { redisRolesHarness } from './support/redis-roles.js';

const { Server1, admin, target, until, linkUp, synced, makeSet, write, read, discovered } = redisRolesHarness('s37b');
/** A server the harness started (a redis-server with a data dir of its own). */
type Server1 = InstanceType<typeof Server1>;

/** Starts a master and `n` replicas of it, each streaming. */
async function cluster(n: number, masterArgs: string[] = [], replicaArgs: string[] = []): Promise<Server1[]> {
  const a = await Server1.make();
  await a.start(masterArgs);
  const out = [a];
  for (let i = 0; i < n; i++) {
    const r = await Server1.make();
    await r.start(['--replicaof', '127.0.0.1', String(a.port), ...replicaArgs]);
    await synced(a.port, admin(r.port));
    out.push(r);
  }
  return out;
}

const code = (e: unknown) => String((e as { code?: string }).code ?? (e as Error).message);

/** Runs `n` reads of `key`, one after the other: where each went. */
async function reads(db: Failover<Redis>, key: string, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await read(db, key).catch((e) => ({ on: code(e), value: null }));
    out.push(`${r.on}=${r.value}`);
  }
  return out;
}

/** How many of `keys` `port` holds. */
async function holds(port: number, keys: string[]): Promise<number> {
  const c = admin(port);
  let n = 0;
  for (const k of keys) n += await c.exists(k);
  return n;
}

const count = (xs: string[]) => {
  const m: Record<string, number> = {};
  for (const x of xs) m[x] = (m[x] ?? 0) + 1;
  return m;
};

describe('redisRoles() on real redis-server processes (review s37b)', () => {
  it('[GUARD] a healthy replica under a steady stream of writes (200/s) keeps taking reads under maxLag 1000, interval 200', async () => {
    const [a, b] = await cluster(1);
    const db = makeSet(
      [
        { name: 'redis-a', target: target((a as Server1).port) },
        { name: 'redis-b', target: target((b as Server1).port) },
      ],
      { maxLag: 1_000, interval: 200, timeout: 300 },
    );
    expect(await write(db, 'k', 'v')).toBe('redis-a');
    let running = true;
    let n = 0;
    const writer = (async () => {
      const aa = admin((a as Server1).port);
      while (running) {
        await aa.set(`w:${n++ % 500}`, 'x'.repeat(100));
        await sleep(5);
      }
    })();
    await sleep(1_500);
    const lags: (number | null | undefined)[] = [];
    const where: string[] = [];
    const t0 = Date.now();
    while (Date.now() - t0 < 6_000) {
      const r = await read(db, 'k').catch((e) => ({ on: code(e), value: null }));
      where.push(r.on);
      lags.push(db.snapshot().endpoints[1]?.lag);
      await sleep(20);
    }
    running = false;
    await writer;
    const onB = where.filter((w) => w === 'redis-b').length;
    const numeric = lags.filter((l): l is number => typeof l === 'number');
    expect({
      writesPerSecond: Math.round(n / 7.5) >= 100,
      shareOnB: onB / where.length > 0.95,
      maxLag: Math.max(...numeric) < 1_000,
      unknownLag: lags.length - numeric.length,
    }).toEqual({ writesPerSecond: true, shareOnB: true, maxLag: true, unknownLag: 0 });
  }, 20_000);

  it('[BUG] a failover decays: once the promoted master took 1 MB of writes (default repl-backlog-size), a set started then ties it with the old master still up: every write refused', async () => {
    const [a, b] = await cluster(1);
    const aa = admin((a as Server1).port);
    const ab = admin((b as Server1).port);
    await aa.set('k', 'v1');
    await until(async () => (await ab.get('k')) === 'v1');
    // A failover while a runs on (partitioned from the Sentinels, or a manual one): b promoted.
    await ab.replicaof('NO', 'ONE');
    await ab.set('k', 'v2');
    const endpoints = () => [
      { name: 'redis-a', target: target((a as Server1).port) },
      { name: 'redis-b', target: target((b as Server1).port) },
    ];
    // Control: a set started now writes to b (promoted: its backlog holds a's bytes).
    const before = makeSet(endpoints());
    const first = await write(before, 'c', '1').catch(code);
    // b takes ~1.2 MB of writes: its 1 MB backlog no longer holds the bytes it had of a's history.
    const big = 'x'.repeat(300_000);
    for (let i = 0; i < 4; i++) await ab.set(`big:${i}`, big);
    const info = await ab.info('replication');
    const later = makeSet(endpoints());
    const outcomes: string[] = [];
    for (let i = 0; i < 5; i++) {
      outcomes.push(await write(later, `after:${i}`, 'x').catch(code));
      await sleep(50);
    }
    expect({
      first,
      primary: later.snapshot().primary ?? null,
      outcomes: [...new Set(outcomes)],
      split: later.snapshot().splitBrain?.endpoints ?? null,
      backlog: /repl_backlog_first_byte_offset:(\d+)/.exec(info)?.[1] === '1',
    }).toEqual({ first: 'redis-b', primary: 'redis-b', outcomes: ['redis-b'], split: null, backlog: false });
  }, 20_000);

  it('[DOCUMENTED] the old master restarted from its AOF (its data, a new replid, never forked) against a promoted master whose backlog wrapped: a set started then refuses writes (a split brain naming both), none lands on a; the set that watched keeps b', async () => {
    const [a, b] = await cluster(1, ['--appendonly', 'yes']);
    const aa = admin((a as Server1).port);
    const ab = admin((b as Server1).port);
    await aa.set('k', 'v1');
    await until(async () => (await ab.get('k')) === 'v1');
    await (a as Server1).kill();
    await ab.replicaof('NO', 'ONE');
    await ab.set('k', 'v2');
    await (a as Server1).start(['--appendonly', 'yes']); // back as a master with its AOF: k = v1
    const endpoints = () => [
      { name: 'redis-a', target: target((a as Server1).port) },
      { name: 'redis-b', target: target((b as Server1).port) },
    ];
    // A set started now writes to b (promoted vs never forked), and keeps a fenced.
    const watched = makeSet(endpoints());
    const first = await write(watched, 'c', '1').catch(code);
    const big = 'x'.repeat(300_000);
    for (let i = 0; i < 4; i++) await ab.set(`big:${i}`, big);
    // b's backlog no longer holds a's history, a's replid is new: INFO cannot tell which is stale.
    const db = makeSet(endpoints());
    const keys: string[] = [];
    const outcomes: string[] = [];
    for (let i = 0; i < 5; i++) {
      keys.push(`after:${i}`);
      outcomes.push(await write(db, `after:${i}`, 'x').catch(code));
      await sleep(50);
    }
    const kept: string[] = [];
    for (let i = 0; i < 3; i++) {
      keys.push(`kept:${i}`);
      kept.push(await write(watched, `kept:${i}`, 'x').catch(code));
    }
    expect({
      first,
      primary: db.snapshot().primary ?? null,
      outcomes: [...new Set(outcomes)],
      split: [...(db.snapshot().splitBrain?.endpoints ?? [])].sort(),
      onStale: await holds((a as Server1).port, keys),
      kept: [...new Set(kept)],
    }).toEqual({
      first: 'redis-b',
      primary: null,
      outcomes: ['E_NO_PRIMARY'],
      split: ['redis-a', 'redis-b'],
      onStale: 0,
      kept: ['redis-b'],
    });
  }, 20_000);

  it("[BUG] the set that watched that failover keeps b, but b's healthy replica stops taking reads under maxLag once b's backlog wraps", async () => {
    const [a, b, c] = await cluster(2);
    const aa = admin((a as Server1).port);
    const ab = admin((b as Server1).port);
    const ac = admin((c as Server1).port);
    const db = makeSet(
      [
        { name: 'redis-a', target: target((a as Server1).port) },
        { name: 'redis-b', target: target((b as Server1).port) },
        { name: 'redis-c', target: target((c as Server1).port) },
      ],
      { maxLag: 1_000 },
    );
    expect(await write(db, 'k', 'v1')).toBe('redis-a');
    await until(async () => (await ab.get('k')) === 'v1' && (await ac.get('k')) === 'v1');
    await ab.replicaof('NO', 'ONE'); // b promoted while a runs on (fenced)
    await ac.replicaof('127.0.0.1', String((b as Server1).port)); // c re-pointed to b, as Sentinel does
    await until(() => db.snapshot().primary === 'redis-b', 5_000, 'b primary');
    expect(await write(db, 'k', 'v2')).toBe('redis-b');
    await until(async () => (await ac.get('k')) === 'v2', 5_000, 'c streams from b');
    await sleep(500);
    const control = count(await reads(db, 'k', 10));
    const big = 'x'.repeat(300_000);
    for (let i = 0; i < 4; i++) await write(db, `big:${i}`, big);
    await until(async () => (await ac.exists('big:3')) === 1, 5_000, 'c has it');
    await sleep(500);
    const after = count(await reads(db, 'k', 10));
    void aa;
    expect({ control, primary: db.snapshot().primary, after, cLag: db.snapshot().endpoints[2]?.lag }).toEqual({
      control: { 'redis-c=v2': 10 },
      primary: 'redis-b',
      after: { 'redis-c=v2': 10 },
      cLag: expect.any(Number),
    });
  }, 20_000);

  it('[GUARD] an idle master (no writes for 12 s, past repl-ping-replica-period) keeps its replica taking reads under maxLag 1000', async () => {
    const [a, b] = await cluster(1);
    const db = makeSet(
      [
        { name: 'redis-a', target: target((a as Server1).port) },
        { name: 'redis-b', target: target((b as Server1).port) },
      ],
      { maxLag: 1_000, interval: 200, timeout: 300 },
    );
    expect(await write(db, 'k', 'v1')).toBe('redis-a');
    const seen: string[] = [];
    const t0 = Date.now();
    while (Date.now() - t0 < 12_000) {
      seen.push((await read(db, 'k').catch((e) => ({ on: code(e), value: null }))).on);
      await sleep(100);
    }
    const late = seen.slice(-40);
    expect({ late: count(late) }).toEqual({ late: { 'redis-b': late.length } });
  }, 20_000);

  it('[GUARD] the plain case: a master with two replicas, SHUTDOWN SAVE and restarted from its RDB, is writable again and its replicas take reads again', async () => {
    const [a, b, c] = await cluster(2, ['--save', '3600 1']);
    const db = makeSet(
      [
        { name: 'redis-a', target: target((a as Server1).port) },
        { name: 'redis-b', target: target((b as Server1).port) },
        { name: 'redis-c', target: target((c as Server1).port) },
      ],
      { maxLag: 1_000 },
    );
    expect(await write(db, 'k', 'v1')).toBe('redis-a');
    await admin((a as Server1).port)
      .shutdown('SAVE')
      .catch(() => {});
    await until(() => discovered(db, 'redis-a') === 'unreachable', 5_000, 'a down');
    await (a as Server1).start(['--save', '3600 1']);
    await until(() => db.snapshot().primary === 'redis-a', 5_000, 'a primary again');
    const outcomes: string[] = [];
    for (let i = 0; i < 5; i++) outcomes.push(await write(db, `after:${i}`, 'x').catch(code));
    await until(
      async () => (await linkUp(admin((b as Server1).port))) && (await linkUp(admin((c as Server1).port))),
      8_000,
      'resync',
    );
    await sleep(600);
    expect(await write(db, 'k', 'v2')).toBe('redis-a');
    await sleep(300);
    const r = count(await reads(db, 'k', 20));
    const fresh = makeSet([
      { name: 'redis-a', target: target((a as Server1).port) },
      { name: 'redis-b', target: target((b as Server1).port) },
      { name: 'redis-c', target: target((c as Server1).port) },
    ]);
    expect({
      outcomes: [...new Set(outcomes)],
      replicas: Object.keys(r).every((k) => k === 'redis-b=v2' || k === 'redis-c=v2'),
      fresh: await write(fresh, 'f', '1').catch(code),
    }).toEqual({ outcomes: ['redis-a'], replicas: true, fresh: 'redis-a' });
  }, 20_000);

  it('[DOCUMENTED] the old master restarted from its RDB after a failover, once a key with a TTL expires on it (a DEL in its backlog: no longer a pure copy): a set started then refuses writes (a split brain naming both), none lands on a; the set that watched keeps b', async () => {
    const [a, b] = await cluster(1);
    const aa = admin((a as Server1).port);
    const ab = admin((b as Server1).port);
    await aa.set('k', 'v1');
    await aa.set('session', '1', 'PX', 2_500); // any cache key with a TTL
    await until(async () => (await ab.get('k')) === 'v1');
    await aa.save();
    await (a as Server1).kill();
    await ab.replicaof('NO', 'ONE');
    await ab.set('k', 'v2');
    await (a as Server1).start(); // a master again, loading its dump.rdb (k = v1)
    const endpoints = () => [
      { name: 'redis-a', target: target((a as Server1).port) },
      { name: 'redis-b', target: target((b as Server1).port) },
    ];
    // While a's backlog is empty (a copy), a set started now writes to b, and keeps a fenced.
    const watched = makeSet(endpoints());
    const first = await write(watched, 'c', '1').catch(code);
    const a2 = admin((a as Server1).port);
    await until(async () => (await a2.dbsize()) === 1, 8_000, 'session expired on a'); // no client wrote to a
    const db = makeSet(endpoints());
    const keys: string[] = [];
    const outcomes: string[] = [];
    for (let i = 0; i < 5; i++) {
      keys.push(`after:${i}`);
      outcomes.push(await write(db, `after:${i}`, 'x').catch(code));
      await sleep(50);
    }
    const kept: string[] = [];
    for (let i = 0; i < 3; i++) {
      keys.push(`kept:${i}`);
      kept.push(await write(watched, `kept:${i}`, 'x').catch(code));
    }
    const info = (await a2.info('replication')).match(/master_repl_offset:\d+|second_repl_offset:\d+/g);
    expect({
      first,
      primary: db.snapshot().primary ?? null,
      outcomes: [...new Set(outcomes)],
      split: [...(db.snapshot().splitBrain?.endpoints ?? [])].sort(),
      onStale: await holds((a as Server1).port, keys),
      kept: [...new Set(kept)],
      written: info !== null && info[0] !== `master_repl_offset:${Number(info[1]?.split(':')[1]) - 1}`,
    }).toEqual({
      first: 'redis-b',
      primary: null,
      outcomes: ['E_NO_PRIMARY'],
      split: ['redis-a', 'redis-b'],
      onStale: 0,
      kept: ['redis-b'],
      written: true,
    });
  }, 20_000);

  it('[DOCUMENTED] a replica restarted as a master from its RDB (no replicaof), once a key with a TTL expires on it (no longer a pure copy), against the live master that took writes since: a set started then refuses writes (a split brain naming both), none lands on b; the set that watched keeps a', async () => {
    const [a, b] = await cluster(1);
    const aa = admin((a as Server1).port);
    const ab = admin((b as Server1).port);
    await aa.set('k', 'v1');
    await aa.set('session', '1', 'PX', 2_500);
    await until(async () => (await ab.get('k')) === 'v1');
    await ab.save();
    await aa.set('k', 'v2'); // on a only
    await (b as Server1).kill();
    await (b as Server1).start(); // without its replicaof: a master of its RDB (k = v1)
    const endpoints = () => [
      { name: 'redis-a', target: target((a as Server1).port) },
      { name: 'redis-b', target: target((b as Server1).port) },
    ];
    const watched = makeSet(endpoints());
    const first = await write(watched, 'c', '1').catch(code); // b a copy a is past: a
    const b2 = admin((b as Server1).port);
    await until(async () => (await b2.exists('session')) === 0, 8_000, 'session expired on b');
    const db = makeSet(endpoints());
    const keys: string[] = [];
    const outcomes: string[] = [];
    for (let i = 0; i < 5; i++) {
      keys.push(`after:${i}`);
      outcomes.push(await write(db, `after:${i}`, 'x').catch(code));
      await sleep(50);
    }
    const kept: string[] = [];
    for (let i = 0; i < 3; i++) {
      keys.push(`kept:${i}`);
      kept.push(await write(watched, `kept:${i}`, 'x').catch(code));
    }
    expect({
      first,
      primary: db.snapshot().primary ?? null,
      outcomes: [...new Set(outcomes)],
      split: [...(db.snapshot().splitBrain?.endpoints ?? [])].sort(),
      onStale: await holds((b as Server1).port, keys),
      kept: [...new Set(kept)],
    }).toEqual({
      first: 'redis-a',
      primary: null,
      outcomes: ['E_NO_PRIMARY'],
      split: ['redis-a', 'redis-b'],
      onStale: 0,
      kept: ['redis-a'],
    });
  }, 20_000);

  it('[BUG] two failovers in a row (a -> b -> c), Sentinel-like, writes all along: the set that watched keeps c (GUARD parts: 0 acked writes lost, a fenced), but a set started then ties c with a restarted from its RDB: every write refused', async () => {
    const [a, b, c] = await cluster(2, ['--save', '3600 1']);
    const aa = admin((a as Server1).port);
    const ab = admin((b as Server1).port);
    const ac = admin((c as Server1).port);
    const db = makeSet(
      [
        { name: 'redis-a', target: target((a as Server1).port) },
        { name: 'redis-b', target: target((b as Server1).port) },
        { name: 'redis-c', target: target((c as Server1).port) },
      ],
      { maxLag: 1_000 },
    );
    const acked: { key: string; on: string }[] = [];
    let n = 0;
    let running = true;
    const loop = (async () => {
      while (running) {
        const key = `w:${++n}`;
        await write(db, key, '1').then(
          (on) => void acked.push({ key, on }),
          () => {},
        );
        await sleep(20);
      }
    })();
    await sleep(400);
    await aa.save();
    await (a as Server1).kill();
    await until(async () => (await ab.info('replication')).includes('master_link_status:down'), 5_000, 'b sees a down');
    await ab.replicaof('NO', 'ONE');
    await ac.replicaof('127.0.0.1', String((b as Server1).port));
    await until(() => db.snapshot().primary === 'redis-b', 5_000, 'b primary');
    await sleep(600);
    // b fails in turn once c holds all it has.
    await until(async () => (await ac.dbsize()) >= (await ab.dbsize()), 5_000, 'c caught up');
    running = false;
    await loop;
    await until(async () => (await ac.dbsize()) === (await ab.dbsize()), 5_000, 'c caught up');
    await (b as Server1).kill();
    await ac.replicaof('NO', 'ONE');
    running = true;
    const loop2 = (async () => {
      while (running) {
        const key = `w:${++n}`;
        await write(db, key, '1').then(
          (on) => void acked.push({ key, on }),
          () => {},
        );
        await sleep(20);
      }
    })();
    await until(() => db.snapshot().primary === 'redis-c', 5_000, 'c primary');
    await (a as Server1).start(['--save', '3600 1']); // the first old master back from its RDB
    await until(() => discovered(db, 'redis-a') !== 'unreachable', 5_000, 'a back');
    await sleep(800);
    running = false;
    await loop2;
    const lostOn: Record<string, number> = {};
    for (const x of acked) if ((await ac.exists(x.key)) === 0) lostOn[x.on] = (lostOn[x.on] ?? 0) + 1;
    const r = count(await reads(db, 'w:1', 10));
    const fresh = makeSet([
      { name: 'redis-a', target: target((a as Server1).port) },
      { name: 'redis-c', target: target((c as Server1).port) },
    ]);
    const freshOutcome = await write(fresh, 'f', '1').catch(code);
    expect({
      primary: db.snapshot().primary,
      a: discovered(db, 'redis-a'),
      lostAfterB: (lostOn['redis-b'] ?? 0) + (lostOn['redis-c'] ?? 0),
      staleAcks: lostOn['redis-a'] ?? 0,
      readsOnStale: r['redis-a=1'] ?? 0,
      freshOutcome,
    }).toEqual({
      primary: 'redis-c',
      a: 'fenced',
      lostAfterB: 0,
      staleAcks: expect.any(Number),
      readsOnStale: 0,
      freshOutcome: 'redis-c',
    });
  }, 20_000);
});
