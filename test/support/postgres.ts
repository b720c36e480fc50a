import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import {
  appendFileSync,
  chmodSync,
  chownSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statfsSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';

/**
 * A PostgreSQL streaming-replication pair built from the machine's binaries (`pg_config --bindir`):
 * initdb (once, a template each pair copies), pg_basebackup -R, postgres. The binaries refuse to run as root, so under root the
 * harness runs them as an unprivileged user of its own (`holdfast-pg`), created on first use.
 * Data and unix sockets live under a temp dir; TCP only on 127.0.0.1, on free ports. Every process
 * is stopped by PID at the end.
 */

/** One postgres server of the pair. */
export interface PgNode {
  readonly name: string;
  readonly host: '127.0.0.1';
  readonly port: number;
  /** Options for `new pg.Pool(...)` / `new pg.Client(...)`: superuser `postgres`, database `postgres`. */
  readonly connection: { host: string; port: number; user: string; database: string };
  /** Whether its postmaster is running now. */
  readonly running: boolean;
  /** SIGKILL to the postmaster and every backend: a crash of the machine. */
  kill(): Promise<void>;
  /** SIGSTOP to the postmaster and every backend: a hung server. `resume()` undoes it. */
  freeze(): void;
  resume(): void;
  /** `pg_ctl promote`, then waits until it takes writes. */
  promote(): Promise<void>;
  /** Starts it again on its old data directory, as it was (a crashed primary comes back stale). */
  start(): Promise<void>;
  /** A clean shutdown (SIGINT to the postmaster: pg_ctl's fast mode); waits until it exited. */
  stop(): Promise<void>;
  /**
   * What a DBA runs to rejoin a deposed primary (a pair started `rewindable`): stops it cleanly if
   * running, `pg_rewind --target-pgdata=<its data> --source-server=<from> -R` (standby.signal and
   * primary_conninfo to `from`, or to `via`: a link to it), then starts it as a streaming replica
   * of `from`. `rewinding`, if given, gets each line pg_rewind tells, and its PID (to kill it half
   * way: then this rejects and the server is left stopped).
   */
  rewindFrom(
    from: PgNode,
    options?: { via?: { host: string; port: number }; rewinding?: (line: string, pid: number) => void },
  ): Promise<void>;
  /** Stops it if running, wipes its data and clones `from` with pg_basebackup -R: a replica of `from`. */
  rebuildAsReplicaOf(from: PgNode): Promise<void>;
  /**
   * Stops it if running and starts it again without its standby.signal: a primary on the timeline
   * and at the WAL it had, as a base backup restored without archive recovery is (same system
   * identifier, same timeline).
   */
  restoreAsPrimary(): Promise<void>;
  /** Runs SQL with psql over the unix socket; returns stdout (tuples only, unaligned). */
  sql(query: string): string;
}

export interface PgPair {
  readonly primary: PgNode;
  readonly replica: PgNode;
  /** Starts one more server, a streaming replica of `of` (a cluster of three and more). */
  addReplica(name: string, of: PgNode): Promise<PgNode>;
  /** Starts one more server fresh from initdb: a primary of its own, empty (a server restarted empty). */
  addEmpty(name: string): Promise<PgNode>;
  /** Stops every server (SIGKILL by PID) and removes the temp dir. */
  stop(): Promise<void>;
}

const osUser = 'holdfast-pg';
const live = new Set<ChildProcess>();
/** Temp dirs of the pairs of this process, removed at exit if a test did not stop its pair. */
const roots = new Set<string>();
let baseDir: string | undefined;

/**
 * Where data directories go: /dev/shm when it is a tmpfs with room (1 GiB free), else the temp
 * dir. Servers run with fsync off and are thrown away: on a loaded disk, copying a 20 MB data
 * directory took over a second, in memory a tenth of that.
 */
function base(): string {
  if (baseDir === undefined) {
    baseDir = tmpdir();
    try {
      const fs = statfsSync('/dev/shm');
      if (fs.bavail * fs.bsize >= 2 ** 30) baseDir = '/dev/shm';
    } catch {
      // no /dev/shm here
    }
  }
  return baseDir;
}
let availability: boolean | undefined;
let bindir: string | undefined;

/**
 * Whether PostgreSQL binaries can be run here. Without them, tests that need a pair skip with a
 * loud message, except under CI=true, where the missing binaries fail the run.
 */
export function postgresAvailable(): boolean {
  if (availability === undefined) {
    const probe = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' });
    bindir = probe.status === 0 ? probe.stdout.trim() : undefined;
    availability = bindir !== undefined && existsSync(join(bindir, 'initdb'));
    if (!availability) {
      const message = 'PostgreSQL binaries not found (pg_config --bindir; apt-get install postgresql)';
      if (process.env.CI === 'true') throw new Error(`${message}. CI=true: tests that need PostgreSQL must run.`);
      console.warn(`\n*** SKIPPING POSTGRES TESTS: ${message} ***\n`);
    }
  }
  return availability;
}

interface Identity {
  uid: number;
  gid: number;
}

/** Under root: the unprivileged user the binaries run as, created if missing (a concurrent creation is fine). */
function identity(): Identity | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const lookup = () => spawnSync('id', ['-u', osUser], { encoding: 'utf8' });
  let found = lookup();
  if (found.status !== 0) {
    // Exit code 9: the user exists (another test process created it first).
    const made = spawnSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', osUser], {
      encoding: 'utf8',
    });
    if (made.status !== 0 && made.status !== 9) throw new Error(`useradd ${osUser} failed: ${made.stderr}`);
    found = lookup();
  }
  const gid = spawnSync('id', ['-g', osUser], { encoding: 'utf8' });
  return { uid: Number(found.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

function run(who: Identity | undefined, binary: string, args: string[], env: NodeJS.ProcessEnv = {}): string {
  return execFileSync(join(bindir as string, binary), args, {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
    ...(who ?? {}),
  });
}

/** PIDs of a process and every descendant, from /proc. */
function tree(pid: number): number[] {
  const out = [pid];
  try {
    for (const task of readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/)) {
      if (task !== '') out.push(...tree(Number(task)));
    }
  } catch {
    // gone already
  }
  return out;
}

function signalTree(pid: number, signal: NodeJS.Signals): void {
  for (const p of tree(pid)) {
    try {
      process.kill(p, signal);
    } catch {
      // exited meanwhile
    }
  }
}

/** How the servers of a pair run. */
export interface PgPairOptions {
  /**
   * Servers pg_rewind can rejoin (`full_page_writes` and `wal_log_hints` on, as pg_rewind needs of
   * its source and target): more WAL written, so only for the tests that rewind.
   */
  readonly rewindable?: boolean;
}

/** Builds a primary and a streaming replica of it, both running. */
export async function startPgPair(options: PgPairOptions = {}): Promise<PgPair> {
  if (!postgresAvailable()) throw new Error('PostgreSQL binaries not available');
  const who = identity();
  const root = mkdtempSync(join(base(), 'holdfast-pg-'));
  roots.add(root);
  chmodSync(root, 0o755);
  if (who) chownSync(root, who.uid, who.gid);
  const primary = await makeNode('pg-a', root, who, options);
  const replica = await makeNode('pg-b', root, who, options);
  // Copies of a cluster initdb made once (for every test file of the run): initdb takes seconds.
  // The replica is a copy too, not a base backup of the primary: both start from the template's
  // shutdown checkpoint, and the replica streams the primary's WAL from there.
  execFileSync('cp', ['-a', template(who), primary.dir]);
  execFileSync('cp', ['-a', template(who), replica.dir]);
  await primary.start();
  await replica.startAsReplicaOf(primary);
  const nodes = [primary, replica];
  return {
    primary,
    replica,
    async addReplica(name, of) {
      const node = await makeNode(name, root, who, options);
      nodes.push(node);
      await node.rebuildAsReplicaOf(of);
      return node;
    },
    async addEmpty(name) {
      const node = await makeNode(name, root, who, options);
      nodes.push(node);
      execFileSync('cp', ['-a', template(who), node.dir]);
      await node.start();
      return node;
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.halt()));
      rmSync(root, { recursive: true, force: true });
      roots.delete(root);
    },
  };
}

