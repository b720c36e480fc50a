/**
 * Every event holdfast emits, in one place. docs/events.md describes each one; a test checks
 * that it lists every type here.
 */

/** The error code an event reports: a holdfast `code`, a Node system code, or the error's name. */
export type ErrorLabel = string | undefined;

/** Fields of each event, by type. Every event also has `type`, `source` and `time`. */
export interface EventFields {
  /** A `timeout()` policy's deadline passed. */
  timeout: { readonly timeout: number; readonly strategy: 'cooperative' | 'aggressive' };

  /** A breaker opened: calls are now rejected until `retryAt`. */
  'breaker.open': {
    readonly reason: 'failureRate' | 'slowCallRate' | 'consecutiveFailures' | 'halfOpenFailure' | 'manual' | 'restored';
    /** Failures / calls in the window when it opened. */
    readonly failureRate: number;
    /** Slow successes / calls in the window when it opened. */
    readonly slowCallRate: number;
    readonly retryAt: number | undefined;
    /** Opens in a row without a close by probes (what `openFor` growth counts), 1 for the first. */
    readonly opens: number;
    /** The code of the failure that opened it, if a failure did. */
    readonly code: ErrorLabel;
  };
  /** A breaker lets probes through to test the downstream. */
  'breaker.halfOpen': Record<never, never>;
  /** A breaker closed: calls flow again. */
  'breaker.close': { readonly reason: 'probes' | 'manual' };
  /** A breaker was isolated (forced open) by hand. */
  'breaker.isolate': Record<never, never>;
  /** A breaker was disabled: it lets every call through and records nothing. */
  'breaker.disable': Record<never, never>;
  /** A call was refused because the breaker is open, isolated, or out of half-open probes. */
  'breaker.reject': {
    readonly state: 'open' | 'halfOpen' | 'isolated';
    readonly retryAt: number | undefined;
    readonly code: 'E_CIRCUIT_OPEN';
    /** Whether the breaker's fallback served the call. */
    readonly fallback: boolean;
  };
  /** A call through a breaker succeeded. */
  'breaker.success': { readonly latency: number };
  /** A call through a breaker failed (as `isFailure` judged it). */
  'breaker.failure': { readonly latency: number; readonly code: ErrorLabel };
  /** A call through a breaker succeeded, but slower than `slowCall.duration`. */
  'breaker.slow': { readonly latency: number; readonly threshold: number };

  /** A retry policy will run attempt `attempt` (2 for the first retry) after `delay` ms. */
  'retry.attempt': { readonly attempt: number; readonly delay: number; readonly code: ErrorLabel };
  /** A retry policy stopped trying: it passes the last error on, or returns the last result. */
  'retry.giveUp': {
    readonly attempts: number;
    readonly reason: 'maxAttempts' | 'maxElapsed' | 'retryAfter' | 'notRetryable' | 'aborted' | 'budget' | 'disposed';
    readonly code: ErrorLabel;
  };
  /** The retry budget refused attempt `attempt`; a `retry.giveUp` (reason `budget`) follows. */
  'retry.budgetExhausted': { readonly attempt: number; readonly code: ErrorLabel };

