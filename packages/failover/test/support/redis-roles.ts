/**
 * Real redis-server processes for the redisRoles() reviews (review-redis-roles-s37, -s37b):
 * loopback only, free ports, every process killed by its pid after each test; servers with a
 * data dir of their own, so that one can be restarted with its RDB or empty; admin and target
 * clients; a failover set over them; a TCP relay that can be frozen (a silent partition).
 * Call it at the top of a test file: it registers the afterEach that ends what it started.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createBus } from '@holdfast/core';
import { Redis } from 'ioredis';
import { afterEach } from 'vitest';
import { freePort } from '../../../../test/support/ports.js';
import { type Failover, failover } from '../../src/index.js';
import { redisRoles } from '../../src/ioredis.js';

export function redisRolesHarness(label: string) {
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
      const dir = mkdtempSync(join(tmpdir(), `rv-${label}-`));
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
      name: label,
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

  return { Server1, admin, queueing, target, until, linkUp, synced, makeSet, write, read, discovered, relay, ping };
}
