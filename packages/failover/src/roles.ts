import { CallScope, type Clock, TimeoutError, type TimerHandle } from '@holdfast/core';
import type { Endpoint, EndpointState } from './endpoint.js';

/** What an endpoint says it is, as a role check reports it. */
export interface RoleReport {
  /** `primary` takes writes; `replica` serves reads only. */
  readonly role: 'primary' | 'replica';
  /**
   * Orders endpoints that both claim primary: writes go only to the highest. PostgreSQL:
   * `[timeline, lsn]`. Compared by the `compare` option; by default element by element.
   */
  readonly token?: unknown;
  /**
   * A replica's replication lag in ms, for `roles.maxLag`. `Infinity`: it holds none of the
   * primary's data yet (restarted empty, or a demoted primary before its first sync): never read.
   */
  readonly lag?: number;
}

/** What an error from a call says about its endpoint. */
export type ErrorClass =
  /** The endpoint failed (unreachable, crashed, timed out): counts toward ejection. */
  | 'failure'
  /** The endpoint answered (a constraint, syntax or permission error): it is alive, never ejected. */
  | 'alive'
  /** The endpoint refused a write as read-only: it is not the primary any more; roles are checked again now. */
  | 'readOnly';

/** A role an endpoint was discovered in; `fenced` claims primary but lost to a higher token. */
export type DiscoveredRole = 'unknown' | 'primary' | 'replica' | 'unreachable' | 'fenced';

/** The set's own role settings, given to each check (`pgRoles()` remembers a primary for five of the set's intervals). */
export interface RoleCheckSettings {
  /** The set's `roles.interval`: ms from the end of one check of an endpoint to the next. */
  readonly interval: number;
  /** The set's `roles.timeout`: ms after which a check has failed. */
  readonly timeout: number;
  /**
   * True when, as this check started, another endpoint of the set had neither answered a check nor
   * been found unreachable (the set's first round): a lag judged against what the others' checks
   * show (`pgRoles()`: a replica against the primaries seen) is judged without them. A replica
   * reported by such a check is checked again as soon as every endpoint has answered or been found
   * unreachable.
   */
  readonly firstRound?: boolean;
}

export interface RoleSettings extends RoleCheckSettings {
  readonly check: (
    endpoint: Endpoint,
    signal: AbortSignal,
    settings: RoleCheckSettings,
  ) => RoleReport | PromiseLike<RoleReport>;
  readonly unreachableAfter: number;
}

interface Probe {
  fails: number;
  timer: TimerHandle | undefined;
  running: boolean;
  /** A recheck was asked for while a check ran: run another one when it ends. */
  again: boolean;
  /** Whether a check of it has passed yet. */
  answered: boolean;
  /** The number of the last check of it that ended (checks are numbered as they start). */
  done: number;
  /**
   * A primary claim from an endpoint that was unreachable, held until every other endpoint has
   * ended a check started after it (`after`): while it was silent another may have been promoted.
   */
  held: { report: RoleReport; after: number } | undefined;
  /** Its last answer, a replica, came from a check started in the set's first round: checked again once that is done. */
  early: boolean;
}

/**
 * Asks every endpoint its role on a timer, one check at a time per endpoint, and at once when a
 * call suggests the role changed (`recheck`). Writes what it learns into the endpoint states and
 * tells the set.
 */
export class RoleDiscovery {
  readonly #probes = new Map<EndpointState, Probe>();
  readonly #waiters: (() => void)[] = [];
  #stopped = false;
  /** Checks started so far, of every endpoint: numbers them. */
  #started = 0;

