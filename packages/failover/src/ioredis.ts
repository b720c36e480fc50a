/**
 * Role discovery and error classes for Redis through `ioredis`: pass `roles: redisRoles()` to
 * `failover()` with one ioredis client per server as targets. Only its types are used: ioredis is not
 * imported at load.
 * @module @holdfast/failover/ioredis
 */
import type { Endpoint } from './endpoint.js';
import type { RolesOptions } from './options.js';
import type { ErrorClass, RoleCheckSettings, RoleReport } from './roles.js';
import { thin } from './sightings.js';

/** What `redisRoles()` needs of a target: an ioredis `Redis` client is one. */
export interface RedisInfoSource {
  /** `INFO replication`, as text. */
  info(section: 'replication'): Promise<string>;
}

/** The `roles` option of a set of Redis servers, for `Endpoint<T>`s whose target is `T`. */
export type RedisRolesOptions<T> = Omit<RolesOptions, 'check' | 'compare' | 'classify'> & {
  readonly check: (endpoint: Endpoint<T>, signal: AbortSignal, settings?: RoleCheckSettings) => Promise<RoleReport>;
  readonly compare: (a: unknown, b: unknown) => number;
  readonly classify: (error: unknown) => ErrorClass;
};

/**
 * How a master's `replid2` came to be, as its backlog shows it. Redis 7 moves the replication ID a
 * master's RDB recorded into `replid2` when it loads that RDB at start, exactly as a promotion does:
 * `replid2` alone cannot tell a promoted replica from a server restarted off a snapshot (its own,
 * a replica's, a restored backup).
 * - `promoted`: its backlog holds bytes of the history it left (streamed to it before the fork): it
 *   lived in that history, it was promoted, not restarted from a snapshot of it.
 * - `copy`: no such bytes, and nothing written since the fork: a snapshot of that history loaded at
 *   start (or a replica promoted before any byte streamed to it since its last sync: they look the same).
 * - `unknown`: neither (written since, or its backlog trimmed past the fork).
 */
export type RedisFork = 'promoted' | 'copy' | 'unknown';

/**
 * A Redis server's place in its replication history: its replication ID, the ID it had before it
 * forked from another history (`replid2`: a promotion, or a load of an RDB at start), its offset,
 * and, when `replid2` is set, what its backlog says of that fork and the offset it forked at. A
 * token without them counts as `promoted` (a token of an older release).
 */
export type RedisToken = readonly [
  replid: string,
  replid2: string,
  offset: number,
  fork?: RedisFork,
  /** The offset it forked at (`second_repl_offset` - 1): what it holds of the history it left. */
  forkedAt?: number,
];

const noId = '0000000000000000000000000000000000000000';

function field(info: string, name: string): string | undefined {
  const match = new RegExp(`^${name}:(.*)$`, 'm').exec(info);
  return match?.[1]?.trim();
}

/** A numeric field, NaN when absent. */
function num(info: string, name: string): number {
  const text = field(info, name);
  return text === undefined || text === '' ? Number.NaN : Number(text);
}

/**
 * Each client's `INFO replication` sent and not answered yet: a check meanwhile waits for that
 * answer instead of sending another. A server that stops answering with its connection open
 * (frozen, or cut off without a reset, which TCP notices minutes later) kept one more INFO on its
 * client at each check, every one of them answered at once when it woke.
 */
const asked = new WeakMap<object, Promise<string>>();

function replication(client: RedisInfoSource): Promise<string> {
  let answer = asked.get(client);
  if (answer === undefined) {
    const sent = Promise.resolve(client.info('replication'));
    const answered = () => {
      if (asked.get(client) === sent) asked.delete(client);
    };
    sent.then(answered, answered);
    asked.set(client, sent);
    answer = sent;
  }
  return answer;
}

/**
 * Asks one Redis server its role with `INFO replication`: `{ role, token: [replid, replid2,
 * offset, fork?, forkedAt?], lag }`. A replica's lag, as the server alone tells it: 0 while its link to the
 * master is up, else the time since the link went down. `Infinity` (never read) when its link has
 * not been up since it started or stopped being a master (`master_link_down_since_seconds:-1`):
 * restarted without persistence it is empty; an old master the Sentinels demoted holds writes its
 * new master never had. Either serves what it holds until its first sync ends. `redisRoles()`
 * raises it with what the set saw of the masters.
 */
