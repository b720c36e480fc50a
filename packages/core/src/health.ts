import { z } from 'zod';
import { hiddenName, PassMemo } from './cap.js';
import { type Clock, realClock } from './clock.js';
import { clockOption, fnOption, parseOptions } from './options.js';
import {
  policies as globalPolicies,
  type PolicyRegistry,
  type PolicySnapshot,
  snapshotErrorLabel,
} from './registry.js';
import type { JsonValue } from './snapshot.js';

/**
 * The fields of each kind of snapshot that holdfast's health, dashboard and metrics read. A
 * snapshot may carry more; a missing optional field reads as null. These readers are the one
 * place that knows the shapes.
 */

/** A breaker's snapshot, as read: `state` is required, the rest optional. */
export interface BreakerView {
  /** The name the breaker was registered under. */
  readonly name: string;
  /** `closed`, `open`, `halfOpen`, `isolated`, `disabled` (or any other string a breaker reports). */
  readonly state: string;
  /** From `window.failureRate` (0..1). */
  readonly failureRate: number | null;
  /** From `window.calls`. */
  readonly calls: number | null;
  /** From `window.rejects`. */
  readonly rejects: number | null;
  /** From `latency.p50`, `latency.p95`, `latency.p99` (ms). */
  readonly latency: { readonly p50: number | null; readonly p95: number | null; readonly p99: number | null };
  /** From `retryAt` (epoch ms): when an open breaker lets a probe through. */
  readonly retryAt: number | null;
}

/** One endpoint of a failover snapshot, as read from `endpoints[i]`. */
export interface EndpointView {
  /** The endpoint's name. */
  readonly name: string;
  /**
   * From `role`: `active`, `standby`, `member`, `drained`; with role discovery, what was
   * discovered instead: `primary`, `replica`, `fenced` (claims primary, never written to), `unreachable`.
   */
  readonly role: string | null;
  /** From `health`: the verdict of active health checks. */
  readonly health: string | null;
  /** From `available`; without it, up unless `health` is `unhealthy` or `ejection` is `ejected`. */
  readonly up: boolean;
  /** From `ejection`: `none`, `ejected`, `probe`. */
  readonly ejection: string | null;
  /** From `inFlight`. */
  readonly inFlight: number | null;
}

/** A failover set's snapshot, as read: `endpoints` is required. */
export interface FailoverView {
  /** The name the failover set was registered under. */
  readonly name: string;
  /** From `mode`. */
  readonly mode: string | null;
  /** From `active`: the endpoint taking traffic in active-passive. */
  readonly active: string | null;
  /** From `panic`. */
  readonly panic: boolean;
  /** From `splitBrain`: the endpoints whose primary claims tie (no write goes to any), and since when (epoch ms). */
  readonly splitBrain: { readonly endpoints: readonly string[]; readonly since: number } | null;
  /** Every endpoint of the set, in snapshot order. */
  readonly endpoints: readonly EndpointView[];
}

/** A retry budget's snapshot, as read: `balance` or `exhausted` is required. */
export interface BudgetView {
  /** The name the budget was registered under. */
  readonly name: string;
  /** From `balance`: retries the budget would let through now. */
  readonly balance: number | null;
  /** From `refused`: retries refused so far. */
  readonly refused: number | null;
  /** From `exhausted` when present, else `balance <= 0`. */
  readonly exhausted: boolean;
}

/** The states a breaker reports, in the order gauges list them. */
export const breakerStates = ['closed', 'open', 'halfOpen', 'isolated', 'disabled'] as const;

/** The state a breaker is in after each transition event. */
export const breakerStateAfter = {
  'breaker.open': 'open',
  'breaker.halfOpen': 'halfOpen',
  'breaker.close': 'closed',
  'breaker.isolate': 'isolated',
  'breaker.disable': 'disabled',
} as const satisfies Record<string, (typeof breakerStates)[number]>;

type JsonObject = { readonly [key: string]: JsonValue };

function asObject(value: JsonValue | undefined): JsonObject | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as JsonObject) : undefined;
}
function num(value: JsonValue | undefined): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}
function str(value: JsonValue | undefined): string | null {
  return typeof value === 'string' ? value : null;
}

/** Reads a breaker snapshot; undefined when it has no string `state`. */
export function readBreaker(name: string, snapshot: JsonValue): BreakerView | undefined {
  const s = asObject(snapshot);
  const state = str(s?.state);
  if (s === undefined || state === null) return undefined;
  const window = asObject(s.window);
  const latency = asObject(s.latency);
  return {
    name,
    state,
    failureRate: num(window?.failureRate),
    calls: num(window?.calls),
    rejects: num(window?.rejects),
    latency: { p50: num(latency?.p50), p95: num(latency?.p95), p99: num(latency?.p99) },
    retryAt: num(s.retryAt),
  };
}

