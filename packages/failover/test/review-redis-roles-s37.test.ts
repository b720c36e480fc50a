/**
 * Outside review (s37): `failover()` with `redisRoles()` over REAL redis-server processes started
 * here (loopback only, free ports, every process killed by its pid after each test). Each test
 * marked [BUG] fails on the code reviewed; [GUARD] ones pass and pin behaviour that held.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createBus } from '@holdfast/core';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../../../test/support/ports.js';
import { type Failover, failover } from '../src/index.js';
import { redisRoles } from '../src/ioredis.js';

const procs = new Set<ChildProcess>();
const dirs = new Set<string>();
const clients = new Set<Redis>();
const sets = new Set<Failover<Redis>>();
const proxies = new Set<Server>();
const sockets = new Set<Socket>();

afterEach(async () => {
  for (const s of sets) s.dispose();
  sets.clear();
  for (const c of clients) c.disconnect();
  clients.clear();
  for (const s of sockets) s.destroy();
  sockets.clear();
  for (const p of proxies) p.close();
  proxies.clear();
  await Promise.all(
    [...procs].map(async (child) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
      await exited;
    }),
  );
  procs.clear();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs.clear();
});

/** A redis-server of this test's own: a fixed port and data dir, so it can be restarted with its RDB or empty. */
class Server1 {
  child: ChildProcess | undefined;
  constructor(
    readonly port: number,
    readonly dir: string,
  ) {}
  static async make(): Promise<Server1> {
    const dir = mkdtempSync(join(tmpdir(), 'rv-s37-'));
    dirs.add(dir);
    return new Server1(await freePort(), dir);
  }
  /** Starts it (loading any dump.rdb in its dir) with `args` after the harness's own. */
  async start(args: string[] = []): Promise<void> {
    const argv = [
      '--port',
      String(this.port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--protected-mode',
      'no',
      '--repl-diskless-sync',
      'yes',
      '--repl-diskless-sync-delay',
      '0',
      '--dir',
      this.dir,
      ...args,
    ];
    const child = spawn('redis-server', argv, { stdio: 'ignore' });
    procs.add(child);
    this.child = child;
    const deadline = Date.now() + 8_000;
    while (!(await ping(this.port))) {
      if (child.exitCode !== null) throw new Error(`redis-server ${this.port} exited`);
      if (Date.now() > deadline) throw new Error(`redis-server ${this.port} did not start`);
      await sleep(20);
    }
  }
  async kill(): Promise<void> {
    const child = this.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    process.kill(child.pid as number, 'SIGKILL');
    await exited;
  }
  signal(sig: NodeJS.Signals): void {
    process.kill(this.child?.pid as number, sig);
  }
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.connect(port, '127.0.0.1', () => socket.write('PING\r\n'));
    socket.once('data', (d) => done(d.toString().startsWith('+PONG')));
  });
}

/** An admin client of the test's own (not a target). */
function admin(port: number): Redis {
  const c = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1, lazyConnect: false });
  c.on('error', () => {});
  clients.add(c);
  return c;
}

/** A target client with ioredis' defaults (offline queue on, 20 retries per request), reconnecting every 50 ms. */
function queueing(port: number, extra: Record<string, unknown> = {}): Redis {
  const c = new Redis({ host: '127.0.0.1', port, retryStrategy: () => 50, ...extra });
  c.on('error', () => {});
  clients.add(c);
  return c;
}

/** A target client as the README wants it: no offline queue, no retries per request. */
function target(port: number): Redis {
  const c = new Redis({
    host: '127.0.0.1',
    port,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => 50,
  });
  c.on('error', () => {});
  clients.add(c);
  return c;
}

async function until(what: () => boolean | Promise<boolean>, ms = 8_000, label = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await what())) {
    if (Date.now() > deadline) throw new Error(`${label} not met in ${ms} ms`);
    await sleep(25);
  }
}

const linkUp = async (c: Redis) => (await c.info('replication')).includes('master_link_status:up');

/**
 * The replica streams from its master: link up is not enough (after a diskless sync a Redis 7
 * master starts the stream at the replica's first REPLCONF ACK, up to 1 s later).
 */
async function synced(masterPort: number, replica: Redis): Promise<void> {
  const m = admin(masterPort);
  const mark = `sync:${Math.random()}`;
  await until(() => linkUp(replica), 8_000, 'link up');
  await m.set(mark, '1');
  await until(async () => (await replica.exists(mark)) === 1, 8_000, 'replica streaming');
  await m.del(mark);
}

function makeSet(
  endpoints: { name: string; target: Redis }[],
  roles: Parameters<typeof redisRoles>[0] = {},
  timeout: number | null = 500,
) {
  const bus = createBus();
  const db = failover({
    name: 's37',
    endpoints,
    roles: redisRoles<Redis>({ interval: 150, timeout: 300, ...roles }),
    ...(timeout === null ? {} : { timeout }),
    retry: { idempotent: true },
    bus,
    policies: false,
  });
  sets.add(db);
  return db;
}

const write = (db: Failover<Redis>, key: string, value: string) =>
  db.execute(async (e) => {
    await e.target.set(key, value);
    return e.name;
  });

const read = (db: Failover<Redis>, key: string) =>
  db.execute(async (e) => ({ on: e.name, value: await e.target.get(key) }), { intent: 'read' });

const discovered = (db: Failover<Redis>, name: string) =>
  db.snapshot().endpoints.find((e) => e.name === name)?.discovered;

/** A TCP relay that can be frozen: no bytes pass either way, no FIN, no RST (a silent partition). */
async function relay(to: number): Promise<{ port: number; freeze(): void }> {
  let frozen = false;
  const pairs: [Socket, Socket][] = [];
  const server = createServer((down) => {
    const up = new Socket();
    sockets.add(down);
    sockets.add(up);
    up.connect(to, '127.0.0.1');
    pairs.push([down, up]);
    const pipe = (from: Socket, into: Socket) =>
      from.on('data', (d) => {
        if (!frozen) into.write(d);
      });
    pipe(down, up);
    pipe(up, down);
    const end = () => {
      down.destroy();
      up.destroy();
    };
    down.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  proxies.add(server);
  const port = await freePort();
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  return {
    port,
    freeze() {
      frozen = true;
      // Stop reading too: the kernel buffers fill, nothing is closed.
      for (const [a, b] of pairs) {
        a.pause();
        b.pause();
      }
    },
  };
}

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
