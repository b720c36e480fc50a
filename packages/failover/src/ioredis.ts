/**
 * Role discovery and error classes for Redis through `ioredis`: pass `roles: redisRoles()` to
 * `failover()` with one ioredis client per server as targets. Only types are used: nothing is
 * imported at load.
 * @module @holdfast/failover/ioredis
 */
import type { Endpoint } from './endpoint.js';
import type { RolesOptions } from './options.js';
import type { ErrorClass, RoleReport } from './roles.js';

/** What `redisRoles()` needs of a target: an ioredis `Redis` client is one. */
export interface RedisInfoSource {
  /** `INFO replication`, as text. */
  info(section: 'replication'): Promise<string>;
}

/** The `roles` option of a set of Redis servers, for `Endpoint<T>`s whose target is `T`. */
export type RedisRolesOptions<T> = Omit<RolesOptions, 'check' | 'compare' | 'classify'> & {
  readonly check: (endpoint: Endpoint<T>, signal: AbortSignal) => Promise<RoleReport>;
  readonly compare: (a: unknown, b: unknown) => number;
  readonly classify: (error: unknown) => ErrorClass;
};

/**
 * A Redis server's place in its replication history: its replication ID, the ID it had before its
 * last promotion (`replid2`), and its offset. A promoted replica keeps its old master's ID as
 * `replid2`, which is how a promoted node outranks the master it left.
 */
export type RedisToken = readonly [replid: string, replid2: string, offset: number];

const noId = '0000000000000000000000000000000000000000';

function field(info: string, name: string): string | undefined {
  const match = new RegExp(`^${name}:(.*)$`, 'm').exec(info);
  return match?.[1]?.trim();
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
 * offset], lag }`. A replica's lag is 0 while its link to the master is up, else the time since
 * the link went down. `Infinity` (never read) when its link has not been up since it started or
 * stopped being a master (`master_link_down_since_seconds:-1`): restarted without persistence it
 * is empty; an old master the Sentinels demoted holds writes its new master never had. Either
 * serves what it holds until its first sync ends.
 */
export async function redisRole(client: RedisInfoSource): Promise<RoleReport> {
  const info = await replication(client);
  const role = field(info, 'role');
  if (role !== 'master' && role !== 'slave') throw new Error(`unexpected INFO replication role: ${String(role)}`);
  const token: RedisToken = [
    field(info, 'master_replid') ?? noId,
    field(info, 'master_replid2') ?? noId,
    Number(field(info, 'master_repl_offset') ?? 0),
  ];
  if (role === 'master') return { role: 'primary', token };
  if (field(info, 'master_link_status') === 'up') return { role: 'replica', token, lag: 0 };
  const down = Number(field(info, 'master_link_down_since_seconds'));
  if (down === -1) return { role: 'replica', token, lag: Number.POSITIVE_INFINITY };
  return Number.isFinite(down) && down >= 0 ? { role: 'replica', token, lag: down * 1000 } : { role: 'replica', token };
}

/**
 * Orders two masters' tokens: the one that was promoted from the other's history (its `replid2`
 * is the other's `replid`) is newer; within one history (the same `replid`), the higher offset.
 * Offsets of unrelated histories are never compared: they say how much a master was written,
 * not whether it is the one to write to (a stale master that took writes alone runs ahead of one
 * promoted twice since). Of two unrelated histories, a master promoted from some history (its
 * `replid2` set) outranks one never promoted (the old master, or a node restarted empty): a
 * promotion is what a failover leaves behind. Otherwise they tie (0): neither is written to.
 */
export function compareRedisTokens(a: unknown, b: unknown): number {
  const [ida, prevA, offA] = a as RedisToken;
  const [idb, prevB, offB] = b as RedisToken;
  if (prevA !== noId && prevA === idb) return 1;
  if (prevB !== noId && prevB === ida) return -1;
  if (ida !== idb) return prevA === noId && prevB !== noId ? -1 : prevA !== noId && prevB === noId ? 1 : 0;
  return offA === offB ? 0 : offA < offB ? -1 : 1;
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

/**
 * The `roles` option for Redis servers reached through ioredis clients: `redisRole`,
 * `compareRedisTokens` and `redisClassify`. Other role settings pass through.
 *
 * @example
 * const cache = failover({ endpoints: [{ name: 'r1', target: r1 }, { name: 'r2', target: r2 }], roles: redisRoles() });
 * await cache.execute((e) => e.target.set('k', 'v')); // the master
 * await cache.execute((e) => e.target.get('k'), { intent: 'read' }); // a replica
 */
export function redisRoles<T extends RedisInfoSource>(
  options: Omit<RolesOptions, 'check' | 'compare' | 'classify'> = {},
): RedisRolesOptions<T> {
  return {
    ...options,
    check: async (endpoint, signal) => {
      await firstConnection(endpoint.target, signal);
      unanswerable(endpoint.target, signal);
      return redisRole(endpoint.target);
    },
    compare: compareRedisTokens,
    classify: redisClassify,
  };
}