  constructor(
    readonly endpoints: readonly EndpointState[],
    readonly settings: RoleSettings,
    readonly clock: Clock,
    readonly source: string,
    /** Told after any endpoint's discovered role, token or lag changed; `previous` is the role before. */
    readonly onChange: (endpoint: EndpointState, previous: EndpointState['claim']) => void,
  ) {
    for (const e of endpoints) {
      const probe: Probe = {
        fails: 0,
        timer: undefined,
        running: false,
        again: false,
        answered: false,
        done: 0,
        held: undefined,
        early: false,
      };
      this.#probes.set(e, probe);
    }
    // Every probe first: a check started before the next endpoint's probe existed was not told it
    // ran in the first round.
    for (const [e, probe] of this.#probes) void this.#run(e, probe);
  }

  /**
   * True once every endpoint has answered, or failed `unreachableAfter` checks in a row: a client
   * still connecting at start-up gets a second chance before the first write is decided.
   */
  get ready(): boolean {
    return this.#othersDone(undefined);
  }

  /** Resolves when `ready`, or after `ms`, or when `signal` aborts. */
  whenReady(ms: number, signal: AbortSignal | undefined): Promise<void> {
    if (this.ready || this.#stopped) return Promise.resolve();
    return new Promise((resolve) => {
      // Followed through a scope, as every policy follows a caller's signal: a shutdown signal
      // shared by the calls waiting at start-up passed Node's 10 listeners and warned of a leak.
      const caller = new CallScope({ signal });
      const done = () => {
        this.clock.clearTimeout(timer);
        caller.release();
        const i = this.#waiters.indexOf(done);
        if (i >= 0) this.#waiters.splice(i, 1);
        resolve();
      };
      const timer: TimerHandle = this.clock.setTimeout(done, ms);
      this.#waiters.push(done);
      caller.onAbort(done);
    });
  }

  /** Checks `e` again now (after its running check, if one runs). */
  recheck(e: EndpointState): void {
    const probe = this.#probes.get(e);
    if (probe === undefined || this.#stopped) return;
    if (probe.running) {
      probe.again = true;
      return;
    }
    if (probe.timer !== undefined) this.clock.clearTimeout(probe.timer);
    probe.timer = undefined;
    void this.#run(e, probe);
  }

  stop(): void {
    this.#stopped = true;
    for (const probe of this.#probes.values()) {
      if (probe.timer !== undefined) this.clock.clearTimeout(probe.timer);
      probe.timer = undefined;
    }
    for (const wake of [...this.#waiters]) wake();
  }

  async #run(e: EndpointState, probe: Probe): Promise<void> {
    probe.running = true;
    probe.again = false;
    // Only a call that ends while this check runs proves the server answers meanwhile: calls that
    // ended before it (a master's last writes before it froze) say nothing of it.
    e.calledOk = false;
    const number = ++this.#started;
    const firstRound = !this.#othersDone(probe);
    const controller = new AbortController();
    const outcome = await new Promise<RoleReport | { error: unknown }>((resolve) => {
      const deadline = this.clock.setTimeout(() => {
        const error = new TimeoutError(`${this.source}: role check of ${e.name}`, this.settings.timeout);
        controller.abort(error);
        resolve({ error });
      }, this.settings.timeout);
      const settle = (value: RoleReport | { error: unknown }) => {
        this.clock.clearTimeout(deadline);
        resolve(value);
      };
      try {
        const { interval, timeout } = this.settings;
        Promise.resolve(this.settings.check(e.view, controller.signal, { interval, timeout, firstRound })).then(
          (report) =>
            settle(validReport(report) ? report : { error: new TypeError(`bad role report: ${show(report)}`) }),
          (error: unknown) => settle({ error }),
        );
      } catch (error) {
        settle({ error });
      }
    });
    probe.running = false;
    probe.done = number;
    if (this.#stopped) return;
    this.#record(e, probe, outcome);
    probe.early = firstRound && !('error' in outcome) && outcome.role === 'replica';
    this.#release();
    if (this.ready && this.#waiters.length > 0) for (const wake of [...this.#waiters]) wake();
    if (probe.again) {
      void this.#run(e, probe);
      return;
    }
    probe.timer = this.clock.setTimeout(() => {
      probe.timer = undefined;
      void this.#run(e, probe);
    }, this.settings.interval);
  }

  #record(e: EndpointState, probe: Probe, outcome: RoleReport | { error: unknown }): void {
    if ('error' in outcome) {
      // Its lag can: unknown from a failed check on (no reads under `maxLag`), where a replica
      // whose checks timed out took reads on its last "lag 0" until it was found unreachable.
      // `Infinity` (never synced) stays: unknown would let it take reads without `maxLag`.
      const lagged = e.lag !== undefined && Number.isFinite(e.lag);
      if (lagged) e.lag = undefined;
      // Calls succeeded while the check ran: the server is slow to answer the check (a busy
      // pool, a loaded machine), not gone. Its role cannot change without breaking those calls
      // or refusing writes (which checks again at once).
      const busy = e.calledOk && e.claim !== 'unknown';
      e.calledOk = false;
      if (busy) {
        if (lagged) this.onChange(e, e.claim);
        return;
      }
      probe.fails++;
      probe.held = undefined;
      e.roleError = outcome.error;
      // One lost answer is not proof of a replica's death: it takes `unreachableAfter` in a row
      // (the first round decides at once). A primary takes no write from its first: frozen, it
      // may be deposed before a second check ends, and on waking it answers the writes it held
      // and new ones before anything shows the promotion: all lost when it is demoted. Asked again
      // at once, it is back as soon as it answers and the others have been asked.
      const primary = e.claim === 'primary' && this.#probes.size > 1;
      if (primary && probe.fails === 1) probe.again = true;
      // Never answered yet: its second chance comes at once, not an interval later. Calls wait
      // for it at start-up (`ready`): a server down delayed every new process's first calls.
      if (!probe.answered && probe.fails < this.settings.unreachableAfter) probe.again = true;
      if (
        e.claim === 'unreachable' ||
        (!primary && probe.fails < this.settings.unreachableAfter && e.claim !== 'unknown')
      ) {
        if (lagged) this.onChange(e, e.claim);
        return;
      }
      const previous = e.claim;
      e.silentPrimary = previous === 'primary';
      e.claim = 'unreachable';
      e.token = undefined;
      e.lag = undefined;
      this.onChange(e, previous);
      return;
    }
    probe.fails = 0;
    probe.answered = true;
    e.calledOk = false;
    const held = probe.held;
    probe.held = undefined;
    if (outcome.role === 'primary' && e.claim === 'unreachable' && this.#probes.size > 1) {
      // Back from silence claiming primary (a frozen master resumed, a partition healed): the
      // others may have promoted one meanwhile, and what the set knows of them is up to an
      // interval old. Writes to it now would be lost when it is demoted. Ask them first.
      probe.held = { report: outcome, after: held?.after ?? this.#started };
      if (held === undefined) for (const other of this.endpoints) if (other !== e) this.recheck(other);
      return;
    }
    this.#apply(e, outcome);
  }

  /** Whether every endpoint but `probe`'s (if any) has answered a check or been found unreachable. */
  #othersDone(probe: Probe | undefined): boolean {
    for (const other of this.#probes.values())
      if (other !== probe && !other.answered && other.fails < this.settings.unreachableAfter) return false;
    return true;
  }

  /**
   * Applies the held claims every other endpoint has been checked since. Once the first round is
   * done, checks again at once the replicas last reported by a check started in it (see
   * `RoleCheckSettings.firstRound`): judged then, `pgRoles()` gave a replica of a deposed primary
   * lag 0, the promoted primary not seen yet, and it took reads until its next check.
   */
  #release(): void {
    if (this.ready)
      for (const [e, probe] of this.#probes) {
        if (!probe.early) continue;
        probe.early = false;
        // The endpoint whose check just ended (not running, its next not scheduled yet): after it.
        if (!probe.running && probe.timer === undefined) probe.again = true;
        else this.recheck(e);
      }
    for (const [e, probe] of this.#probes) {
      const held = probe.held;
      if (held === undefined) continue;
      let checked = true;
      for (const other of this.#probes.values()) if (other !== probe && other.done <= held.after) checked = false;
      if (!checked) continue;
      probe.held = undefined;
      this.#apply(e, held.report);
    }
  }

  #apply(e: EndpointState, outcome: RoleReport): void {
    e.roleError = undefined;
    const previous = e.claim;
    const changed = previous !== outcome.role || !sameToken(e.token, outcome.token) || e.lag !== outcome.lag;
    e.claim = outcome.role;
    e.token = outcome.token;
    e.lag = outcome.lag;
    if (changed) this.onChange(e, previous);
  }
}

function validReport(report: unknown): report is RoleReport {
  if (typeof report !== 'object' || report === null) return false;
  const { role, lag } = report as RoleReport;
  return (role === 'primary' || role === 'replica') && (lag === undefined || (typeof lag === 'number' && lag >= 0));
}

function show(value: unknown): string {
  try {
    return (JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? String(v) : v)) ?? String(value)).slice(0, 100);
  } catch {
    return String(value);
  }
}

function sameToken(a: unknown, b: unknown): boolean {
  return a === b || tokenText(a) === tokenText(b);
}

/** A token as text, for events and snapshots: arrays joined with `/`. */
export function tokenText(token: unknown): string | undefined {
  if (token === undefined || token === null) return undefined;
  if (Array.isArray(token)) return token.map((t) => tokenText(t)).join('/');
  if (typeof token === 'object') return show(token);
  return String(token);
}

/**
 * The default order of tokens: numbers, bigints and strings by value; arrays element by element
 * (a longer array wins a tie). Anything else, or no token, ties.
 */
export function compareTokens(a: unknown, b: unknown): number {
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.min(a.length, b.length); i++) {
      const c = compareTokens(a[i], b[i]);
      if (c !== 0) return c;
    }
    return a.length - b.length;
  }
  const numeric = (v: unknown) => typeof v === 'number' || typeof v === 'bigint';
  if (numeric(a) && numeric(b)) return (a as number) < (b as number) ? -1 : (a as number) > (b as number) ? 1 : 0;
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  return 0;
}
