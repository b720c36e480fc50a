import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import { freePort } from './ports.js';

/** A redis-server process of a test's own, on a free loopback port. */
export interface RedisServer {
  readonly host: '127.0.0.1';
  readonly port: number;
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  /** Whether the process is running now. */
  readonly running: boolean;
  /** The process id of the running server (undefined once it exited). */
  readonly pid: number | undefined;
  /** Stops the server cleanly (SIGTERM) and waits for it to exit. */
  stop(): Promise<void>;
  /** Kills the server at once (SIGKILL), as a crash would. */
  kill(): Promise<void>;
  /** Starts it again on the same port, with an empty dataset. */
  restart(): Promise<void>;
  /** Stops answering without closing connections (SIGSTOP): a hung server. `resume()` undoes it. */
  pause(): void;
  resume(): void;
}

const binary = process.env.REDIS_SERVER ?? 'redis-server';
/** The valkey-server binary {@link startRedis} runs when asked for `server: 'valkey'`. */
const VALKEY = process.env.VALKEY_SERVER ?? 'valkey-server';
const live = new Set<ChildProcess>();
/** Config files and data dirs the harness made: kept while a server may restart from them. */
const made = new Set<string>();

let availability: boolean | undefined;

/**
 * Whether a redis-server binary can be run here. Without one, tests that need Redis skip with a
 * loud message, except under CI=true, where the missing binary fails the run.
 */
export function redisAvailable(): boolean {
  if (availability === undefined) {
    const probe = spawnSync(binary, ['--version'], { encoding: 'utf8' });
    availability = probe.status === 0;
    if (!availability) {
      const message = `redis-server not found (tried "${binary}"; set REDIS_SERVER to its path, or install it: apt-get install redis-server)`;
      if (process.env.CI === 'true') throw new Error(`${message}. CI=true: tests that need Redis must run.`);
      console.warn(`\n*** SKIPPING REDIS TESTS: ${message} ***\n`);
    }
  }
  return availability;
}

let valkey: boolean | undefined;
/** Why valkey-server cannot be run here, once {@link valkeyAvailable} has looked. */
let valkeyMissing: string | undefined;

/**
 * Whether tests that need valkey-server (Valkey 8: since Redis 7.2, WAIT waits for the
 * connection's own last write only, where Redis 7.0, the one Debian 12 ships, waits for the
 * master's whole offset) run here. Without the binary they skip with a loud message, except under
 * CI=true, where they must run: they do, and fail in {@link startRedis}, naming what is missing
 * (.ci/run installs it from Debian's bookworm-backports). It does not throw: it is called while a
 * file is collected, and a throw there would fail every other test of the file too.
 */
export function valkeyAvailable(): boolean {
  if (valkey === undefined) {
    valkey = spawnSync(VALKEY, ['--version'], { encoding: 'utf8' }).status === 0;
    if (!valkey) {
      valkeyMissing = `valkey-server not found (tried "${VALKEY}"; set VALKEY_SERVER to its path, or install it: apt-get install -t bookworm-backports valkey-server)`;
      if (process.env.CI === 'true') console.error(`\n*** VALKEY TESTS WILL FAIL (CI=true): ${valkeyMissing} ***\n`);
      else console.warn(`\n*** SKIPPING VALKEY TESTS: ${valkeyMissing} ***\n`);
    }
  }
  return valkey || process.env.CI === 'true';
}

/**
 * Starts `count` redis-server processes (valkey-server with `server: 'valkey'`), each on its own
 * free loopback port.
 */
export async function startRedis(
  count = 1,
  args: readonly string[] = [],
  { server = 'redis' }: { server?: 'redis' | 'valkey' } = {},
): Promise<RedisServer[]> {
  if (server === 'valkey') {
    valkeyAvailable();
    if (valkeyMissing !== undefined) throw new Error(`${valkeyMissing}. CI=true: tests that need Valkey must run.`);
  }
  const program = server === 'valkey' ? VALKEY : binary;
  return Promise.all(Array.from({ length: count }, () => startOne(args, undefined, program)));
}