export async function redisRole(client: RedisInfoSource): Promise<RoleReport> {
  return (await ask(client)).report;
}

/** A role report, and the replication ID a replica follows (its master's). */
interface Answer {
  readonly report: RoleReport;
  readonly replid: string;
  readonly offset: number;
}

async function ask(client: RedisInfoSource): Promise<Answer> {
  const info = await replication(client);
  const role = field(info, 'role');
  if (role !== 'master' && role !== 'slave') throw new Error(`unexpected INFO replication role: ${String(role)}`);
  const replid = field(info, 'master_replid') ?? noId;
  const replid2 = field(info, 'master_replid2') ?? noId;
  const offset = num(info, 'master_repl_offset');
  let token: RedisToken = [replid, replid2, offset];
  if (replid2 !== noId) {
    const second = num(info, 'second_repl_offset');
    const first = num(info, 'repl_backlog_first_byte_offset');
    const fork: RedisFork =
      num(info, 'repl_backlog_histlen') > 0 && first < second ? 'promoted' : offset === second - 1 ? 'copy' : 'unknown';
    token = [replid, replid2, offset, fork, second - 1];
  }
  const answer = (report: RoleReport): Answer => ({ report, replid, offset });
  if (role === 'master') return answer({ role: 'primary', token });
  if (field(info, 'master_link_status') === 'up') return answer({ role: 'replica', token, lag: 0 });
  const down = num(info, 'master_link_down_since_seconds');
  if (down === -1) return answer({ role: 'replica', token, lag: Number.POSITIVE_INFINITY });
  return answer(
    Number.isFinite(down) && down >= 0 ? { role: 'replica', token, lag: down * 1000 } : { role: 'replica', token },
  );
}

/** A token's parts, an offset that is no number lowest (so the order stays antisymmetric). */
function parts(t: unknown): { id: unknown; prev: unknown; off: number; fork: unknown; at: number } {
  const [id, prev, off, fork = 'promoted', at] = Array.isArray(t) ? t : [];
  const n = (v: unknown) => (typeof v === 'number' && !Number.isNaN(v) ? v : -1 / 0);
  return { id, prev: prev ?? noId, off: n(off), fork, at: n(at) };
}

/**
 * `x` forked from the history `y` is live in: 1 when `x` was promoted out of it; -1 when `x` is a
 * snapshot of it loaded at start with nothing written since, `y` at or past it (`y` holds all `x`
 * holds, and every write acknowledged since); 1 when `y` is at or before where `x` forked (`y`
 * took nothing since: `x` holds all it holds); else 0 (it cannot tell: a split brain).
 */
function forkedFrom(x: ReturnType<typeof parts>, y: ReturnType<typeof parts>): number {
  if (x.fork === 'promoted') return 1;
  if (x.fork === 'copy' && y.off >= x.off) return -1;
  // `y` took nothing since `x` forked: it holds nothing `x` lacks (a promotion whose backlog wrapped).
  return Number.isFinite(x.at) && y.off <= x.at ? 1 : 0;
}

/** A snapshot loaded at start with nothing written since (its offset where it forked). */
const pureCopy = (t: ReturnType<typeof parts>) => t.fork === 'copy' && Number.isFinite(t.at) && t.off === t.at;

/**
 * 1 when `x` and the snapshot `y`, forked from one history, `x` promoted out of it, or forked at
 * or past all `y` holds of it (`x` holds all `y` holds, and writes since); else 0.
 */
function overCopy(x: ReturnType<typeof parts>, y: ReturnType<typeof parts>): number {
  return y.fork === 'copy' && x.fork !== 'copy' && (x.fork === 'promoted' || x.at >= y.off) ? 1 : 0;
}

/**
 * Orders two masters' tokens. One forked from the history the other is live in (its `replid2` is
 * the other's `replid`) outranks it if it was promoted out of it (its backlog holds bytes of that
 * history); loses to it if it is a snapshot of it loaded at start (a replica restarted without its
 * `replicaof`, a backup restored as a master: nothing written since, the other at or past it);
 * else they tie. Within one history (the same `replid`), the higher offset. Two forked from one
 * history: a snapshot loses to one promoted out of it (the old master restarted from its RDB after
 * its replica was promoted), and to one forked at or past all the snapshot holds of it; else a
 * tie. One forked from the history the other is live in, whatever its backlog says, outranks it
 * when the other is at or before the offset it forked at (the other took nothing since). Offsets
 * of unrelated histories are never compared: they say how much a master was written, not whether
 * it is the one to write to. Of two unrelated histories, a promoted master outranks one never
 * forked (the old master, or a node restarted empty) and a snapshot loaded at start with nothing
 * written since (nothing acknowledged by it is lost): a promotion is what a failover leaves behind. Otherwise they tie (0): neither is
 * written to. Antisymmetric for any values (an offset that is no number counts lowest).
 */
