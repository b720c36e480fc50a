/** An endpoint as the functions given to `execute` and `check` see it. */
export interface Endpoint<T = unknown> {
  /** Its unique name, as in events and snapshots. */
  readonly name: string;
  /** What the call needs to reach it: a base URL, a pool, a client. */
  readonly target: T;
  /** Its share of traffic relative to the others. */
  readonly weight: number;
  /** Its active-passive rank: 0 is the primary. */
  readonly priority: number;
}

/** Whether active health checks pass on an endpoint. */
export type Health = 'healthy' | 'unhealthy';

/** The live state of one endpoint. Only the failover set writes it. */
export class EndpointState<T = unknown> {
  readonly view: Endpoint<T>;
  /** Position in the options: the last tie-breaker everywhere. */
  readonly index: number;
  /** A hash of the name: its seat on the consistent-hash ring. */
  readonly seed: number;
  health: Health = 'healthy';
  /** Since when it has been available without a break (epoch ms), else undefined. */
  availableSince: number | undefined;
  drained = false;
  /** `ejected` until `ejectedUntil`, then `probe` until one call passes (back to `none`) or fails. */
  ejection: 'none' | 'ejected' | 'probe' = 'none';
  ejectedUntil: number | undefined;
  /** Ejections in a row, which set how long the next one lasts. */
  ejections = 0;
  restoredAt: number | undefined;
  /** A probe call is in flight. */
  probing = false;
  /** Counts probes, so that a probe given up for hanging cannot settle a later one. */
  probeSerial = 0;
  /** How long its current or last ejection lasts, ms: the longest a probe may hang after it. */
  ejectedFor = 0;
  /** Why it is out: `failures`, `failureRate`, or the reason given to `eject()`; undefined when it is not. */
  ejectionReason: string | undefined;
  /** Failure-rate ejection: calls settled in the current interval, and how many of them failed. */
  rateCalls = 0;
  rateFailures = 0;
  inFlight = 0;
  /** Smooth weighted round-robin's running weight. */
  current = 0;
  /** Latency EWMA in ms, and when it was last updated. */
  ewma = 0;
  ewmaAt = 0;
  /** Role discovery: what the endpoint last said it is (`unknown` until its first check ends). */
  claim: 'unknown' | 'primary' | 'replica' | 'unreachable' = 'unknown';
  /** Role discovery: its ordering token and replication lag (ms), as last reported. */
  token: unknown;
  lag: number | undefined;
  /** Role discovery: the last check's error, while checks fail. */
  roleError: unknown;
  /** A call on it succeeded since its last role check ended: it is reachable, whatever the next check says. */
  calledOk = false;
  /** Claims primary, but another primary has the higher token (or ties with it): no writes. */
  fenced = false;
  /**
   * The token of the primary it lost to: it stays fenced, even once that primary is gone, until it
   * reports replica (rebuilt from the new history) or a token newer than this one.
   */
  fencedBy: { readonly token: unknown } | undefined;
  /** Claimed primary when its checks went unanswered: one elected meanwhile fences it. */
  silentPrimary = false;
  /**
   * Tied with another primary (a split brain): while one it tied with is silent, the others take
   * no write, until it reports replica or a token they beat, or is drained.
   */
  tied = false;
  /** The role last reported in a `failover.role` event. */
  discovered: 'unknown' | 'primary' | 'replica' | 'unreachable' | 'fenced' = 'unknown';

  /** The name as the options gave it, secrets and all: `drain()` and the others find it by either. */
  readonly given: string;

  constructor(view: Endpoint<T>, index: number, seed: number, given = view.name) {
    this.view = view;
    this.index = index;
    this.seed = seed;
    this.given = given;
  }

  get name(): string {
    return this.view.name;
  }

  get weight(): number {
    return this.view.weight;
  }

  get priority(): number {
    return this.view.priority;
  }
}