/** Stops every server the harness started that is still running, and removes their files. */
export async function stopAllRedis(): Promise<void> {
  await Promise.all([...live].map((child) => terminate(child, 'SIGKILL')));
  removeMade();
}

function removeMade(): void {
  for (const path of made) rmSync(path, { recursive: true, force: true });
  made.clear();
}

async function startOne(
  args: readonly string[],
  sentinelConfig?: (port: number) => string,
  program = binary,
): Promise<RedisServer> {
  let lastError: unknown;
  for (let tries = 0; tries < 5; tries++) {
    const port = await freePort();
    try {
      // One config file for the life of the server, restarts included (see configFile).
      const sentinel = sentinelConfig?.(port);
      const file = configFile(port, sentinel === undefined ? serverConfig(port, args) : sentinelFile(port, sentinel));
      const dir = sentinel === undefined ? dataDir() : '';
      const start = () => (sentinel === undefined ? launch(port, file, dir, program) : launchSentinel(port, file));
      let child = await start();
      const server: RedisServer = {
        host: '127.0.0.1',
        port,
        url: `redis://127.0.0.1:${port}`,
        get running() {
          return child.exitCode === null && child.signalCode === null;
        },
        get pid() {
          return child.exitCode === null && child.signalCode === null ? child.pid : undefined;
        },
        stop: () => terminate(child, 'SIGTERM'),
        kill: () => terminate(child, 'SIGKILL'),
        async restart() {
          await terminate(child, 'SIGKILL');
          child = await start();
        },
        pause: () => void child.kill('SIGSTOP'),
        resume: () => void child.kill('SIGCONT'),
      };
      return server;
    } catch (error) {
      lastError = error; // most likely another process took the port between probe and bind
    }
  }
  throw new Error(`could not start redis-server after 5 tries: ${String(lastError)}`);
}

/**
 * Writes the config file a server (or a Sentinel) starts from, and starts again from: Sentinel
 * rewrites it (`CONFIG REWRITE`) each time it makes a server a master or a replica, and rewrites
 * its own with what it learned (the master, the epoch), so a restarted process comes back as what
 * it was last made, as a deployment's does. Started from its first command line instead, a
 * restarted server replicated from the first master whatever the Sentinels had made of it since:
 * the master they had promoted since came back a replica of its own replica, a replication loop
 * no Sentinel mends (every server a replica, links down: failover-redis-sentinel.test.ts in 2 of
 * 3 CI runs). Each its own file, in the test's temp dir.
 */
function configFile(port: number, text: string): string {
  const file = join(tmpdir(), `holdfast-redis-${port}-${randomUUID()}.conf`);
  writeFileSync(file, text);
  made.add(file);
  return file;
}

/** A server's config: the harness's settings, then `args` (`--name value...`), one line each. */
function serverConfig(port: number, args: readonly string[]): string {
  const argv = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
  const lines: string[][] = [];
  for (const arg of [...argv, '--protected-mode', 'no', ...args]) {
    if (arg.startsWith('--')) lines.push([arg.slice(2)]);
    else lines.at(-1)?.push(/^[\w.:/@,-]+$/.test(arg) ? arg : JSON.stringify(arg));
  }
  return `${lines.map((l) => l.join(' ')).join('\n')}\n`;
}

/** A server's data dir, for its life: its config file names it once Sentinel rewrote it. */
function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'holdfast-redis-'));
  made.add(dir);
  return dir;
}