  /** A key was claimed: the operation runs now. `takeover`: a previous owner's lease had run out. */
  'idempotency.claim': { readonly key: string; readonly takeover: boolean };
  /** A completed key was seen again: the stored result was replayed. `createdAt`: its first claim. */
  'idempotency.replay': { readonly key: string; readonly createdAt: number };
  /** A key was seen while its first execution was still running. `waited`: after a bounded wait. */
  'idempotency.conflict': { readonly key: string; readonly waited: boolean };
  /** A key was reused with a different request fingerprint. */
  'idempotency.mismatch': { readonly key: string };
  /** The operation failed, so its key was released: nothing is stored, and a retry runs again. */
  'idempotency.release': { readonly key: string; readonly code: ErrorLabel };
  /** A key whose owner's lease had run out (a crash, a hang) was taken over by a new run. */
  'idempotency.takeover': { readonly key: string };
  /**
   * HTTP: the handler ran but its response was lost (its client left before it ended, or it was
   * written where it was not seen): the response-lost problem (500) is stored for the key, so a
   * retry gets that, never a second run. `sent`: the status the client was sent, if any.
   */
  'idempotency.lost': { readonly key: string; readonly sent: number | undefined };
  /** An owner finished after its key was taken over (or expired): its result was not stored. */
  'idempotency.staleCompletion': { readonly key: string };
  /**
   * A live run stopped renewing its key's lease. `notOwner`: the store said its token no longer
   * owns the key (its process was frozen or cut off past the lease, and a retry took it over):
   * its completion will be refused. `maxRunMs`: it ran past `maxRunMs`, so its verdict was stored
   * (`aborted` for `idempotent()`, the response-lost problem over HTTP): a retry gets that.
   */
  'idempotency.leaseLost': { readonly key: string; readonly reason: 'notOwner' | 'maxRunMs' };
  /**
   * The idempotency store failed during `operation`. `failOpen`: the call went on without the
   * store (a claim under `fail-open`, or a completion after the operation ran).
   */
  'idempotency.storeError': {
    readonly key: string;
    readonly operation: 'claim' | 'complete' | 'release' | 'extend';
    readonly code: ErrorLabel;
    readonly failOpen: boolean;
  };

  /** An endpoint was ejected from its failover set until `until`. */
  'failover.eject': {
    readonly endpoint: string;
    readonly until: number;
    readonly ejections: number;
    /** `failures` (consecutive failed calls), `failureRate` (`ejection.failureRate`), or the reason given to `eject()` (`manual` by default). */
    readonly reason?: string;
  };
  /** An ejected endpoint was taken back into its set. */
  'failover.restore': { readonly endpoint: string };
  /** Traffic moved from one endpoint (or priority) to another. */
  'failover.switch': {
    readonly from: string | undefined;
    readonly to: string;
    readonly reason: 'failover' | 'failback' | 'manual';
  };
  /** Too few endpoints are healthy: the set entered (or left) panic. */
  'failover.panic': { readonly healthy: number; readonly total: number; readonly active: boolean };
  /** An active health check changed its verdict on an endpoint. */
  'health.change': { readonly endpoint: string; readonly healthy: boolean };