export function compareRedisTokens(a: unknown, b: unknown): number {
  const x = parts(a);
  const y = parts(b);
  const xy = x.prev !== noId && x.prev === y.id;
  const yx = y.prev !== noId && y.prev === x.id;
  if (xy || yx) return xy && yx ? 0 : xy ? forkedFrom(x, y) : 0 - forkedFrom(y, x);
  if (x.id === y.id) return x.off === y.off ? 0 : x.off < y.off ? -1 : 1;
  const rank = (t: typeof x) => (t.prev === noId ? 0 : t.fork === 'promoted' ? 2 : 1);
  if (x.prev !== noId && x.prev === y.prev) return 0 - overCopy(y, x) || overCopy(x, y);
  const [rx, ry] = [rank(x), rank(y)];
  if (rx === 2 && (ry === 0 || pureCopy(y))) return 1;
  return ry === 2 && (rx === 0 || pureCopy(x)) ? -1 : 0;
}

/** Error replies that say the server cannot serve now: it is loading, busy, or its cluster or master is down. */
const failingReplies = new Set(['LOADING', 'BUSY', 'MASTERDOWN', 'CLUSTERDOWN', 'TRYAGAIN']);

/**
 * What an ioredis error says about its server. `READONLY` (a write reached a replica) is
 * `readOnly`. Other error replies (`ERR`, `WRONGTYPE`, `NOSCRIPT`, `NOAUTH`, `MOVED`, `OOM`...)
 * prove the server alive: `alive`; except `LOADING`, `BUSY`, `MASTERDOWN`, `CLUSTERDOWN` and
 * `TRYAGAIN`, and anything that is not a reply (a closed connection, a timeout): `failure`.
 */
export function redisClassify(error: unknown): ErrorClass {
  if (typeof error !== 'object' || error === null) return 'failure';
  const { name, message } = error as { name?: unknown; message?: unknown };
  if (name !== 'ReplyError' || typeof message !== 'string') return 'failure';
  const word = message.split(' ', 1)[0] ?? '';
  if (word === 'READONLY') return 'readOnly';
  return failingReplies.has(word) ? 'failure' : 'alive';
}

/** What an ioredis client says of its connection; other targets have none of it. */
interface Connection {
  readonly status?: unknown;
  connect?(): Promise<unknown>;
  once?(event: string, listener: () => void): unknown;
  removeListener?(event: string, listener: () => void): unknown;
}

/** Statuses of an ioredis client on its way to a connection: a command sent then is refused or queued. */
const connecting = new Set(['wait', 'connecting', 'connect', 'reconnecting']);

/**
 * The checks waiting on each client's connection attempt, and the 'ready', 'close' and 'end'
 * listener they share on it: one a check stacked as many as checks waited together (sets sharing
 * a client, a user's own checks), and Node warned of a leak past 10.
 */
interface Waiting {
  readonly checks: Set<() => void>;
  /** Takes the shared listener off the client. */
  readonly detach: () => void;
}
const waiting = new WeakMap<object, Waiting>();

/** The shared wait on `client`'s connection attempt, made with its listener on first use. */
function waitOn(client: Connection): Waiting {
  const found = waiting.get(client);
  if (found !== undefined) return found;
  const checks = new Set<() => void>();
  const events = ['ready', 'close', 'end'];
  const wake = () => {
    detach();
    for (const done of [...checks]) done();
  };
  const detach = () => {
    if (waiting.get(client) === shared) waiting.delete(client);
    for (const event of events) client.removeListener?.(event, wake);
  };
  const shared: Waiting = { checks, detach };
  for (const event of events) client.once?.(event, wake);
  waiting.set(client, shared);
  return shared;
}