function launch(port: number, file: string, dir: string, program: string): Promise<ChildProcess> {
  // Emptied at each start: a replica writes the RDB of its full sync there, and a server loads
  // any dump.rdb it finds in its directory at start (it must start empty). Given on the command
  // line, it overrides the `dir` a rewrite left in the file (the same dir, kept for that line).
  for (const entry of readdirSync(dir)) rmSync(join(dir, entry), { recursive: true, force: true });
  return watch(port, spawn(program, [file, '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] }));
}

/** A Sentinel reads, and rewrites, its own config file. */
function launchSentinel(port: number, file: string): Promise<ChildProcess> {
  return watch(port, spawn(binary, [file, '--sentinel'], { stdio: ['ignore', 'pipe', 'pipe'] }));
}

/** A Sentinel's config: its port, then what it monitors. */
function sentinelFile(port: number, config: string): string {
  return `port ${port}\nbind 127.0.0.1\nprotected-mode no\n${config}`;
}

async function watch(port: number, child: ChildProcess): Promise<ChildProcess> {
  live.add(child);
  child.once('exit', () => live.delete(child));
  let output = '';
  child.stdout?.on('data', (chunk) => {
    output += chunk;
  });
  child.stderr?.on('data', (chunk) => {
    output += chunk;
  });
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`redis-server on port ${port} exited: ${output.trim()}`);
    // Another process (another test run's server) may answer on a port we lost the race for.
    if ((await answersPing(port)) && (await ownsPort(port, child.pid))) {
      child.stdout?.removeAllListeners('data');
      child.stderr?.removeAllListeners('data');
      child.stdout?.resume();
      child.stderr?.resume();
      return child;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  await terminate(child, 'SIGKILL');
  throw new Error(`redis-server on port ${port} did not answer PING within 10 s: ${output.trim()}`);
}

async function terminate(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  if (signal !== 'SIGKILL') child.kill('SIGCONT'); // a paused server cannot handle SIGTERM
  child.kill(signal);
  await exited;
}

async function ownsPort(port: number, pid: number | undefined): Promise<boolean> {
  const info = await redisCommand(port, ['INFO', 'server']).catch(() => '');
  return info.includes(`process_id:${pid}\r\n`);
}

function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.connect(port, '127.0.0.1', () => socket.write('PING\r\n'));
    socket.once('data', (data) => done(data.toString().startsWith('+PONG')));
  });
}

/** A master, its replica (or replicas) and three Sentinels watching them, each a process of its own. */
export interface SentinelSetup {
  /** The name the Sentinels know the master by. */
  readonly name: string;
  readonly master: RedisServer;
  /** The first replica. */
  readonly replica: RedisServer;
  /** Every replica, the first one included. */
  readonly replicas: readonly RedisServer[];
  readonly sentinels: readonly RedisServer[];
  /** `{ host, port }` of each Sentinel, as ioredis' `sentinels` option takes them. */
  readonly addresses: { host: string; port: number }[];
  /** Asks a Sentinel which port is the master now. */
  masterPort(): Promise<number>;
  /** Stops every process of the setup. */
  stop(): Promise<void>;
}

/**
 * Starts a master, `replicas` replicas (1) and three Sentinels (quorum 2) on free loopback ports,
 * and waits until the Sentinels know the replicas and each other, so a failover can happen.
 * `downAfterMs`: how long the master may be silent before it is judged down. `syncDelayMs` (0,
 * whole seconds): how long a master waits before a replica's full sync (Redis' default is 5 s).
 */
