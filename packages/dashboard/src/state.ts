import {
  type AnyListener,
  type BudgetView,
  type Bus,
  breakerStateAfter,
  type EventOf,
  type EventType,
  eventTypes,
  type FailoverView,
  type HealthCheck,
  type HealthReport,
  type HoldfastEvent,
  healthReport,
  hiddenName,
  hideSecrets,
  PassMemo,
  type PolicyRegistry,
  type PolicySnapshot,
  readBreaker,
  readBudget,
  readFailover,
  snapshotErrorLabel,
} from '@holdfast/core';
import { type AnomalyChart, AnomalyCharts } from './anomaly.js';
import { type ChaosView, ChaosWatch } from './chaos.js';
import { type LimitsView, LimitWatch } from './limits.js';

/** One breaker on the page. */
export interface BreakerRow {
  /** The breaker's name. */
  readonly name: string;
  /** Its state: `closed`, `open`, `halfOpen`, `isolated` or `disabled`. */
  readonly state: string;
  /** From the snapshot's window, else the share of failures among the recent calls; null with no calls. */
  readonly failureRate: number | null;
  /** Calls in the breaker's window; null when its snapshot does not say. */
  readonly calls: number | null;
  /** Latency percentiles (ms) from the snapshot; null with no calls in the window. */
  readonly latency: { readonly p50: number | null; readonly p95: number | null; readonly p99: number | null };
  /** When an open breaker lets a probe through (epoch ms); null otherwise. */
  readonly retryAt: number | null;
  /** Latency (ms) of the last calls seen on the bus, oldest first: the sparkline. */
  readonly recent: readonly number[];
}

/** Retry events counted on the bus, per retry policy. */
export interface RetryCounters {
  /** The retry policy's name (the events' `source`). */
  readonly name: string;
  /** Retries made (`retry.attempt` events). */
  readonly attempts: number;
  /** Calls that gave up (`retry.giveUp` events). */
  readonly giveUps: number;
  /** Retries the budget refused (`retry.budgetExhausted` events). */
  readonly budgetRejections: number;
}

/** Idempotency events counted on the bus, per source. */
export interface IdempotencyCounters {
  /** The source of the events: an `idempotent()` function or a middleware. */
  readonly name: string;
  /** Events seen, by the part of their type after `idempotency.`: `claim`, `replay`, `conflict`... */
  readonly counts: { readonly [event: string]: number };
}

/** What `GET <path>/snapshot` returns, and each `snapshot` server-sent event carries. */
export interface DashboardSnapshot {
  /** When the snapshot was made (epoch ms). */
  readonly time: number;
  /** The same report as `healthReport()` and the `/health` handlers. */
  readonly health: HealthReport;
  /** Every breaker, from the registry and from events. */
  readonly breakers: readonly BreakerRow[];
  /** Every failover set registered. */
  readonly failovers: readonly FailoverView[];
  /** Every retry budget registered. */
  readonly budgets: readonly BudgetView[];
  /** Retry counters, per retry policy seen on the bus. */
  readonly retries: readonly RetryCounters[];
  /** Idempotency counters, per source seen on the bus. */
  readonly idempotency: readonly IdempotencyCounters[];
  /** Per key an anomaly watch scores: its metrics with their baselines, anomalies marked. */
  readonly anomalies: readonly AnomalyChart[];
  /** Other registered policies, as their snapshots say. */
  readonly others: readonly { readonly kind: string; readonly name: string; readonly snapshot: unknown }[];
  /** Faults injected on purpose (@holdfast/chaos): never to be mistaken for real ones. */
  readonly chaos: ChaosView;
  /** Bulkheads, rate limiters, adaptive limiters, throttles and hedges, and their refusals on the bus. */
  readonly limits: LimitsView;
  /** The dashboard's own event stream: pages following it, and those it let go. */
  readonly stream: StreamView;
}

/** The event stream's counts, since `dashboard()` was called. */
export interface StreamView {
  /** Pages following the event stream now. */
  readonly clients: number;
  /** Pages dropped for leaving more than `maxBufferedBytes` unsent an interval on, or for not catching up in 30 s. */
  readonly dropped: number;
  /** Pages refused with 503: `maxClients` were following already. */
  readonly refused: number;
}

