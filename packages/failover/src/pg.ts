/**
 * Role discovery and error classes for PostgreSQL through node-postgres (`pg`): pass
 * `roles: pgRoles()` to `failover()` with `pg.Pool`s (or `pg.Client`s) as targets. Only types
 * of `pg` are used: nothing is imported at load.
 * @module @holdfast/failover/pg
 */
import { TimeoutError } from '@holdfast/core';
import type { Endpoint } from './endpoint.js';
import type { RolesOptions } from './options.js';
import type { ErrorClass, RoleCheckSettings, RoleReport } from './roles.js';
import { thin } from './sightings.js';

/** What `pgRoles()` needs of a target: a `pg.Pool` or a `pg.Client` is one. */
export interface PgQueryable {
  /** Runs one query (pg's query-config form). */
  query(config: {
    text: string;
    /** pg's own per-query client-side timeout. */
    query_timeout?: number;
  }): Promise<{
    /** The rows of the result. */
    rows: unknown[];
  }>;
}

/** The `roles` option of a set of PostgreSQL servers, for `Endpoint<T>`s whose target is `T`. */
export type PgRolesOptions<T> = Omit<RolesOptions, 'check' | 'compare' | 'classify'> & {
  readonly check: (endpoint: Endpoint<T>, signal: AbortSignal, settings?: RoleCheckSettings) => Promise<RoleReport>;
  readonly compare: (a: unknown, b: unknown) => number;
  readonly classify: (error: unknown) => ErrorClass;
};

/**
 * One query tells role, timeline, LSN and lag. The primary's timeline is that of the WAL it
 * writes now (the first 8 hex digits of its WAL file name), which a promotion raises at once;
 * a replica's is its last checkpoint's. Lag, while its WAL receiver streams from the primary: 0
 * when it has replayed all it received and all its sender last said it had (`latest_end_lsn`: an
 * idle replica too; a restarted one replayed its own WAL past the start of the segment it streams
 * from, so it received less than it replayed), else the age of its last replayed transaction. A
 * receiver that has only connected (a server rejoined after pg_rewind, or restarted) received
 * nothing yet and heard no WAL end: read as 0, it took reads missing writes acknowledged seconds
 * before, in a set that had not seen the primary's WAL move past it. Nor is one restarted by a
 * reload (`primary_conninfo` changed) before its new sender's first message: it keeps the WAL end
 * its old sender told, and only then does the sender's clock (`last_msg_send_time`) differ from its
 * own (`last_msg_receipt_time`), both set to its start. Without pg_read_all_stats
 * (no `latest_end_lsn`), 0 only when it received exactly what it replayed. Unknown (null) when
 * no WAL receiver streams (never connected, or its primary is gone: having replayed all it
 * received then says nothing) or nothing was replayed yet. The
 * receiver's `status` is hidden from roles without pg_read_all_stats; its row still shows
 * that a receiver runs. A replica's own figures cannot see a stalled link (it replayed all it
 * received): `pgRoles()` raises its lag to the time since its cluster's primary (same system
 * identifier) was seen with WAL flushed past the replica's replay LSN. `follows`: a replica's
 * timeline, the highest of its last restartpoint's, its WAL receiver's (hidden without
 * pg_read_all_stats) and its minimum recovery point's: one below the timeline a server is a primary
 * on now streams from a deposed primary (or none), and its lag is unknown. `streams`: the timeline
 * its WAL receiver streams (hidden without pg_read_all_stats): one above a primary's deposes it.
 */
const roleQuery = `select pg_is_in_recovery() as replica,
  case when pg_is_in_recovery() then null else pg_walfile_name(pg_current_wal_lsn()) end as walfile,
  (select timeline_id from pg_control_checkpoint()) as checkpoint_timeline,
  greatest((select received_tli from pg_stat_wal_receiver),
    (select min_recovery_end_timeline from pg_control_recovery())) as follows,
  (select received_tli from pg_stat_wal_receiver where status = 'streaming') as streams,
  (select system_identifier from pg_control_system())::text as system,
  round(extract(epoch from pg_postmaster_start_time()) * 1000000)::bigint::text as started,
  case when pg_is_in_recovery() then null else pg_current_wal_flush_lsn() end::text as flushed,
  (case when pg_is_in_recovery() then pg_last_wal_replay_lsn() else pg_current_wal_lsn() end)::text as lsn,
  case when not pg_is_in_recovery() then null
       when not exists (select 1 from pg_stat_wal_receiver where coalesce(status, 'streaming') = 'streaming') then null
       when pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn()
         and (select coalesce(latest_end_lsn <= pg_last_wal_replay_lsn()
                                and last_msg_send_time <> last_msg_receipt_time,
                              status is null and pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn())
              from pg_stat_wal_receiver) then 0
       else extract(epoch from now() - pg_last_xact_replay_timestamp()) * 1000 end::float8 as lag`;