export async function startSentinel(
  options: { downAfterMs?: number; name?: string; replicas?: number; syncDelayMs?: number } = {},
): Promise<SentinelSetup> {
  const name = options.name ?? 'holdfast';
  const downAfter = options.downAfterMs ?? 1_000;
  const count = options.replicas ?? 1;
  // Every server (each may become the master) starts a replica's full sync after `syncDelayMs`
  // (0: at once). Redis' own default, diskless, waits 5 s for more replicas to share the transfer.
  const syncDelay = ['--repl-diskless-sync-delay', String(Math.ceil((options.syncDelayMs ?? 0) / 1_000))];
  const [master] = (await startRedis(1, syncDelay)) as [RedisServer];
  const replicas = await startRedis(count, [...syncDelay, '--replicaof', '127.0.0.1', String(master.port)]);
  const replica = replicas[0] as RedisServer;
  const config = [
    `sentinel monitor ${name} 127.0.0.1 ${master.port} 2`,
    `sentinel down-after-milliseconds ${name} ${downAfter}`,
    `sentinel failover-timeout ${name} ${Math.max(3 * downAfter, 3_000)}`,
    `sentinel parallel-syncs ${name} 1`,
    '',
  ].join('\n');
  const sentinels = await Promise.all([0, 1, 2].map(() => startOne([], () => config)));
  const ask = (port: number, ...command: string[]) => redisCommand(port, command);
  for (const r of replicas) {
    await until(async () => (await ask(r.port, 'INFO', 'replication')).includes('master_link_status:up'));
  }
  const known = new RegExp(`num-slaves\\r\\n\\$\\d+\\r\\n${count}\\r\\n`);
  await until(async () => {
    for (const s of sentinels) {
      const state = await ask(s.port, 'SENTINEL', 'MASTER', name);
      if (!known.test(state) || !/num-other-sentinels\r\n\$1\r\n2\r\n/.test(state)) return false;
    }
    return true;
  });
  return {
    name,
    master,
    replica,
    replicas,
    sentinels,
    addresses: sentinels.map((s) => ({ host: s.host, port: s.port })),
    async masterPort() {
      for (const s of sentinels.filter((x) => x.running)) {
        const reply = await ask(s.port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name).catch(() => '');
        const port = /\r\n(\d+)\r\n$/.exec(reply)?.[1];
        if (port !== undefined) return Number(port);
      }
      throw new Error('no Sentinel answered');
    },
    async stop() {
      await Promise.all([master, ...replicas, ...sentinels].map((server) => server.kill()));
    },
  };
}

/**
 * An ioredis client of a Sentinel setup that retries every 50 ms, and is connected again when
 * ioredis ends it (with `failoverDetector`, a failover can: ioredis#1683; the workaround
 * docs/idempotency.md gives). `close()` disconnects it for good.
 */
export function sentinelClient(setup: SentinelSetup, options: RedisOptions = {}): { client: Redis; close(): void } {
  const client = new Redis({
    sentinels: setup.addresses,
    name: setup.name,
    sentinelRetryStrategy: () => 50,
    retryStrategy: () => 50,
    maxRetriesPerRequest: 1,
    ...options,
  });
  client.on('error', () => {});
  let closing = false;
  client.on('end', () => {
    if (!closing) client.connect().catch(() => {});
  });
  return {
    client,
    close() {
      closing = true;
      client.disconnect();
    },
  };
}

/** Three masters with a replica each, the 16384 slots spread over the masters. */
export interface ClusterSetup {
  readonly nodes: readonly RedisServer[];
  /** `{ host, port }` of each node, as `new Cluster(...)` takes them. */
  readonly addresses: { host: string; port: number }[];
  /** The node serving `slot` as master now. */
  masterOf(slot: number): Promise<RedisServer>;
  stop(): Promise<void>;
}

/**
 * Starts a Redis Cluster of 3 masters and 3 replicas (`redis-cli --cluster create`) and waits
 * for `cluster_state:ok` on every node. `nodeTimeoutMs`: how long a silent master has before its
 * replica takes over.
 */