/**
 * A data directory fresh from initdb, never started, shared by every pair the machine's test
 * files start: each copies it (`cp -a`, owner and modes kept). Built once per binaries and user,
 * in a directory of its own renamed into place when complete, so concurrent test files either
 * find a whole one or build their own (the loser of the rename removes its copy).
 */
function template(who: Identity | undefined): string {
  // `w1`: WAL segments of 1 MB, not 16: less to copy for each server.
  const key = `${bindir}-${who?.uid ?? process.getuid?.()}-w1`.replace(/[^A-Za-z0-9]+/g, '-');
  const dir = join(base(), `holdfast-pg-template-${key}`);
  const whole = () => existsSync(join(dir, 'PG_VERSION')) && existsSync(join(dir, 'global', 'pg_control'));
  if (whole()) return dir;
  // One a temp cleaner emptied in part: built again.
  if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
  const building = mkdtempSync(join(base(), 'holdfast-pg-template-building-'));
  chmodSync(building, 0o755);
  if (who) chownSync(building, who.uid, who.gid);
  const data = join(building, 'data');
  run(who, 'initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8', '--wal-segsize=1'], {
    LC_ALL: 'C',
  });
  try {
    renameSync(data, dir);
  } catch (error) {
    // Another test file renamed its own first: use that one.
    if (!whole()) throw error;
  }
  rmSync(building, { recursive: true, force: true });
  return dir;
}