interface RoleRow {
  replica: boolean;
  walfile: string | null;
  checkpoint_timeline: number | string | null;
  /** A replica's timeline beside its checkpoint's: its WAL receiver's, its minimum recovery point's. */
  follows?: number | string | null;
  /** The timeline its WAL receiver streams (hidden without pg_read_all_stats). */
  streams?: number | string | null;
  system: string | null;
  /** The postmaster's start, µs since the epoch: one run of one server (whatever the session's time zone). */
  started?: string | null;
  flushed: string | null;
  lsn: string | null;
  lag: number | string | null;
}

/** `16/B374D848` as a number of bytes. */
export function parseLsn(lsn: string): bigint {
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(lsn);
  if (match === null) throw new TypeError(`not a PostgreSQL LSN: ${JSON.stringify(lsn.slice(0, 40))}`);
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

/** A client `pg` can open beside a target: a `pg.Client`. */
type Standalone = PgQueryable & {
  on(event: 'error', listener: () => void): unknown;
  connect(): Promise<unknown>;
  end(): Promise<unknown>;
};

/** What a `pg.Pool` shows of itself: enough to open one connection beside it. */
interface PoolShape {
  readonly Client?: unknown;
  readonly options?: { max?: unknown; password?: unknown };
  readonly idleCount?: unknown;
  readonly totalCount?: unknown;
  readonly ending?: unknown;
}

/** What a `pg.Client` shows of itself: its settings, whether a query runs, its transaction. */
interface ClientShape {
  readonly connectionParameters?: { password?: unknown };
  readonly readyForQuery?: unknown;
  /** pg's own flags (no public ones): false once its connection was lost; true once ended. */
  readonly _queryable?: unknown;
  readonly _ending?: unknown;
  getTransactionStatus?: () => unknown;
}

/**
 * How to open a connection of its own to `db`'s server with `db`'s settings (the password too:
 * pg keeps it out of enumerable properties), or undefined when `db` is not a `pg.Pool` or a
 * `pg.Client`.
 */
function beside(db: PgQueryable): ((connectionTimeoutMillis: number) => Standalone) | undefined {
  const pool = db as PoolShape;
  if (typeof pool.Client === 'function' && typeof pool.options === 'object' && pool.options !== null) {
    const { options } = pool;
    const make = pool.Client as new (options: object) => Standalone;
    return (ms) => new make({ ...options, password: options.password, connectionTimeoutMillis: ms });
  }
  const client = db as ClientShape;
  const params = client.connectionParameters;
  if (typeof params === 'object' && params !== null && typeof client.getTransactionStatus === 'function') {
    const make = db.constructor as new (options: object) => Standalone;
    return (ms) => new make({ ...params, password: params.password, connectionTimeoutMillis: ms });
  }
  return undefined;
}

/**
 * Whether a check sent through `db` would wait behind its user's calls, or run inside them: a
 * `pg.Pool` whose every connection runs a call, a `pg.Client` running a query (pg queues the
 * check behind it) or inside a transaction (a failed one would fail the check).
 */
function busy(db: PgQueryable): boolean {
  const pool = db as PoolShape;
  const max = pool.options?.max;
  if (typeof pool.Client === 'function' && typeof max === 'number') {
    if (pool.ending === true) return false;
    return pool.idleCount === 0 && typeof pool.totalCount === 'number' && pool.totalCount >= max;
  }
  const client = db as ClientShape;
  // A client whose connection was lost or that was ended is never usable again (pg does not
  // reconnect a Client): asked through it, the check fails as its calls do.
  if (typeof client.getTransactionStatus !== 'function' || client._queryable === false || client._ending === true)
    return false;
  // pg-native's Client shows no `readyForQuery`: asked through it, as before, never on a new
  // connection at every check.
  if (typeof client.readyForQuery !== 'boolean') return false;
  return !client.readyForQuery || client.getTransactionStatus() !== 'I';
}

/** The checks of one target under way: one through it, one on a connection of its own. */
interface Flight {
  through?: Promise<Answer>;
  own?: Promise<Answer>;
}

/** A role report, and the cluster it came from (`pg_control_system()`'s system identifier). */
interface Answer {
  readonly report: RoleReport;
  readonly system: string;
  /**
   * The server that answered: its cluster and its postmaster's start, one run of one server
   * whatever pool or set asked it. Undefined when the row does not tell.
   */
  readonly server?: string;
  /** A primary's WAL flushed: what its replicas can have received. */
  readonly flushed?: bigint;
  /** A replica's timeline: the highest it is seen on. */
  readonly follows?: number;
  /** The timeline a replica's WAL receiver streams, when shown. */
  readonly streams?: number;
}

const flights = new WeakMap<object, Flight>();

/**
 * Asks one PostgreSQL server its role: `{ role, token: [timeline, lsn], lag }`. `timeout` (ms)
 * bounds the answer whatever the pool's settings, and is sent as pg's `query_timeout`, so a hung
 * server does not keep a pooled connection. At most one check runs through a target: while one
 * waits (a frozen server, a pool without `connectionTimeoutMillis` whose connect never ends),
 * the next ones share it, or, for a `pg.Pool` or `pg.Client`, ask on a connection of their own
 * (one at a time), connected within `timeout` and closed after. So does a check of a `pg.Pool`
 * whose every connection runs a call, and of a `pg.Client` running a query or in a transaction:
 * queued behind long queries, the check failed as if the server were gone, and writes to a live
 * primary were refused.
 */
export function pgRole(db: PgQueryable, timeout?: number): Promise<RoleReport> {
  return ask(db, timeout).then((answer) => answer.report);
}

function ask(db: PgQueryable, timeout: number | undefined): Promise<Answer> {
  let flight = flights.get(db);
  if (flight === undefined) {
    flight = {};
    flights.set(db, flight);
  }
  const f = flight;
  const open = beside(db);
  let check: Promise<Answer>;
  if (f.through === undefined && (open === undefined || !busy(db))) {
    check = readRole(db, timeout);
    f.through = check;
    const done = () => {
      if (f.through === check) f.through = undefined;
    };
    check.then(done, done);
  } else if (f.own === undefined && open !== undefined) {
    check = ownConnection(open(timeout ?? 0), timeout);
    f.own = check;
    const done = () => {
      if (f.own === check) f.own = undefined;
    };
    check.then(done, done);
  } else {
    check = (f.own ?? f.through) as Promise<Answer>;
  }
  return timeout === undefined ? check : within(check, timeout);
}

async function ownConnection(client: Standalone, timeout: number | undefined): Promise<Answer> {
  client.on('error', () => {}); // a connection lost while idle must not crash the process
  try {
    await client.connect();
    return await readRole(client, timeout);
  } finally {
    client.end().catch(() => {});
  }
}

/** `check`, or a `TimeoutError` after `ms`. */
function within(check: Promise<Answer>, ms: number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new TimeoutError('role check', ms)), ms);
    check.then(
      (answer) => {
        clearTimeout(timer);
        resolve(answer);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

async function readRole(db: PgQueryable, timeout: number | undefined): Promise<Answer> {
  const { rows } = await db.query(
    timeout === undefined ? { text: roleQuery } : { text: roleQuery, query_timeout: timeout },
  );
  const row = rows[0] as RoleRow | undefined;
  if (row === undefined || row.lsn === null) throw new Error('the role query returned no row');
  const timeline =
    row.walfile === null ? Number(row.checkpoint_timeline) : Number.parseInt(row.walfile.slice(0, 8), 16);
  const token = [timeline, parseLsn(row.lsn)];
  const system = String(row.system);
  const known = typeof row.started === 'string' ? { system, server: `${system}/${row.started}` } : { system };
  if (!row.replica) {
    const flushed = row.flushed === null ? undefined : parseLsn(row.flushed);
    return flushed === undefined
      ? { report: { role: 'primary', token }, ...known }
      : { report: { role: 'primary', token }, ...known, flushed };
  }
  const lag = row.lag === null ? undefined : Math.max(0, Math.round(Number(row.lag)));
  // Neither shown (greatest() skips nulls): the checkpoint's timeline.
  const follows = Math.max(timeline, Number(row.follows ?? 0));
  const answer = {
    report: lag === undefined ? { role: 'replica' as const, token } : { role: 'replica' as const, token, lag },
    ...known,
    follows,
  };
  return row.streams === null || row.streams === undefined ? answer : { ...answer, streams: Number(row.streams) };
}

/**
 * SQLSTATE classes that say the server itself is in trouble: connection exceptions (08),
 * insufficient resources (53, e.g. too many connections), operator intervention (57: shutdown,
 * cancelled by statement_timeout), system errors (58), internal errors (XX), configuration (F0).
 */
const failingClasses = new Set(['08', '53', '57', '58', 'XX', 'F0']);

/**
 * What a `pg` error says about its server. A server error with a SQLSTATE outside the failing
 * classes (a constraint violation 23xxx, a syntax or permission error 42xxx, bad data 22xxx, an
 * authentication failure 28xxx, a serialization failure 40xxx...) proves the server alive:
 * `alive`. `25006` (read-only transaction: a write reached a replica) is `readOnly`. Anything
 * else (refused or lost connections, timeouts) is a `failure`.
 */
export function pgClassify(error: unknown): ErrorClass {
  if (typeof error !== 'object' || error === null) return 'failure';
  const { code, severity } = error as { code?: unknown; severity?: unknown };
  if (typeof code !== 'string' || typeof severity !== 'string' || !/^[0-9A-Z]{5}$/.test(code)) return 'failure';
  if (code === '25006') return 'readOnly';
  return failingClasses.has(code.slice(0, 2)) ? 'failure' : 'alive';
}

/**
 * Orders two primaries' `[timeline, lsn]` tokens by timeline alone. A promotion starts a new
 * timeline, so one timeline has one primary: two on it were promoted apart (a split brain) and
 * tie, whatever their LSNs (an idle one's WAL switch or checkpoint moved writes to it).
 */
function comparePgTokens(a: unknown, b: unknown): number {
  const ta = Array.isArray(a) ? a[0] : undefined;
  const tb = Array.isArray(b) ? b[0] : undefined;
  return typeof ta === 'number' && typeof tb === 'number' ? Math.sign(ta - tb) : 0;
}

/**
 * The `roles` option for PostgreSQL servers reached through `pg` pools or clients: the role
 * check (`pgRole`), the order of tokens (the higher timeline; two primaries on one timeline tie)
 * and `pgClassify`. Other role settings pass through.
 *
 * @example
 * const db = failover({ endpoints: [{ name: 'db-1', target: pool1 }, { name: 'db-2', target: pool2 }], roles: pgRoles() });
 * await db.execute((e) => e.target.query('insert into orders (id) values ($1)', [id])); // the primary
 * await db.execute((e) => e.target.query('select * from orders'), { intent: 'read' }); // a replica
 */
export function pgRoles<T extends PgQueryable>(
  options: Omit<RolesOptions, 'check' | 'compare' | 'classify'> = {},
): PgRolesOptions<T> {
  const timeout = options.timeout ?? 1_000;
  const primaries = new PrimaryWal();
  return {
    ...options,
    check: async (endpoint, _signal, set) => {
      // A set checks each target every interval (a failed check says so): one unchecked for five
      // is in no set any more (disposed, or its server taken out), and says nothing of the others.
      // The set's own interval: `{ ...pgRoles(), interval: 60_000 }` forgot every primary between checks.
      // The set's timeout too: `{ ...pgRoles(), timeout: 3_000 }` timed the query out at 1 s.
      const limit = set?.timeout ?? timeout;
      const every = set?.interval ?? options.interval ?? 2_000;
      const stale = 5 * (every + limit);
      // Monotonic: a wall-clock step (NTP, a VM resumed) would make up or hide a lag of its size.
      const started = performance.now();
      let answer: Answer;
      try {
        answer = await ask(endpoint.target, limit);
      } catch (error) {
        primaries.lost(endpoint.target, performance.now(), stale);
        throw error;
      }
      const { report, system, flushed } = answer;
      const [timeline, lsn] = report.token as [number, bigint];
      // Through another set's pool too, a server is itself: not a second primary on its timeline.
      const server = answer.server ?? endpoint.target;
      primaries.answered(endpoint.target, server, (t) => ask(t as PgQueryable, limit));
      if (report.role === 'primary') {
        // A replica of its cluster streams a higher timeline: a server was promoted past it, so it
        // is deposed, even while that one was never reached (frozen, cut off) and its word is all
        // a set started meanwhile has. Taken as the primary, it got every write, all lost. A set
        // that saw the promoted one fences it itself.
        const now = performance.now();
        const past = primaries.above(system, timeline, now) ? undefined : primaries.streamed(system, timeline, now);
        if (past !== undefined) {
          primaries.lost(endpoint.target);
          throw new Error(
            `deposed primary: it writes on timeline ${timeline}, a replica of its cluster streams timeline ${past}`,
          );
        }
        // As of the check's start: what it flushed then at least (a replica's replay is judged against it).
        // Seen again within an interval and two answers, or its checks fail or stall.
        primaries.saw(endpoint.target, server, system, timeline, flushed ?? lsn, started, stale, every + 2 * limit);
        return report;
      }
      primaries.lost(endpoint.target);
      if (answer.streams !== undefined) primaries.streams(system, answer.streams, performance.now(), stale);
      // A replica of a deposed primary (its timeline below the one a server is a primary on now)
      // misses every write to the new primary, whatever it replayed: its lag is unknown.
      if (primaries.above(system, answer.follows ?? timeline, started)) return { role: 'replica', token: report.token };
      // A lag of 0 through a role that hides its receiver (no `streams`) says only that it received
      // what it replayed: unknown until a primary of its cluster is seen to tell what it misses.
      const behind = primaries.since(
        system,
        lsn,
        started,
        report.lag === 0 && answer.streams === undefined,
        endpoint.target,
        performance.now(),
      );
      // A split brain: which history it follows, and how far behind, is unknown. So it is in the
      // set's first round, judged before another endpoint of the set answered: a replica of a
      // deposed primary answering before the promoted one read lag 0 and took reads until its next
      // check. The set asks it again once every endpoint has answered.
      if (behind === undefined || set?.firstRound) return { role: 'replica', token: report.token };
      return report.lag !== undefined && behind > report.lag ? { ...report, lag: behind } : report;
    },
    compare: comparePgTokens,
    classify: pgClassify,
  };
}

/**
 * A server: its system identifier and postmaster start (one run of one server, whoever asks it),
 * or, when its answer does not tell, the target it answered through.
 */
type Server = string | object;

/**
 * A target whose last check said primary: the server that answered, its system and timeline,
 * whether it is deposed (first seen on its timeline while another server was a primary on a
 * higher one), when, and after how long it is no primary "now" (no set checks it). `split`:
 * another server answered as a primary on its timeline beside it; `silent`: its checks fail since
 * (kept, while checked, as one side of the split brain).
 */
interface Now {
  server: Server;
  system: string;
  timeline: number;
  deposed: boolean;
  at: number;
  stale: number;
  /** Ms after `at` within which its next check answers, unless its checks fail or stall. */
  cycle: number;
  silent: boolean;
  split: boolean;
}

/**
 * A primary seen: its WAL flushed, when first seen there, when last (an idle primary's WAL stays),
 * when it was last seen before (at the sighting before this one), and the server that said so.
 */
interface Sighting {
  readonly lsn: bigint;
  readonly at: number;
  until: number;
  readonly after: number;
  readonly server: Server;
}

/**
 * The WAL positions the primaries of each cluster were seen at, and when. A replica whose WAL
 * receiver stalls (a slow or stuck link) has replayed all it received, so its own figures say
 * lag 0 while the primary writes on; it lags at least since the primary was seen with WAL it has
 * not replayed.
 *
 * Sightings are kept by system identifier and timeline, and judged on the highest timeline a
 * server is a primary on now (a deposed primary writes on a lower one beside the new primary).
 * A timeline no server is a primary on any more is forgotten once another one's primary is seen:
 * a cluster restored from an older backup writes on a lower timeline than the one it replaced, and
 * the old primary's WAL, which it never reaches, says nothing of its replicas.
 *
 * Primaries are counted by server, not by target: one `pgRoles()` shared by two sets, each with
 * pools of its own, sees one primary through two pools, and that is no split brain.
 */
class PrimaryWal {
  /** System identifier -> timeline -> sightings, oldest first. */
  readonly #seen = new Map<string, Map<number, Sighting[]>>();
  /**
   * Each target whose last check said primary (or, one side of a split brain, that went silent since).
   */
  readonly #now = new Map<object, Now>();
  /** The server each target last reached. */
  readonly #reached = new WeakMap<object, Server>();
  /** System identifier -> the highest timeline a replica's WAL receiver was seen streaming, when. */
  readonly #streamed = new Map<string, { timeline: number; at: number; stale: number }>();
  /**
   * Each replica target's replay LSN at a check, when it answered, and whether it is ahead: it
   * replayed more than a check of its primary started after found flushed.
   */
  readonly #replayed = new WeakMap<object, { lsn: bigint; at: number; ahead: boolean }>();
  /** `system/timeline` -> when a check of a target whose last check said primary on it last failed. */
  readonly #down = new Map<string, number>();

  /** A replica of `system` streams `timeline` (its WAL receiver says so), as of `at`. */
  streams(system: string, timeline: number, at: number, stale: number): void {
    const last = this.#streamed.get(system);
    if (last !== undefined && last.timeline > timeline && at - last.at <= last.stale) return;
    if (last === undefined && this.#streamed.size >= 8)
      this.#streamed.delete(this.#streamed.keys().next().value as string);
    this.#streamed.set(system, { timeline, at, stale });
  }

  /** The timeline above `timeline` a replica of `system` was seen streaming lately, if any. */
  streamed(system: string, timeline: number, now: number): number | undefined {
    const last = this.#streamed.get(system);
    return last !== undefined && last.timeline > timeline && now - last.at <= last.stale ? last.timeline : undefined;
  }

  /**
   * `target` reached `server`. Reaching another one than before through it (the server restarted,
   * or its address moved to another), each other target whose last check saw the run it reached
   * before is asked again (`ask`, now, not at its set's next check): through those that no longer
   * reach it as a primary it is gone, so a primary restarted, seen through one set's pool, is not
   * a second primary beside its old run remembered through another set's pool (a minute, at that
   * set's interval). Those that still do keep it: an address (a virtual IP) moved to a backup
   * restored as a primary, its old primary running on, is a split brain. Taken for gone unasked,
   * it was hidden, and a replica of the old primary read lag 0 in the set writing to the other.
   */
  answered(target: object, server: Server, ask: (target: object) => Promise<Answer>): void {
    const before = this.#reached.get(target);
    this.#reached.set(target, server);
    if (before === undefined || before === server || typeof before !== 'string') return;
    for (const [t, p] of this.#now) {
      if (t === target || p.server !== before) continue;
      const forget = () => {
        if (this.#now.get(t) === p) this.#now.delete(t);
      };
      // Never a throw into the check that answered: a target that cannot be asked forgets it.
      Promise.resolve(t)
        .then(ask)
        .then((a) => {
          if (a.server !== before || a.report.role !== 'primary') forget();
        }, forget);
    }
  }

  /** `stale`: ms after which the primary, not seen again, is no primary "now": no set checks it. */
  saw(
    target: object,
    server: Server,
    system: string,
    timeline: number,
    lsn: bigint,
    at: number,
    stale: number,
    cycle: number,
  ): void {
    const before = this.#now.get(target);
    this.#now.delete(target); // to the back: the most recent last
    // A deposed primary stays deposed while the promoted one flaps (a check failed: not gone). One
    // seen before the promotion is deposed from the first check that sees the promoted one: it was
    // not, and with the promoted primary's next check failed, its replicas read lag 0 and took reads.
    const deposed =
      (before?.timeline === timeline && before.system === system && at - before.at <= before.stale && before.deposed) ||
      [...this.#current(system, at).keys()].some((t) => t > timeline);
    // Two servers primaries on one timeline, both answering: a split brain. One of them silent
    // since is still one of the two (it may be the side the operator keeps).
    let split = false;
    for (const [t, p] of this.#now)
      if (
        t !== target &&
        p.server !== server &&
        p.system === system &&
        p.timeline === timeline &&
        at - p.at <= p.stale
      ) {
        split = true;
        if (!p.silent) p.split = true;
      }
    this.#now.set(target, { server, system, timeline, deposed, at, stale, cycle, silent: false, split });
    // A few targets: a set's endpoints, or those of the few sets sharing a pgRoles().
    if (this.#now.size > 64) this.#now.delete(this.#now.keys().next().value as object);
    let timelines = this.#seen.get(system);
    if (timelines === undefined) {
      // A few clusters at most: a server restarted empty is one more.
      if (this.#seen.size >= 8) this.#seen.delete(this.#seen.keys().next().value as string);
      timelines = new Map();
      this.#seen.set(system, timelines);
    }
    // Timelines no server is a primary on now: an old history (restored over, or promoted past).
    // Not on a deposed primary's word: the one it was deposed by may only have missed a check.
    if (!deposed) {
      const current = this.#current(system, at, true);
      for (const t of timelines.keys()) if (!current.has(t)) timelines.delete(t);
    }
    let list = timelines.get(timeline);
    // A primary's flushed WAL never goes back on its timeline: one seen behind an earlier sighting
    // of another server, or of one that does not say which it is, is another history of the
    // cluster (restored from a backup, which keeps the identifier and, without archive recovery,
    // the timeline). The same server behind itself is an answer overtaken by a later one (two
    // sets, two pools): nothing new, as a sighting at or behind an earlier one is.
    const other = (s: Sighting) => s.lsn > lsn && (s.server !== server || typeof server !== 'string');
    if (list === undefined || list.some(other)) timelines.set(timeline, (list = []));
    const newest = list.at(-1);
    if (newest !== undefined && newest.lsn >= lsn) {
      if (newest.lsn === lsn && newest.server === server) newest.until = Math.max(newest.until, at);
      return;
    }
    list.push({ lsn, at, until: at, after: newest?.until ?? at, server });
    if (list.length > 64) thin(list, at);
  }

  /**
   * `target`'s last check did not say primary: a replica now, or no answer (`at`, with the horizon
   * of the set that asked). One side of a split brain that went silent is kept, silent, while checked.
   */
  lost(target: object, at?: number, stale = 0): void {
    const p = this.#now.get(target);
    // No answer from a primary: one seen through another target before it answers no more (see #answering).
    if (p !== undefined && at !== undefined) {
      // A few clusters' timelines: forgotten, earlier sightings count again, as before any failed.
      if (this.#down.size > 8) this.#down.clear();
      this.#down.set(`${p.system}/${p.timeline}`, at);
    }
    if (p?.split && at !== undefined) Object.assign(p, { silent: true, at, stale });
    else this.#now.delete(target);
  }

  /**
   * Ms since the primary of `system` (on the highest timeline a server is a primary on now; with
   * none, the highest seen) was first seen past `replayed`, as of `now`; 0 when it never was, or
   * no primary of `system` was (unless `unseen`: unknown then). Undefined when unknown: two
   * servers are primaries on that timeline now (a split brain: two histories, whose WAL positions
   * say nothing of each other's replicas), or the first sighting kept is past `replayed` (it was
   * behind before it was first seen, for how long nobody saw), or `target` last answered with
   * more replayed than a check of that primary started after found flushed (another history).
   * While that primary does not answer its checks, at least the ms since it was last seen with WAL
   * at or behind `replayed` (unknown with no such sighting). `answered`: when this check of
   * `target` answered.
   */
  since(
    system: string,
    replayed: bigint,
    now: number,
    unseen: boolean,
    target: object,
    answered: number,
  ): number | undefined {
    let last = this.#replayed.get(target);
    if (last === undefined) this.#replayed.set(target, (last = { lsn: replayed, at: answered, ahead: false }));
    const timelines = this.#seen.get(system);
    if (timelines === undefined) return unseen ? undefined : 0;
    const current = this.#current(system, now);
    const top = Math.max(...(current.size > 0 ? current.keys() : timelines.keys()));
    if ((this.#current(system, now, false, true).get(top)?.size ?? 0) > 1) return undefined;
    const list = timelines.get(top) ?? [];
    // Replayed past what the primary had flushed at a check started after: WAL it never wrote, of
    // another history (a promotion no set saw; its timeline hidden from a plain role), whose
    // positions say nothing of this primary's. Taken as past every sighting, it read lag 0.
    // Kept until such a check: the checks of a set run in step, a primary's often started just
    // before its replica's answered.
    const { lsn, at } = last;
    if ([...this.#now.values()].some((p) => p.system === system && p.timeline === top && p.at > at))
      this.#replayed.set(target, (last = { lsn: replayed, at: answered, ahead: (list.at(-1)?.lsn ?? lsn) < lsn }));
    if (last.ahead) return undefined;
    const i = list.findIndex((s) => s.lsn > replayed);
    if (i === 0) return undefined;
    // Behind since the primary was first seen past its replay: at least that (a stalled link).
    const behind = i < 0 ? 0 : Math.max(0, now - (list[i] as Sighting).at);
    // The primary not answering (its checks fail or stall: a partition, a freeze, its death), or
    // not seen for longer than its checks take before it was seen past the replica (it answers
    // again after a partition): nothing tells what it wrote meanwhile. The replica may miss all of
    // it, so it lags at most, and as far as anyone can tell, since the primary was last seen with
    // WAL it has replayed. Its own figures cannot show it: it replayed all it received, while its
    // link may be cut too. Taken from the sighting past it, a replica still cut off read lag 0
    // when the set saw the primary again, and took reads missing 4 s of writes.
    const cycle = this.#answering(system, top, now);
    const passed = list[i < 0 ? list.length - 1 : i - 1];
    if (passed === undefined) return cycle === undefined ? undefined : behind;
    const blind = cycle === undefined || (i > 0 && (list[i] as Sighting).at - (list[i] as Sighting).after > cycle);
    return blind ? Math.max(behind, now - passed.until) : behind;
  }

  /**
   * The shortest cycle (ms within which its next check answers) of the primaries of `system` on
   * `timeline` that answered their last check within it, and since a check of one failed through
   * any target; undefined when none did.
   */
  #answering(system: string, timeline: number, now: number): number | undefined {
    // Not one seen before a check of it through another target failed: that set's next check is
    // not due yet, and its sighting, a minute old in a set checking every minute, kept a set
    // checking every 200 ms, its own checks failing, judging a replica cut off with it at lag 0.
    const down = this.#down.get(`${system}/${timeline}`) ?? Number.NEGATIVE_INFINITY;
    let cycle: number | undefined;
    for (const p of this.#now.values())
      if (p.system === system && p.timeline === timeline && !p.deposed && !p.silent && now - p.at <= p.cycle)
        if (p.at >= down && (cycle === undefined || p.cycle < cycle)) cycle = p.cycle;
    return cycle;
  }

  /**
   * Whether a server of `system` is a primary now (not deposed, not silent) on a timeline above
   * `timeline`, or, with none now, was seen on one (kept beside a deposed primary: the promoted one
   * missed a check): a replica on `timeline` follows a deposed primary, or none, and misses its
   * writes. Judged on the primaries now alone, a promoted primary frozen for a check let the
   * replicas of the deposed one read lag 0.
   */
  above(system: string, timeline: number, now: number): boolean {
    const current = this.#current(system, now);
    for (const t of current.size > 0 ? current.keys() : (this.#seen.get(system)?.keys() ?? []))
      if (t > timeline) return true;
    return false;
  }

  /**
   * The timelines servers of `system` are primaries on as of `now` (deposed ones, and the silent
   * side of a split brain, only if asked), and which servers on each.
   */
  #current(system: string, now: number, deposed = false, silent = false): Map<number, Set<Server>> {
    const out = new Map<number, Set<Server>>();
    for (const p of this.#now.values())
      if (p.system === system && (deposed || !p.deposed) && (!p.silent || silent) && now - p.at <= p.stale) {
        let servers = out.get(p.timeline);
        if (servers === undefined) out.set(p.timeline, (servers = new Set()));
        servers.add(p.server);
      }
    return out;
  }
}