export async function startCluster(options: { nodeTimeoutMs?: number } = {}): Promise<ClusterSetup> {
  const timeout = String(options.nodeTimeoutMs ?? 1_000);
  const nodes = await Promise.all(
    Array.from({ length: 6 }, () =>
      startOne([
        '--cluster-enabled',
        'yes',
        '--cluster-node-timeout',
        timeout,
        '--cluster-announce-ip',
        '127.0.0.1',
        // A replica's full sync starts at once, not after the 5 s a diskless master waits for more.
        '--repl-diskless-sync-delay',
        '0',
        '--cluster-config-file',
        clusterFile(),
      ]),
    ),
  );
  const create = spawnSync(
    process.env.REDIS_CLI ?? 'redis-cli',
    ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '1', '--cluster-yes'],
    { encoding: 'utf8', timeout: 30_000 },
  );
  if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`);
  await until(async () => {
    for (const node of nodes) {
      if (!(await redisCommand(node.port, ['CLUSTER', 'INFO'])).includes('cluster_state:ok')) return false;
    }
    return true;
  });
  return {
    nodes,
    addresses: nodes.map((n) => ({ host: n.host, port: n.port })),
    async masterOf(slot: number) {
      for (const node of nodes.filter((n) => n.running)) {
        // CLUSTER NODES lists "<id> <ip:port@bus> <flags> ... <slot ranges>", one node a line.
        const reply = await redisCommand(node.port, ['CLUSTER', 'NODES']).catch(() => '');
        const lines = reply.split('\n');
        for (const line of lines) {
          const parts = line.trim().split(' ');
          if (!parts[2]?.includes('master') || parts[2].includes('fail')) continue;
          const port = Number(/:(\d+)@/.exec(parts[1] ?? '')?.[1]);
          for (const range of parts.slice(8)) {
            const [from, to = from] = range.split('-').map(Number) as [number, number?];
            if (slot >= from && slot <= (to as number)) {
              const found = nodes.find((n) => n.port === port);
              if (found) return found;
            }
          }
        }
      }
      throw new Error(`no master found for slot ${slot}`);
    },
    async stop() {
      await Promise.all(nodes.map((node) => node.kill()));
    },
  };
}

/** Sends one command in RESP and returns the raw reply text (enough for INFO and SENTINEL). */
export function redisCommand(port: number, command: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = new Socket();
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no reply from port ${port}`));
    }, 2_000);
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.connect(port, '127.0.0.1', () => {
      socket.write(`*${command.length}\r\n${command.map((c) => `$${Buffer.byteLength(c)}\r\n${c}\r\n`).join('')}`);
    });
    let received = Buffer.alloc(0);
    socket.on('data', (data: Buffer) => {
      received = Buffer.concat([received, data]);
      // Complete once one whole RESP reply is in: a big one (INFO, CLUSTER NODES) can come in
      // chunks far apart on a loaded machine (a 20 ms pause after the first cut one short).
      let end: number;
      try {
        end = replyEnd(received, 0);
      } catch (error) {
        end = 0;
        reject(error);
      }
      if (end === -1) return;
      clearTimeout(timer);
      socket.destroy();
      resolve(received.toString());
    });
  });
}

/** Where the RESP reply starting at `at` ends (the offset after it), or -1 while it is incomplete. */
function replyEnd(buffer: Buffer, at: number): number {
  const line = buffer.indexOf('\r\n', at);
  if (line === -1) return -1;
  const type = String.fromCharCode(buffer[at] as number);
  const head = buffer.toString('utf8', at + 1, line);
  if (type === '+' || type === '-' || type === ':') return line + 2;
  if (type === '$') {
    const length = Number(head);
    if (length < 0) return line + 2;
    const end = line + 2 + length + 2;
    return buffer.length >= end ? end : -1;
  }
  if (type === '*') {
    let next = line + 2;
    for (let i = 0; i < Number(head); i++) {
      next = replyEnd(buffer, next);
      if (next === -1) return -1;
    }
    return next;
  }
  throw new Error(`redisCommand: not a RESP reply: ${JSON.stringify(buffer.toString('utf8', at, at + 40))}`);
}

async function until(check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error('redis harness: the setup did not become ready in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A cluster node's own config file (nodes.conf), which the node writes. */
function clusterFile(): string {
  const file = join(tmpdir(), `holdfast-cluster-${randomUUID()}.conf`);
  made.add(file);
  return file;
}

// A test run that dies must not leave servers behind, nor their files.
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
  removeMade();
});