/** Calls per breaker kept for the sparkline. */
export const SPARK_POINTS = 40;
/** Policies tracked from events alone; past this the oldest are dropped (keys from user input must not grow memory). */
const MAX_TRACKED = 500;

interface Recent {
  state: string | undefined;
  latencies: number[];
  failures: boolean[];
}

interface Bounded<V> {
  /** The value of `name`, made if need be; it becomes the most recently used. */
  touch(name: string): V;
  /** The value of `name` if it is kept; reading does not make it recent, nor make one. */
  peek(name: string): V | undefined;
  delete(name: string): void;
  entries(): IterableIterator<[string, V]>;
}

/** Keeps, per policy name, `make()`; past MAX_TRACKED names the least recently touched goes. */
function bounded<V>(make: () => V): Bounded<V> {
  const map = new Map<string, V>();
  return {
    touch(name) {
      let v = map.get(name);
      if (v !== undefined) map.delete(name);
      else v = make();
      map.set(name, v);
      if (map.size > MAX_TRACKED) map.delete(map.keys().next().value as string);
      return v;
    },
    peek: (name) => map.get(name),
    delete: (name) => void map.delete(name),
    entries: () => map.entries(),
  };
}

/** `snapshot` if JSON can write it, else an error entry: one odd snapshot must not take the page down. */
// A snapshot of a kind the page does not know is served as it is, but for secrets: a URL's
// credentials and secret query parameters (any scheme: redis://, postgres://), and the values
// under keys that name a credential.
const SECRET_KEY =
  /^(?:authorization|proxy-authorization|cookie|set-cookie|password|passwd|secret|client[-_]?secret|token|access[-_]?token|refresh[-_]?token|api[-_]?key)$/i;
/**
 * Words of a key that name a credential, and pairs of words that do: `redisPassword`, `x-api-key`,
 * `secretAccessKey`; in the plural too (`apiKeys`, `tokens`, `sessionTokens`).
 */
const SECRET_WORD =
  /^(?:password|passwd|pwd|pass|passphrase|secret|token|authorization|auth|cookie|credential|apikey)s?$/;
const SECRET_PAIR = /^(?:api key|private key|access key)s?$/;
/** Whether a key names a credential in any of its words (camelCase, snake_case, kebab-case). */
const namesSecret = (key: string): boolean => {
  const words = key
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/);
  return words.some((w, i) => SECRET_WORD.test(w) || SECRET_PAIR.test(`${w} ${words[i + 1]}`));
};
/** A header's name that names a credential (`Authorization`, `X-Api-Key`), in a list. */
const namesCredential = (v: unknown): v is string =>
  typeof v === 'string' && /^[a-z][\w-]{0,63}$/i.test(v) && (SECRET_KEY.test(v) || namesSecret(v));