/** Reads a failover snapshot; undefined when it has no `endpoints` array. */
export function readFailover(name: string, snapshot: JsonValue): FailoverView | undefined {
  const s = asObject(snapshot);
  if (s === undefined || !Array.isArray(s.endpoints)) return undefined;
  const endpoints: EndpointView[] = [];
  for (const raw of s.endpoints as readonly JsonValue[]) {
    const e = asObject(raw);
    const endpointName = str(e?.name);
    if (e === undefined || endpointName === null) continue;
    const health = str(e.health);
    const ejection = str(e.ejection);
    const up = typeof e.available === 'boolean' ? e.available : health !== 'unhealthy' && ejection !== 'ejected';
    // A discovered role (primary, replica, fenced, unreachable) says more than the set's own, but
    // a drained endpoint stays drained.
    const setRole = str(e.role);
    const role = setRole === 'drained' ? setRole : (str(e.discovered) ?? setRole);
    endpoints.push({ name: endpointName, role, health, up, ejection, inFlight: num(e.inFlight) });
  }
  const split = asObject(s.splitBrain);
  const since = num(split?.since);
  const tied = Array.isArray(split?.endpoints) ? (split.endpoints as readonly JsonValue[]) : [];
  const splitBrain = since === null ? null : { endpoints: tied.filter((n) => typeof n === 'string'), since };
  return { name, mode: str(s.mode), active: str(s.active), panic: s.panic === true, splitBrain, endpoints };
}

/** Reads a budget snapshot; undefined when it has neither `balance` nor `exhausted`. */
export function readBudget(name: string, snapshot: JsonValue): BudgetView | undefined {
  const s = asObject(snapshot);
  const balance = num(s?.balance);
  if (s === undefined || (balance === null && typeof s.exhausted !== 'boolean')) return undefined;
  const exhausted = typeof s.exhausted === 'boolean' ? s.exhausted : (balance ?? 1) <= 0;
  return { name, balance, refused: num(s.refused), exhausted };
}

/** `pass`: all is well. `warn`: degraded, still ready. `fail`: not ready. */
export type HealthStatus = 'pass' | 'warn' | 'fail';

/** The verdict on one registered policy. */
export interface HealthCheck {
  /** The registered kind: `breaker`, `failover`, `budget`, or one of your own. */
  readonly kind: string;
  /** The name the policy was registered under. */
  readonly name: string;
  /** This check's verdict. */
  readonly status: HealthStatus;
  /** Why, in a few words: `open`, `2 of 3 endpoints down`, `budget exhausted`; names in it are hidden as `name` is. */
  readonly reason: string;
}

/** What `healthReport()` returns, and the `/health` handlers serve. */
export interface HealthReport {
  /** The worst status of any check; `pass` with no checks. */
  readonly status: HealthStatus;
  /** False when any check fails: serve 503 and take the instance out of rotation. */
  readonly ready: boolean;
  /** When the report was made (epoch ms). */
  readonly time: number;
  /** One check per registered policy, in registration order. */
  readonly checks: readonly HealthCheck[];
}

/** Options of {@link healthReport}. */
export interface HealthReportOptions {
  /** Where the policies are registered. @default the process-wide registry */
  readonly policies?: PolicyRegistry;
  /**
   * Whether a failing check makes the instance not ready. A non-critical `fail` counts as `warn`:
   * e.g. `(c) => c.kind !== 'breaker'` keeps an instance in rotation while a breaker is open.
   * @default every check is critical
   */
  readonly critical?: (check: HealthCheck) => boolean;
  /** @default the real clock */
  readonly clock?: Clock;
}

/** Validates {@link HealthReportOptions}: a typo or a wrong registry is an error, not a report that always fails. */
export const healthReportOptionsSchema = z.strictObject({
  policies: z
    .custom<PolicyRegistry>((v) => typeof (v as PolicyRegistry | null)?.snapshots === 'function', {
      error: 'must be a PolicyRegistry (from createPolicyRegistry())',
    })
    .optional(),
  critical: fnOption<(check: HealthCheck) => boolean>().optional(),
  clock: clockOption.optional(),
}) satisfies z.ZodType<HealthReportOptions>;

const rank: Record<HealthStatus, number> = { pass: 0, warn: 1, fail: 2 };
/** Each registry's names as its last report showed them: a report hides only the names that are new. */
const shownNames = new WeakMap<PolicyRegistry, PassMemo>();