  /**
   * A chaos policy injected a fault into a call on purpose (`@holdfast/chaos`): not a real
   * failure. `detail` says what, e.g. `+250 ms`, `E_INJECTED_FAULT`, `503`.
   */
  'chaos.inject': {
    readonly kind: 'latency' | 'fault' | 'outcome' | 'behavior' | 'fetch';
    readonly detail: string;
  };
  /** A fault proxy's toxic was put on (`active`) or taken off, in front of `target` (host:port). */
  'chaos.toxic': {
    readonly toxic: string;
    readonly name: string;
    readonly direction: 'upstream' | 'downstream' | 'both';
    readonly active: boolean;
    readonly target: string;
  };
  /** A drill started, played a step, or ended (`passed` then says whether its objectives held). */
  'chaos.drill': {
    readonly phase: 'start' | 'step' | 'end';
    readonly step: string | undefined;
    readonly passed: boolean | undefined;
  };
  /** A fallback served the call in place of a failure or of a result its predicate refused. */
  fallback: { readonly reason: 'failure' | 'result'; readonly code: ErrorLabel };
  /** A hedge policy sent attempt `attempt` (2 for the first hedge) after `delay` ms. */
  'hedge.attempt': { readonly attempt: number; readonly delay: number; readonly trigger: 'delay' | 'failure' };
  /** A hedge was due but its budget refused it: the call waits on the attempts already sent. */
  'hedge.budgetExhausted': { readonly attempt: number };
  /** A bulkhead refused a call: no free slot and a full queue, or the queue wait ran out. */
  'bulkhead.reject': {
    readonly reason: 'full' | 'queueTimeout';
    readonly running: number;
    readonly queued: number;
    readonly code: 'E_BULKHEAD_FULL';
  };
  /** A rate limiter refused a call; it may try again after `retryAfter` ms. */
  'rateLimit.reject': { readonly retryAfter: number; readonly code: 'E_RATE_LIMITED' };
  /** A Redis rate limiter could not reach Redis; `failOpen`: the call went on without a decision. */
  'rateLimit.storeError': { readonly code: ErrorLabel; readonly failOpen: boolean };
  /** An adaptive concurrency limiter moved its limit (reported when the whole number changes). */
  'concurrency.limit': {
    readonly algorithm: 'gradient2' | 'aimd' | 'vegas';
    readonly from: number;
    readonly to: number;
    /** The mean latency of the window of calls that moved it, ms. */
    readonly latency: number;
  };
  /** An adaptive concurrency limiter refused a call: `inFlight` calls already run at its `limit`. */
  'concurrency.reject': { readonly limit: number; readonly inFlight: number; readonly code: 'E_CONCURRENCY_LIMIT' };
  /** Client-side adaptive throttling refused a call locally, with `probability`. */
  'throttle.reject': { readonly probability: number; readonly code: 'E_THROTTLED' };
  /**
   * An anomaly watch summed one interval of a key's calls (a breaker, an endpoint, a policy) and
   * scored it. `score` is the highest of its detectors' scores (0..1, 0.5 is the threshold).
   */
  'anomaly.score': {
    readonly key: string;
    readonly score: number;
    /** Whether any of the key's detectors holds an anomaly raised. */
    readonly raised: boolean;
    /** Each metric's value this interval, what its baseline expected, and its score. */
    readonly metrics: readonly AnomalyMetric[];
  };
  /** A detector raised an anomaly on a key: `metric` departed from `expected`. */
  'anomaly.detected': {
    readonly key: string;
    /** `baseline` (one metric's robust baseline) or `forest` (all metrics together). */
    readonly detector: 'baseline' | 'forest';
    /** The metric that departed (for the forest, the one that departed most). */
    readonly metric: string;
    readonly score: number;
    readonly value: number;
    /** The baseline the value departed from. */
    readonly expected: number;
  };
  /** A detector's anomaly on a key cleared (its score stayed low long enough, or the key was forgotten). */
  'anomaly.cleared': {
    readonly key: string;
    readonly detector: 'baseline' | 'forest';
    readonly metric: string;
    /** How long the anomaly was raised, in ms. */
    readonly duration: number;
    /**
     * `recovered`: its score stayed low long enough. `forgotten`: the watch stopped watching the
     * key (no calls for `idleAfter` intervals, or room made for a new key at `maxKeys`), which
     * says nothing of its health.
     */
    readonly reason: 'recovered' | 'forgotten';
  };
  /**
   * An anomaly watch acted on what it saw, or declined to (`taken: false`, `reason` says why:
   * `maxShare`, `peers`, `unknown`).
   */
  'anomaly.action': {
    readonly key: string;
    readonly action: 'eject' | 'restore' | 'openBreaker' | 'lowerBudget';
    /** The endpoint, breaker or budget acted on. */
    readonly target: string;
    readonly taken: boolean;
    readonly reason: string;
  };
  /**
   * Role discovery found an endpoint in a new role: `primary`, `replica`, `unreachable`, or
   * `fenced` (it claims primary, but another primary has the higher token). `token` is its
   * ordering token as text (PostgreSQL: timeline/LSN), when it gave one.
   */
  'failover.role': {
    readonly endpoint: string;
    readonly role: 'primary' | 'replica' | 'unreachable' | 'fenced';
    readonly previous: 'unknown' | 'primary' | 'replica' | 'unreachable' | 'fenced';
    readonly token: string | undefined;
    readonly code: ErrorLabel;
  };
  /**
   * Two endpoints claim primary: `endpoint` is fenced (no write goes to it) because `primary`
   * has the higher token. The old node still takes writes from anyone else: fence it at the database.
   */
  'failover.fence': {
    readonly endpoint: string;
    /** The primary writes go to; undefined when the claimants tie and none is written to. */
    readonly primary: string | undefined;
    readonly token: string | undefined;
    readonly primaryToken: string | undefined;
  };
  /**
   * A split brain started (`active: true`) or ended: `endpoints` claimed primary with tokens that
   * tie (two replicas promoted apart), or one of them went silent meanwhile; no write goes to any
   * of them while it lasts. `since` is when it started (epoch ms); on the end, the endpoints are
   * those tied when it ended. `disposed`: the end was the set's `dispose()`, not the servers': it may
   * go on.
   */
  'failover.splitBrain': {
    readonly active: boolean;
    readonly disposed: boolean;
    readonly endpoints: readonly string[];
    readonly since: number;
  };
}