interface NodeImpl extends PgNode {
  readonly dir: string;
  halt(): Promise<void>;
  /** Starts a copy of the template as a streaming replica of `from`, itself a copy of it. */
  startAsReplicaOf(from: PgNode): Promise<void>;
}

async function makeNode(
  name: string,
  root: string,
  who: Identity | undefined,
  options: PgPairOptions,
): Promise<NodeImpl> {
  const port = await freePort();
  const dir = join(root, name);
  const socketDir = root;
  let child: ChildProcess | undefined;
  const running = () => child !== undefined && child.exitCode === null && child.signalCode === null;

  const psql = (query: string, db = 'postgres') =>
    execFileSync(
      join(bindir as string, 'psql'),
      ['-h', socketDir, '-p', String(port), '-U', 'postgres', '-d', db, '-XAtqc', query],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        ...(who ?? {}),
      },
    ).trim();

  const ready = async (deadlineMs: number, what: () => boolean) => {
    const deadline = Date.now() + deadlineMs;
    let last: unknown;
    while (Date.now() < deadline) {
      if (!running()) throw new Error(`${name}: postgres exited (${child?.exitCode ?? child?.signalCode}): ${output}`);
      try {
        if (what()) return;
      } catch (error) {
        last = error;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`${name}: not ready within ${deadlineMs} ms: ${String(last)} ${output}`);
  };

  let output = '';
  const halt = async () => {
    if (child === undefined || !running()) return;
    const exited = once(child, 'exit');
    signalTree(child.pid as number, 'SIGCONT');
    signalTree(child.pid as number, 'SIGKILL');
    await exited;
    // Backends die with their postmaster; wait until none holds the port or the data dir.
    await new Promise((r) => setTimeout(r, 100));
  };

  const node: NodeImpl = {
    name,
    host: '127.0.0.1',
    port,
    dir,
    connection: { host: '127.0.0.1', port, user: 'postgres', database: 'postgres' },
    get running() {
      return running();
    },
    halt,
    kill: halt,
    freeze() {
      if (child?.pid !== undefined) signalTree(child.pid, 'SIGSTOP');
    },
    resume() {
      if (child?.pid !== undefined) signalTree(child.pid, 'SIGCONT');
    },
    async start() {
      if (running()) return;
      output = '';
      child = spawn(
        join(bindir as string, 'postgres'),
        [
          '-D',
          dir,
          '-p',
          String(port),
          '-c',
          'listen_addresses=127.0.0.1',
          '-c',
          `unix_socket_directories=${socketDir}`,
          '-c',
          'fsync=off',
          '-c',
          'synchronous_commit=off',
          '-c',
          `full_page_writes=${options.rewindable ? 'on' : 'off'}`,
          '-c',
          `wal_log_hints=${options.rewindable ? 'on' : 'off'}`,
          '-c',
          'shared_buffers=16MB',
          // As initdb left them in the template's pg_control: a replica copied from it refuses
          // to start with lower ones.
          '-c',
          'max_connections=100',
          '-c',
          'wal_level=replica',
          '-c',
          'max_wal_senders=10',
          // In the data dir, not /dev/shm: a server killed with SIGKILL leaves its segments.
          '-c',
          'dynamic_shared_memory_type=mmap',
          '-c',
          'wal_keep_size=64MB',
          '-c',
          'hot_standby=on',
          '-c',
          'wal_receiver_status_interval=1s',
          '-c',
          'logging_collector=off',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'], ...(who ?? {}) },
      );
      live.add(child);
      const me = child;
      me.once('exit', () => live.delete(me));
      const collect = (chunk: Buffer) => {
        if (output.length < 20_000) output += chunk;
      };
      me.stdout?.on('data', collect);
      me.stderr?.on('data', collect);
      await ready(30_000, () => psql('select 1') === '1');
    },
    async stop() {
      if (child === undefined || !running()) return;
      const exited = once(child, 'exit');
      child.kill('SIGINT');
      await exited;
    },
    async rewindFrom(from, { via, rewinding } = {}) {
      await node.stop();
      // A promoted server's pg_control tells its new timeline after its first checkpoint.
      from.sql('checkpoint');
      const rewind = spawn(
        join(bindir as string, 'pg_rewind'),
        [
          `--target-pgdata=${dir}`,
          `--source-server=user=postgres dbname=postgres host=${from.host} port=${from.port}`,
          '--write-recovery-conf',
          '--no-sync',
          '--progress',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'], ...(who ?? {}) },
      );
      let said = '';
      const tell = (chunk: Buffer) => {
        said += chunk;
        if (rewind.pid !== undefined) for (const line of String(chunk).split(/[\r\n]+/)) rewinding?.(line, rewind.pid);
      };
      rewind.stdout?.on('data', tell);
      rewind.stderr?.on('data', tell);
      const [code, signal] = (await once(rewind, 'exit')) as [number | null, string | null];
      if (code !== 0) throw new Error(`${name}: pg_rewind ended (${code ?? signal}): ${said}`);
      // After the one pg_rewind wrote: the last setting wins.
      if (via !== undefined)
        appendFileSync(
          join(dir, 'postgresql.auto.conf'),
          `primary_conninfo = 'user=postgres host=${via.host} port=${via.port} sslmode=disable gssencmode=disable'\n`,
        );
      await node.start();
      await ready(30_000, () => psql('select status from pg_stat_wal_receiver') === 'streaming');
    },
    async promote() {
      run(who, 'pg_ctl', ['promote', '-D', dir, '-W']);
      await ready(30_000, () => psql('select pg_is_in_recovery()') === 'f');
    },
    async startAsReplicaOf(from: PgNode) {
      const signal = join(dir, 'standby.signal');
      writeFileSync(signal, '');
      if (who) chownSync(signal, who.uid, who.gid);
      appendFileSync(
        join(dir, 'postgresql.auto.conf'),
        `primary_conninfo = 'user=postgres host=${from.host} port=${from.port}'\n`,
      );
      await node.start();
      await ready(30_000, () => psql('select status from pg_stat_wal_receiver') === 'streaming');
    },
    async rebuildAsReplicaOf(from: PgNode) {
      await halt();
      rmSync(dir, { recursive: true, force: true });
      run(who, 'pg_basebackup', [
        '-h',
        from.host,
        '-p',
        String(from.port),
        '-U',
        'postgres',
        '-D',
        dir,
        '-R',
        '-X',
        'stream',
        '--checkpoint=fast',
        '--no-sync',
      ]);
      await node.start();
      await ready(30_000, () => psql('select status from pg_stat_wal_receiver') === 'streaming');
    },
    async restoreAsPrimary() {
      await halt();
      rmSync(join(dir, 'standby.signal'), { force: true });
      await node.start();
      await ready(30_000, () => psql('select pg_is_in_recovery()') === 'f');
    },
    sql: (query: string) => psql(query),
  };
  return node;
}

/** Kills every server of this process's pairs and removes their data (in memory, under /dev/shm). */
function cleanUp(): void {
  for (const child of live) if (child.pid !== undefined) signalTree(child.pid, 'SIGKILL');
  for (const root of roots) {
    try {
      // Retried: a backend killed a moment ago may still be writing in it.
      rmSync(root, { recursive: true, force: true, maxRetries: 5, retryDelay: 20 });
    } catch {
      // what is left is in the temp dir; never an error at exit
    }
  }
  live.clear();
  roots.clear();
}

// A test run that dies must not leave servers behind, nor their data in memory: on exit, and on
// the signals that end a process without an 'exit' event (Vitest ends its workers with SIGTERM:
// a file whose beforeAll timed out while its pair was starting never stopped it).
process.once('exit', cleanUp);
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  process.once(signal, () => {
    cleanUp();
    // Ended by the signal as it would have been, unless someone else handles it.
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  });
}