/**
 * Waits while an ioredis client makes its first connection ('connecting', or connected and not yet
 * ready), or connects again after losing one ('reconnecting'): without an offline queue
 * (`enableOfflineQueue: false`, as a failover set wants) a command sent then fails at once, and a
 * new set would call every server unreachable. Sentinel closes every client connection of each
 * server it promotes or reconfigures (`CLIENT KILL TYPE normal`): checks sent while the clients
 * reconnected failed at once, and the new master and its replicas were called unreachable for an
 * interval. Ends when it is ready, when that connection attempt closes (refused: the check then
 * fails as before), when the client gives up ('end'), or at the check's timeout. A client made with `lazyConnect` (status 'wait') is connected first, as its first
 * command would: sent at once, that command was refused while it connected. A check whose signal
 * was aborted already does not wait (nor leaves its listeners on the client).
 */
function firstConnection(target: unknown, signal: AbortSignal): Promise<void> | undefined {
  const client = target as Connection;
  if (signal.aborted || typeof client.once !== 'function') return;
  if (client.status === 'wait' && typeof client.connect === 'function') {
    // Its failure is the 'close' waited for below, and the check's own error after it.
    client.connect().catch(() => {});
  }
  const status = client.status;
  if (status !== 'connecting' && status !== 'connect' && status !== 'reconnecting') return;
  return new Promise<void>((resolve) => {
    const shared = waitOn(client);
    const done = () => {
      shared.checks.delete(done);
      signal.removeEventListener('abort', done);
      // The last check to leave before the client's event takes the listener off it.
      if (shared.checks.size === 0) shared.detach();
      resolve();
    };
    shared.checks.add(done);
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * Fails a check that cannot be answered now: its signal aborted (the set gave up on it), or its
 * client not connected still (refused, or between attempts). INFO sent then waited, with an
 * offline queue (ioredis' default), for a connection, one INFO a check, for as long as Redis was
 * down with `maxRetriesPerRequest: null`; and the check outlived its deadline.
 */
function unanswerable(target: unknown, signal: AbortSignal): void {
  if (signal.aborted) throw signal.reason;
  const { status, once } = target as Connection;
  if (typeof once === 'function' && typeof status === 'string' && connecting.has(status)) {
    throw new Error(`redisRoles: not connected (ioredis status ${status})`);
  }
}

/** A master seen: its offset, when first seen there, when last. */
interface Sighting {
  readonly offset: number;
  readonly at: number;
  until: number;
}

/**
 * A target whose last check said master: its token, when (the check's start), whether its checks
 * fail since, and the token of the master elected over it (as the set fences: until it answers
 * replica or a token that outranks that one).
 */
interface Master {
  token: RedisToken;
  at: number;
  stale: number;
  down: boolean;
  lost: RedisToken | undefined;
}

/**
 * What a `redisRoles()` saw of the masters of its sets: which one is on top now, and the offsets it
 * was seen at, and when. A replica's own figures say lag 0 while its link is up: following a
 * master the set fenced (a split brain, the old master restarted empty), and cut off from its
 * master without a reset (until `repl-timeout`, 60 s) too.
 */
class Masters {
  readonly #now = new Map<object, Master>();
  /** Replication ID -> sightings of its master, oldest first. */
  readonly #seen = new Map<string, Sighting[]>();

  saw(target: object, token: RedisToken, at: number, stale: number): void {
    const was = this.#now.get(target)?.lost;
    const lost = was !== undefined && compareRedisTokens(token, was) <= 0 ? was : undefined;
    this.#now.delete(target); // to the back: the most recent last
    this.#now.set(target, { token, at, stale, down: false, lost });
    if (this.#now.size > 64) this.#now.delete(this.#now.keys().next().value as object);
    const [id, , offset] = token;
    if (!Number.isFinite(offset)) return;
    let list = this.#seen.get(id);
    if (list === undefined) {
      if (this.#seen.size >= 8) this.#seen.delete(this.#seen.keys().next().value as string);
      this.#seen.set(id, (list = []));
    }
    const newest = list.at(-1);
    // One history's offset never goes back: an answer overtaken by a later one says nothing new.
    if (newest !== undefined && newest.offset >= offset) {
      if (newest.offset === offset) newest.until = Math.max(newest.until, at);
      return;
    }
    list.push({ offset, at, until: at });
    if (list.length > 64) thin(list, at);
  }

  /** `target` answered as a replica: no master now. */
  lost(target: object): void {
    this.#now.delete(target);
  }

  /** A check of `target` failed: a master kept, as one whose checks fail (frozen, cut off, dead). */
  down(target: object): void {
    const m = this.#now.get(target);
    if (m !== undefined) m.down = true;
  }

  /**
   * The lag of a replica following `replid` at `offset`, as of `now`, from the masters seen: 0 when
   * none is seen now (its own figures stand). Unknown (undefined) when no one master outranks every
   * other seen now (a split brain), when it follows another history than that master's (a master
   * fenced, or one the set does not list), or when it is behind the first sighting kept of it (for
   * how long, nobody saw). Else the ms since that master was first seen past `offset`; while that
   * master's checks fail, at least the ms since it was last seen at an offset the replica has.
   */
  lag(replid: string, offset: number, now: number): number | undefined {
    const master = this.#elect(now);
    if (master === 0) return 0;
    if (master === undefined || master.token[0] !== replid || !Number.isFinite(offset)) return undefined;
    const list = this.#seen.get(replid) ?? [];
    const i = list.findIndex((s) => s.offset > offset);
    if (i === 0) return undefined;
    const behind = i < 0 ? 0 : Math.max(0, now - (list[i] as Sighting).at);
    const passed = list[i < 0 ? list.length - 1 : i - 1];
    return master.down && passed !== undefined ? Math.max(behind, now - passed.until) : behind;
  }

  /**
   * The master elected among those seen now, as a set elects: of those not outranked since, the one
   * that outranks every other (which are then outranked: a later tie does not unseat it). 0 when none
   * is seen now; undefined when none outranks every other (a split brain).
   */
  #elect(now: number): Master | 0 | undefined {
    const top = new Map<string, Master>();
    let seen = false;
    for (const m of this.#now.values()) {
      if (now - m.at > m.stale) continue;
      seen = true;
      if (m.lost !== undefined) continue;
      const same = top.get(m.token[0]);
      if (same === undefined || compareRedisTokens(m.token, same.token) > 0) top.set(m.token[0], m);
    }
    if (!seen) return 0;
    const masters = [...top.values()];
    const best = masters.filter((m) => masters.every((o) => o === m || compareRedisTokens(m.token, o.token) > 0));
    const master = best.length === 1 ? best[0] : undefined;
    if (master === undefined) return undefined;
    for (const m of this.#now.values())
      if (m !== master && now - m.at <= m.stale && m.lost === undefined) m.lost = master.token;
    return master;
  }
}

/**
 * The `roles` option for Redis servers reached through ioredis clients: `redisRole`,
 * `compareRedisTokens` and `redisClassify`. Other role settings pass through. A replica's lag is
 * raised with what the set's checks saw of the masters (see `Masters.lag`); one checked in its
 * set's first round (`settings.firstRound`) has an unknown lag: the set asks it again once every
 * endpoint has answered.
 *
 * @example
 * const cache = failover({ endpoints: [{ name: 'r1', target: r1 }, { name: 'r2', target: r2 }], roles: redisRoles() });
 * await cache.execute((e) => e.target.set('k', 'v')); // the master
 * await cache.execute((e) => e.target.get('k'), { intent: 'read' }); // a replica
 */
export function redisRoles<T extends RedisInfoSource>(
  options: Omit<RolesOptions, 'check' | 'compare' | 'classify'> = {},
): RedisRolesOptions<T> {
  const masters = new Masters();
  return {
    ...options,
    check: async (endpoint, signal, set) => {
      const every = set?.interval ?? options.interval ?? 2_000;
      const stale = 5 * (every + (set?.timeout ?? options.timeout ?? 1_000));
      // Monotonic: a wall-clock step would make up or hide a lag of its size.
      const started = performance.now();
      let answer: Answer;
      try {
        await firstConnection(endpoint.target, signal);
        unanswerable(endpoint.target, signal);
        answer = await ask(endpoint.target);
      } catch (error) {
        masters.down(endpoint.target);
        throw error;
      }
      const { report } = answer;
      if (report.role === 'primary') {
        masters.saw(endpoint.target, report.token as RedisToken, started, stale);
        return report;
      }
      masters.lost(endpoint.target);
      const own = report.lag;
      if (own === Number.POSITIVE_INFINITY) return report;
      const seen = set?.firstRound ? undefined : masters.lag(answer.replid, answer.offset, started);
      if (own === undefined || seen === undefined) return { role: 'replica', token: report.token };
      return { ...report, lag: Math.max(own, seen) };
    },
    compare: compareRedisTokens,
    classify: redisClassify,
  };
}