/** One metric of an `anomaly.score` event. */
export interface AnomalyMetric {
  /** The metric: `latencyP50`, `latencyP99`, `errorRate`, `throughput` or `rejectRate`. */
  readonly name: string;
  /** Its value this interval (NaN when the interval had none, e.g. no successful call for latency). */
  readonly value: number;
  /** What its baseline expected. */
  readonly expected: number;
  /** Its baseline's score, 0..1. */
  readonly score: number;
}

/** The name of every event. */
export type EventType = keyof EventFields;

/** The event of type `K`. */
export type EventOf<K extends EventType> = {
  readonly type: K;
  readonly source: string;
  readonly time: number;
} & EventFields[K];

/** Any holdfast event: a union discriminated on `type`. */
export type HoldfastEvent = { [K in EventType]: EventOf<K> }[EventType];

/** Every event type, at run time. */
export const eventTypes = [
  'timeout',
  'breaker.open',
  'breaker.halfOpen',
  'breaker.close',
  'breaker.isolate',
  'breaker.disable',
  'breaker.reject',
  'breaker.success',
  'breaker.failure',
  'breaker.slow',
  'retry.attempt',
  'retry.giveUp',
  'retry.budgetExhausted',
  'idempotency.claim',
  'idempotency.replay',
  'idempotency.conflict',
  'idempotency.mismatch',
  'idempotency.release',
  'idempotency.takeover',
  'idempotency.lost',
  'idempotency.staleCompletion',
  'idempotency.leaseLost',
  'idempotency.storeError',
  'failover.eject',
  'failover.restore',
  'failover.switch',
  'failover.panic',
  'health.change',
  'chaos.inject',
  'chaos.toxic',
  'chaos.drill',
  'fallback',
  'hedge.attempt',
  'hedge.budgetExhausted',
  'bulkhead.reject',
  'rateLimit.reject',
  'rateLimit.storeError',
  'concurrency.limit',
  'concurrency.reject',
  'throttle.reject',
  'anomaly.score',
  'anomaly.detected',
  'anomaly.cleared',
  'anomaly.action',
  'failover.role',
  'failover.fence',
  'failover.splitBrain',
] as const satisfies readonly EventType[];

type Unlisted = Exclude<EventType, (typeof eventTypes)[number]>;
// Fails to compile when an event type is declared above but missing from `eventTypes`.
const everyTypeListed: [Unlisted] extends [never] ? true : Unlisted = true;
void everyTypeListed;

/** Events that change what a breaker, a failover set or an endpoint is: what dashboards redraw on. */
export const stateChangeEvents = [
  'breaker.open',
  'breaker.halfOpen',
  'breaker.close',
  'breaker.isolate',
  'breaker.disable',
  'failover.switch',
  'failover.eject',
  'failover.restore',
  'failover.panic',
  'health.change',
  'failover.role',
  'failover.fence',
  'failover.splitBrain',
] as const satisfies readonly EventType[];

/** The label an event gives an error: its holdfast or system `code`, else its `name`; never throws. */
export function errorLabel(error: unknown): ErrorLabel {
  if (typeof error !== 'object' || error === null) return undefined;
  try {
    const { code, name } = error as { code?: unknown; name?: unknown };
    if (typeof code === 'string') return code;
    return typeof name === 'string' ? name : undefined;
  } catch {
    // A getter that throws (a Proxy): no label. An emit must never turn into the call's error.
    return undefined;
  }
}