/**
 * Gathers every registered snapshot into a readiness verdict. A breaker open or isolated fails,
 * half-open warns; a failover set with no endpoint up fails, with some down, in panic or in a
 * split brain warns;
 * an exhausted retry budget warns. Other kinds fail or warn when their snapshot says
 * `status: 'fail' | 'warn'` or `healthy: false` (which fails).
 */
export function healthReport(options: HealthReportOptions = {}): HealthReport {
  parseOptions('healthReport', healthReportOptionsSchema, options);
  const registry = options.policies ?? globalPolicies;
  const critical = options.critical ?? (() => true);
  let names = shownNames.get(registry);
  if (names === undefined) shownNames.set(registry, (names = new PassMemo(hiddenName)));
  const shown = names;
  const checks = shown.pass(() =>
    registry.snapshots().map((entry) => {
      const check = judgeSafely(entry);
      let status = check.status;
      let reason = check.reason;
      try {
        if (status === 'fail' && !critical(check)) status = 'warn';
      } catch (error) {
        // A critical() that throws (a per-name table that does not know a new breaker) must not take
        // the report down: the check counts as critical, as it does with no critical() at all.
        reason = `${reason} (critical() threw ${snapshotErrorLabel(error)})`;
      }
      // Served to anyone (/health): a policy named by its connection URL is listed without its password.
      return { ...check, name: shown.get(check.name), status, reason };
    }),
  );
  const status = checks.reduce<HealthStatus>((worst, c) => (rank[c.status] > rank[worst] ? c.status : worst), 'pass');
  return { status, ready: status !== 'fail', time: (options.clock ?? realClock).now(), checks };
}

/**
 * A snapshot whose fields throw when read (a getter on a connection closed meanwhile) is one that
 * threw: a `warn`, never a report that throws, nor an instance taken out of rotation by it.
 */
function judgeSafely(entry: PolicySnapshot): HealthCheck {
  try {
    return judge(entry);
  } catch (error) {
    return {
      kind: entry.kind,
      name: entry.name,
      status: 'warn',
      reason: `snapshot failed: ${snapshotErrorLabel(error)}`,
    };
  }
}

function judge(entry: PolicySnapshot): HealthCheck {
  const { kind, name, snapshot } = entry;
  const check = (status: HealthStatus, reason: string): HealthCheck => ({ kind, name, status, reason });
  if (entry.error !== undefined) return check('warn', `snapshot failed: ${entry.error}`);
  if (kind === 'breaker') {
    const b = readBreaker(name, snapshot);
    if (b === undefined) return check('warn', 'unreadable breaker snapshot');
    if (b.state === 'open' || b.state === 'isolated') return check('fail', b.state);
    // Any string a breaker of a user's reports: shown as names are.
    return check(b.state === 'halfOpen' ? 'warn' : 'pass', hiddenName(b.state));
  }
  if (kind === 'failover') {
    const f = readFailover(name, snapshot);
    if (f === undefined) return check('warn', 'unreadable failover snapshot');
    // A drained endpoint was taken out on purpose: it is neither up nor down.
    const serving = f.endpoints.filter((e) => e.role !== 'drained');
    const down = serving.filter((e) => !e.up).length;
    if (serving.length === 0 || down === serving.length) return check('fail', 'no endpoint up');
    // Writes are held, reads go on. Every instance sees the same database: failing readiness would
    // take them all out of rotation, reads too, and no instance can end it (the operator must).
    // Endpoints named by their URL: each hidden apart (hidden as one text, all but the last went).
    if (f.splitBrain !== null)
      return check('warn', `split brain: ${f.splitBrain.endpoints.map(hiddenName).join(', ')} tie, no writes`);
    if (down > 0) return check('warn', `${down} of ${serving.length} endpoints down`);
    return f.panic ? check('warn', 'panic') : check('pass', `${serving.length} endpoints up`);
  }
  if (kind === 'budget') {
    const b = readBudget(name, snapshot);
    if (b === undefined) return check('warn', 'unreadable budget snapshot');
    return b.exhausted ? check('warn', 'budget exhausted') : check('pass', `balance ${b.balance ?? 'unknown'}`);
  }
  return judgeOther(check, snapshot);
}

function judgeOther(check: (status: HealthStatus, reason: string) => HealthCheck, snapshot: JsonValue): HealthCheck {
  const s = asObject(snapshot);
  const said = str(s?.status);
  if (said === 'fail' || said === 'warn' || said === 'pass') return check(said, `reports ${said}`);
  if (s?.healthy === false) return check('fail', 'reports unhealthy');
  return check('pass', 'ok');
}