/** A header's name as a header list holds it: a token (RFC 9110), no space. */
const HEADER_NAME = /^[!#$%&'*+.^\w`|~-]{1,256}$/;
/**
 * Whether `list` is a header list as Node gives it (`rawHeaders`: name, value, name, value): an
 * even length, a header name at each even index, and each credential's name at one, its value no
 * credential's name (`['Authorization', 'Content-Type']` is a list of names).
 */
const isRawHeaders = (list: unknown[]): boolean =>
  list.length % 2 === 0 &&
  list.every((v, i) => (i % 2 === 0 ? typeof v === 'string' && HEADER_NAME.test(v) : !isHeaderNameLike(v, list, i)));
/** An odd item that reads as a name too (`Content-Type` after `Authorization`): then the list is of names. */
const isHeaderNameLike = (v: unknown, list: unknown[], i: number): boolean =>
  namesCredential(list[i - 1]) &&
  typeof v === 'string' &&
  /^[A-Z][a-z\d]*(?:-[A-Z][a-z\d]*)+$|^[a-z]+(?:-[a-z]+)+$/.test(v);
const hideValues = (key: string, value: unknown): unknown => {
  if (SECRET_KEY.test(key) && value !== null && value !== undefined && value !== '') return '***';
  // What a key that names a credential among other words holds: a text, or a list, a map or a
  // Buffer of them (`apiKeys: [...]`, `dbPassword: { primary }`); numbers (`maxTokens`) are no secret.
  if (
    ((typeof value === 'string' && value !== '') || (typeof value === 'object' && value !== null)) &&
    namesSecret(key)
  )
    return '***';
  if (typeof value === 'string') return hideSecrets(value);
  // A key may hold a secret too (stats per target: a DSN, `/callback?access_token=`, `password=`):
  // JSON.stringify shows keys as they are. Hidden as names are (each worked out once).
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const keys = Object.keys(value);
    if (keys.some((k) => hiddenName(k) !== k)) {
      // Two keys that hide alike (pools per database user, by DSN) kept apart as `#2`, `#3`...,
      // as policy names are: merged, one's stats vanished.
      const taken = new Set<string>();
      return Object.fromEntries(
        keys.map((k) => {
          const hidden = hiddenName(k);
          let shown = hidden;
          for (let n = 1; taken.has(shown); ) shown = `${hidden}#${++n}`;
          taken.add(shown);
          return [shown, (value as Record<string, unknown>)[k]];
        }),
      );
    }
  }
  // A header list as Node gives it (`rawHeaders`: name, value, name, value): a value after a
  // credential's name is hidden as the value of a key by that name.
  // Only a list shaped so (an even length, a name at every even index, no name at an odd one):
  // a list of names alone (a CORS allowedHeaders) lost the name after `Authorization`.
  if (Array.isArray(value) && value.some(namesCredential) && isRawHeaders(value)) {
    return value.map((v, i) => {
      const name: unknown = value[i - 1];
      return i % 2 === 1 && namesCredential(name) ? hideValues(name, v) : v;
    });
  }
  return value;
};

function writable(snapshot: unknown): unknown {
  try {
    const text = JSON.stringify(snapshot, hideValues);
    return text === undefined ? null : JSON.parse(text);
  } catch (error) {
    return { error: `snapshot is not JSON (${error instanceof Error ? error.name : typeof error})` };
  }
}

/**
 * Watches the bus for what snapshots do not hold (recent latencies, retry and idempotency
 * counts, the state of breakers nobody registered) and builds the page's snapshot on demand.
 */
export class DashboardState {
  readonly #policies: PolicyRegistry;
  readonly #now: () => number;
  readonly #stream: () => StreamView;
  readonly #critical: ((check: HealthCheck) => boolean) | undefined;
  readonly #breakers = bounded<Recent>(() => ({ state: undefined, latencies: [], failures: [] }));
  readonly #retries = bounded(() => ({ attempts: 0, giveUps: 0, budgetRejections: 0 }));
  readonly #idempotency = bounded((): Record<string, number> => ({}));
  readonly #offs: (() => void)[];
  readonly #anomalies: AnomalyCharts;
  readonly #chaos: ChaosWatch;
  readonly #limits: LimitWatch;
  // The same names come back every build: each is hidden once (a URL is parsed: ~20 µs), however many.
  readonly #texts = new PassMemo(hideSecrets);
  /** The entries of the build under way, as a registry the health report reads: one, so it keeps its names from build to build. */
  #built: PolicySnapshot[] = [];
  readonly #builtRegistry = { snapshots: () => this.#built } as Partial<PolicyRegistry> as PolicyRegistry;
  /**
   * A JSON replacer: every text as core shows it, for what its emitter may not have hidden (a user's
   * own policy on the bus), and a bigint as a number (an event timed with hrtime.bigint()): JSON.stringify throws on one.
   */
  readonly #shown = (_key: string, value: unknown): unknown =>
    typeof value === 'string' ? this.#texts.get(value) : typeof value === 'bigint' ? Number(value) : value;

  constructor(
    bus: Bus,
    policies: PolicyRegistry,
    now: () => number,
    stream: () => StreamView,
    critical?: (check: HealthCheck) => boolean,
  ) {
    this.#policies = policies;
    this.#now = now;
    this.#stream = stream;
    this.#critical = critical;
    // Every listener put on while constructing, taken off if a later on() throws (a user's bus):
    // they fed a dashboard nobody holds, for good.
    const made: (() => void)[] = [];
    const recording: Pick<Bus, 'on'> = {
      on: ((type: '*', listener: AnyListener) => {
        const off = bus.on(type, listener);
        made.push(off);
        return off;
      }) as Bus['on'],
    };
    try {
      this.#anomalies = new AnomalyCharts(recording);
      this.#chaos = new ChaosWatch(recording);
      this.#limits = new LimitWatch(recording);
      this.#offs = this.#listen(recording, policies);
    } catch (error) {
      for (const off of made) off();
      throw error;
    }
  }

  /** Listens for what snapshots do not hold; returns what takes each listener off. */
  #listen(bus: Pick<Bus, 'on'>, policies: PolicyRegistry): (() => void)[] {
    const call = (failed: boolean) => (e: { source: string; latency: number }) => {
      // A user's own policy may time its calls otherwise (hrtime.bigint(): a bigint of ns): not a point of the sparkline.
      if (typeof e.latency !== 'number' || !Number.isFinite(e.latency) || e.latency < 0) return;
      const r = this.#breakers.touch(e.source);
      r.latencies.push(e.latency);
      r.failures.push(failed);
      if (r.latencies.length > SPARK_POINTS) {
        r.latencies.shift();
        r.failures.shift();
      }
    };
    const transition = (e: EventOf<keyof typeof breakerStateAfter>) => {
      this.#breakers.touch(e.source).state = breakerStateAfter[e.type];
    };
    const handlers: { [K in EventType]?: (event: EventOf<K>) => void } = {
      'breaker.success': call(false),
      'breaker.failure': call(true),
      'breaker.open': transition,
      'breaker.halfOpen': transition,
      'breaker.close': transition,
      'breaker.isolate': transition,
      'breaker.disable': transition,
      'retry.attempt': (e) => void this.#retries.touch(e.source).attempts++,
      'retry.giveUp': (e) => void this.#retries.touch(e.source).giveUps++,
      'retry.budgetExhausted': (e) => void this.#retries.touch(e.source).budgetRejections++,
    };
    for (const type of eventTypes) {
      if (!type.startsWith('idempotency.')) continue;
      const field = type.slice('idempotency.'.length);
      (handlers as Record<string, (e: HoldfastEvent) => void>)[type] = (e) => {
        const counts = this.#idempotency.touch(e.source);
        counts[field] = (counts[field] ?? 0) + 1;
      };
    }
    const on = bus.on.bind(bus) as (type: EventType, listener: (event: HoldfastEvent) => void) => () => void;
    const offs = Object.entries(handlers).map(([type, h]) =>
      on(type as EventType, h as (event: HoldfastEvent) => void),
    );
    // A breaker that leaves the registry (disposed, evicted from a breakerRegistry) is gone:
    // its last state must not keep it on the page, listed open forever.
    if (typeof policies.onUnregister === 'function') {
      // Per kind: a breaker leaves the page when the last breaker of its name goes, whether or not
      // a failover set of that name stays (listed open for good, it was).
      offs.push(
        policies.onUnregister(
          (kind, name) => {
            if (kind === 'breaker') this.#breakers.delete(name);
          },
          { perKind: true },
        ),
      );
    }
    return offs;
  }

  snapshot(): DashboardSnapshot {
    // A list, not a map by name: two breakers registered under one name are two rows (one may be open).
    const breakers: BreakerRow[] = [];
    const registered = new Set<string>();
    const failovers: FailoverView[] = [];
    const budgets: BudgetView[] = [];
    const others: { kind: string; name: string; snapshot: unknown }[] = [];
    const entries = this.#policies.snapshots();
    // The health report reads the same entries: each snapshot() is called once per build.
    this.#built = entries;
    let health: HealthReport;
    try {
      health = healthReport({ policies: this.#builtRegistry, critical: this.#critical });
    } finally {
      this.#built = [];
    }
    this.#limits.begin();
    for (const entry of entries) {
      const { kind, name, snapshot } = entry;
      try {
        const b = kind === 'breaker' ? readBreaker(name, snapshot) : undefined;
        const f = kind === 'failover' ? readFailover(name, snapshot) : undefined;
        const g = kind === 'budget' ? readBudget(name, snapshot) : undefined;
        if (b) {
          breakers.push(Object.assign({}, b, this.#recent(name, b.failureRate)));
          registered.add(name);
        } else if (f) failovers.push(f);
        else if (g) budgets.push(g);
        else if (entry.error === undefined && this.#limits.take(kind, name, snapshot)) continue;
        else
          others.push({
            kind,
            name,
            snapshot: entry.error === undefined ? writable(snapshot) : { error: entry.error },
          });
      } catch (error) {
        // Its fields throw when read (a getter on a closed pool): listed as one whose snapshot() threw.
        others.push({ kind, name, snapshot: { error: snapshotErrorLabel(error) } });
      }
    }
    for (const [name, r] of this.#breakers.entries()) {
      if (registered.has(name) || r.state === undefined) continue;
      const none = { p50: null, p95: null, p99: null };
      breakers.push({
        name,
        state: r.state,
        calls: null,
        latency: none,
        retryAt: null,
        ...this.#recent(name, null),
      });
    }
    const counted = <V>(m: { entries(): IterableIterator<[string, V]> }) =>
      [...m.entries()].map(([name, v]) => ({ name, ...v }));
    return {
      time: this.#now(),
      health,
      breakers,
      failovers,
      budgets,
      retries: counted(this.#retries),
      idempotency: [...this.#idempotency.entries()].map(([name, counts]) => ({ name, counts: { ...counts } })),
      anomalies: this.#anomalies.charts(),
      others,
      chaos: this.#chaos.view(),
      limits: this.#limits.view(),
      stream: this.#stream(),
    };
  }

  #recent(name: string, failureRate: number | null): { recent: number[]; failureRate: number | null } {
    const r = this.#breakers.peek(name);
    if (r === undefined) return { recent: [], failureRate };
    const failed = r.failures.filter(Boolean).length;
    const rate = failureRate ?? (r.failures.length > 0 ? failed / r.failures.length : null);
    return { recent: [...r.latencies], failureRate: rate };
  }

  /** The snapshot as JSON text; never throws, whatever a registered snapshot or an event holds. */
  json(): string {
    let built: Partial<DashboardSnapshot> = {};
    try {
      return this.#texts.pass(() => JSON.stringify((built = this.snapshot()), this.#shown));
    } catch (error) {
      return this.#partial(built, error);
    }
  }

  /**
   * What can be shown of a snapshot that failed (a cycle in an event's field, a `toJSON` that
   * throws): each part JSON can write, an empty one for the others, and a check that says so. Any
   * snapshot of this shape renders: `{ time, error }` alone made the page's render() throw.
   */
  #partial(built: Partial<DashboardSnapshot>, error: unknown): string {
    // No message: it may quote what a snapshot holds.
    const why = `snapshot failed (${snapshotErrorLabel(error)})`;
    const now = this.#now();
    let health = built.health;
    try {
      health ??= healthReport({ policies: this.#policies, critical: this.#critical });
    } catch {
      // As the /health handlers answer when the report throws.
      health = { status: 'fail', ready: false, time: now, checks: [] };
    }
    const check: HealthCheck = { kind: 'dashboard', name: 'snapshot', status: 'warn', reason: why };
    const fallback: DashboardSnapshot = {
      time: now,
      health: {
        ...health,
        status: health.status === 'pass' ? 'warn' : health.status,
        checks: [...health.checks, check],
      },
      breakers: [],
      failovers: [],
      budgets: [],
      retries: [],
      idempotency: [],
      anomalies: [],
      others: [],
      chaos: { active: false, injected: [], toxics: [], drill: null },
      limits: { bulkheads: [], rateLimiters: [], adaptive: [], throttles: [], hedges: [], events: [] },
      stream: built.stream ?? { clients: 0, dropped: 0, refused: 0 },
    };
    const parts = Object.entries(fallback).map(([key, empty]) => {
      const part = key === 'time' || key === 'health' ? empty : (built[key as keyof DashboardSnapshot] ?? empty);
      let text: string | undefined;
      try {
        text = JSON.stringify(part, this.#shown);
      } catch {
        text = JSON.stringify(empty);
      }
      return `${JSON.stringify(key)}:${text ?? 'null'}`;
    });
    return `{${parts.join(',')},"error":${JSON.stringify(why)}}`;
  }

  /** An event as JSON text, every text in it shown as in the snapshot. */
  eventJson(event: HoldfastEvent): string {
    return JSON.stringify(event, this.#shown);
  }

  dispose(): void {
    this.#anomalies.dispose();
    for (const off of this.#offs.splice(0)) off();
    this.#chaos.dispose();
    this.#limits.dispose();
  }
}
