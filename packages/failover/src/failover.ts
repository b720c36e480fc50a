import {
  type Bus,
  type CallContext,
  CallScope,
  type Clock,
  DisposedError,
  type ExecuteOptions,
  elapsedTime,
  errorLabel,
  bus as globalBus,
  policies as globalPolicies,
  HoldfastConfigError,
  hiddenName,
  invoke,
  isLocalRefusal,
  parseOptions,
  realClock,
  type Snapshottable,
  shieldBus,
  TimeoutError,
  type TimerHandle,
  type Unregister,
} from '@holdfast/core';
import type { RetryBudget } from '@holdfast/retry';
import { type Balancer, fadedEwma, makeBalancer, rendezvous } from './balancer.js';
import { type BudgetLike, defaultBudget } from './budget.js';
import { breakerCounter, ejectionTime, type FailureCounter, remainingEjections } from './ejection.js';
import { type Endpoint, EndpointState } from './endpoint.js';
import { NoHealthyEndpointError, NoPrimaryError, UnconfirmedWriteError } from './errors.js';
import { hashString } from './hash.js';
import { HealthChecks } from './health.js';
import {
  DEFAULT_MAX_EJECTION_MS,
  type EjectOptions,
  ejectOptionsSchema,
  type FailoverOptions,
  failoverOptionsSchema,
  type ParsedFailoverOptions,
  redactor,
  shownName,
} from './options.js';
import { neverReached, refusedByEndpoint } from './retryable.js';
import { compareTokens, type DiscoveredRole, type ErrorClass, RoleDiscovery, tokenText } from './roles.js';

/** Without a per-try timeout, a probe unanswered this long (or its ejection time, if longer) is hung. */
const HUNG_PROBE_MS = 10_000;

/** Options of one call through a failover set. */
export interface FailoverExecuteOptions extends ExecuteOptions {
  /**
   * consistent-hash: what to hash (a client IP, a user id); a number hashes as its digits (`7`
   * and `'7'` go to the same endpoint). Calls without one go anywhere. Anything else (an object,
   * an array, `null`) is refused with a `HoldfastConfigError` naming `key`, no endpoint touched:
   * hashed as text, every such key would land on one endpoint.
   */
  readonly key?: string | number | undefined;
  /**
   * With `roles`: `write` (the default) goes to the primary only, never retried elsewhere;
   * `read` goes to replicas, or the primary when none is left.
   */
  readonly intent?: 'read' | 'write' | undefined;
  /**
   * Endpoint names this call must not go to, as if already tried there: e.g. those another
   * hedged attempt of the same call is running on. Writes with `roles` ignore it.
   */
  readonly avoid?: readonly string[] | undefined;
  /**
   * This call's retries, instead of the set's `retry` option: `false` for one try, or how many
   * tries in all, which errors move on to another endpoint, and the budget the call is paid into
   * and each retry drawn from. For a caller that decides its own retries (resilientFetch with a
   * set of yours): the set's options would try more often than it says, or repeat what it may not.
   */
  readonly retry?: false | FailoverCallRetry | undefined;
  /**
   * Errors of this call that say nothing of the endpoint (the caller's own refusals: a request
   * its client would not send, a local limit): counted neither against it nor for it, whatever
   * the set's `isFailure`. Retried as the call's `retry` says. One that throws, or answers with a
   * promise (it is needed at once), ignores nothing.
   */
  readonly ignore?: ((error: unknown) => boolean) | undefined;
}

/** A call's own retries through a failover set (see {@link FailoverExecuteOptions.retry}). */
export interface FailoverCallRetry {
  /** Tries in all, each on another endpoint: an integer from 1. */
  readonly maxAttempts: number;
  /** Whether a failed try may go to another endpoint; a promise is awaited. One that throws or rejects retries nothing. */
  readonly retryOn: (error: unknown, attempt: number) => boolean | PromiseLike<boolean>;
  /** Paid into once by the call, drawn from by each retry; `false` for none. */
  readonly budget: BudgetLike | false;
}

/** The function a failover set runs: one try on one endpoint. */
export type EndpointCall<T, R> = (endpoint: Endpoint<T>, ctx: CallContext) => R | PromiseLike<R>;

/** One endpoint in a {@link FailoverSnapshot}. */
export interface EndpointSnapshot {
  readonly [key: string]: string | number | boolean | null;
  /** The endpoint's name. */
  readonly name: string;
  /** The target when it is a string (a URL, its credentials and secret parameters hidden); null for pools and clients. */
  readonly target: string | null;
  /** Its active-passive rank: 0 is the primary. */
  readonly priority: number;
  /** Its share of traffic relative to the others. */
  readonly weight: number;
  /** `active` or `standby` in active-passive; `member` in active-active; `drained` when drained. */
  readonly role: 'active' | 'standby' | 'member' | 'drained';
  /** The verdict of active health checks (`healthy` when there are none). */
  readonly health: 'healthy' | 'unhealthy';
  /** Whether new calls may go to it now. */
  readonly available: boolean;
  /** `none`, `ejected`, or `probe` (ejection time over, waiting for one call to pass). */
  readonly ejection: 'none' | 'ejected' | 'probe';
  /** When the current ejection ends (epoch ms), or null. */
  readonly ejectedUntil: number | null;
  /** Why it is out (`failures`, `failureRate`, or the reason given to `eject()`), while `ejection` is not `none`; else null. */
  readonly ejectionReason: string | null;
  /** Ejections in a row, which set how long the next one lasts. */
  readonly ejections: number;
  /** Calls running on it now. */
  readonly inFlight: number;
  /** Latency EWMA in ms, faded to now. */
  readonly ewma: number;
  /** With `roles`: `primary`, `replica`, `fenced` (claims primary, lost to a higher token), `unreachable`, `unknown`. */
  readonly discovered: DiscoveredRole | null;
  /** With `roles`: its ordering token as text (PostgreSQL: timeline/LSN). */
  readonly token: string | null;
  /** With `roles`: a replica's replication lag in ms, as last reported; null when unknown or when it has not synced (never read). */
  readonly lag: number | null;
}

/** A split brain in a {@link FailoverSnapshot}. */
export interface SplitBrainSnapshot {
  readonly [key: string]: number | readonly string[];
  /** The endpoints whose primary claims tie (or tied before one went silent): no write goes to any. */
  readonly endpoints: readonly string[];
  /** When it started (epoch ms). */
  readonly since: number;
}

/** What a failover set's `snapshot()` returns: plain JSON. */
export interface FailoverSnapshot {
  readonly [key: string]: string | number | boolean | null | readonly EndpointSnapshot[] | SplitBrainSnapshot;
  /** The set's name. */
  readonly name: string;
  /** How the set spreads calls. */
  readonly mode: 'active-active' | 'active-passive';
  /** The active-active balancer: `round-robin`, `least-connections`, `consistent-hash`, `p2c-ewma`. */
  readonly balancer: string;
  /** Active-passive: the endpoint taking traffic, or null. */
  readonly active: string | null;
  /** With `roles`: the primary writes go to, or null when none is known. */
  readonly primary: string | null;
  /** True while too few endpoints are available (see `panicThreshold`). */
  readonly panic: boolean;
  /**
   * With `roles`: while primaries tie (a split brain), which endpoints and since when; they take no
   * write, even while one of them is silent. Null otherwise.
   */
  readonly splitBrain: SplitBrainSnapshot | null;
  /** Every endpoint, in the order of the options. */
  readonly endpoints: readonly EndpointSnapshot[];
}

/** A set of redundant endpoints that calls go through. */
export interface Failover<T = unknown> extends Snapshottable<FailoverSnapshot> {
  /** Shown as `source` on every event. */
  readonly name: string;
  /**
   * Runs `fn` on an endpoint the set picks. A failure it may retry runs `fn` again on another
   * endpoint; the last failure is passed on when none is left.
   */
  execute<R>(fn: EndpointCall<T, R>, options?: FailoverExecuteOptions): Promise<R>;
  /** The endpoints, as given. */
  readonly endpoints: readonly Endpoint<T>[];
  /** Active-passive: the endpoint taking traffic now. With `roles`: the primary writes go to. */
  readonly active: Endpoint<T> | undefined;
  /** Stops new calls to an endpoint; resolves when its last call in flight has settled. */
  drain(name: string): Promise<void>;
  /** Takes a drained endpoint back. */
  undrain(name: string): void;
  /**
   * Takes an endpoint out for `durationMs`, as outlier ejection does (a `failover.eject` event
   * with `reason`); then it takes one call at a time until one succeeds, and is back. Returns
   * false, and changes nothing, when that would leave no other endpoint available or take out
   * more than `ejection.maxShare` of the set (0.5 when ejection is off), or when the endpoint is
   * drained. Ejecting an endpoint already out sets its time anew (and its reason).
   */
  eject(name: string, options: EjectOptions): boolean;
  /** Takes an ejected endpoint back now (a `failover.restore` event). Returns whether it was out. */
  restore(name: string): boolean;
  /**
   * Active-passive: moves traffic to the best available endpoint of the highest priority now,
   * without waiting for the hold-down. Returns whether traffic moved. The way back with
   * `failback: 'manual'`. With `roles` it moves nothing and returns false: the database decides
   * which node is primary (switch over there and the set follows within one `roles.interval`).
   */
  failback(): boolean;
}

/**
 * A set of endpoints (URLs, pools, clients) that calls survive the loss of: active-active
 * balancing or active-passive failover, health checks, outlier ejection, retries on another
 * endpoint, failback after a hold-down.
 *
 * @example
 * const api = failover({ endpoints: ['http://10.0.0.1:8080', 'http://10.0.0.2:8080'] });
 * const res = await api.execute((endpoint, { signal }) => fetch(`${endpoint.target}/orders`, { signal }));
 */
export function failover<T = unknown>(options: FailoverOptions<T>): Failover<T> {
  return new FailoverSet<T>(parse(options));
}

/** The options parsed; a refused value is shown with any URL in it redacted, never with its password. */
function parse(options: unknown): ParsedFailoverOptions {
  try {
    return parseOptions('failover', failoverOptionsSchema, options);
  } catch (error) {
    if (!(error instanceof HoldfastConfigError)) throw error;
    const hide = (value: unknown): unknown =>
      typeof value === 'string' ? redactor.text(redactor.url(value)) : Array.isArray(value) ? value.map(hide) : value;
    throw new HoldfastConfigError(
      'failover',
      error.issues.map((issue) => ('value' in issue ? { ...issue, value: hide(issue.value) } : issue)),
    );
  }
}

/**
 * A call's consistent-hash key: a string, or a number (a bigint from plain JavaScript too) as its
 * text (`NaN` included: its type allows it, and it always went to one endpoint). Anything else is
 * refused: hashed as text, every object is `[object Object]`, and every caller that passes one
 * would land on one endpoint.
 */
function keyOf(name: string, key: unknown): string | undefined {
  if (key === undefined || typeof key === 'string') return key;
  if (typeof key === 'number' || typeof key === 'bigint') return String(key);
  const message = 'must be a string or a number, hashed to pick the endpoint';
  // An object's contents are not shown: a whole user or request object may carry a token.
  if (typeof key !== 'object' || key === null)
    throw new HoldfastConfigError(name, [{ path: 'key', message, value: key }]);
  const kind = Array.isArray(key) ? 'an array' : 'an object';
  throw new HoldfastConfigError(name, [{ path: 'key', message: `${message} (got ${kind}, not shown)` }]);
}

/** A call's own `retry`, checked: one try for `false`; a bad one is a `HoldfastConfigError` naming it. */
function callRetry(
  name: string,
  retry: false | FailoverCallRetry,
): { maxAttempts: number; retryOn: FailoverCallRetry['retryOn']; budget: BudgetLike | undefined } {
  if (retry === false) return { maxAttempts: 1, retryOn: () => false, budget: undefined };
  const bad = (path: string, message: string, value?: unknown): never => {
    throw new HoldfastConfigError(name, [{ path: `retry${path}`, message, value }]);
  };
  try {
    const { maxAttempts, retryOn, budget } = (retry ?? {}) as Partial<FailoverCallRetry>;
    if (!Number.isInteger(maxAttempts) || (maxAttempts as number) < 1)
      bad('.maxAttempts', 'must be an integer >= 1', maxAttempts);
    if (typeof retryOn !== 'function') bad('.retryOn', 'must be a function', retryOn);
    const budgetLike =
      budget === false || (typeof budget?.deposit === 'function' && typeof budget.tryWithdraw === 'function');
    if (!budgetLike) bad('.budget', 'must be a retryBudget() from @holdfast/retry, or false');
    return {
      maxAttempts: maxAttempts as number,
      retryOn: retryOn as FailoverCallRetry['retryOn'],
      budget: budget === false ? undefined : budget,
    };
  } catch (error) {
    // A getter that throws (a proxy, a budget object) is a bad option too, never the call's error.
    if (error instanceof HoldfastConfigError) throw error;
    return bad('', 'could not be read: a getter threw');
  }
}

/** Whether the caller's signal (or an outer policy's context) can abort the call. */
function abortable(options: ExecuteOptions | undefined): boolean {
  return options instanceof CallScope || options?.signal !== undefined;
}

function callerAborted(options: ExecuteOptions | undefined): boolean {
  return options instanceof CallScope ? options.aborted : options?.signal?.aborted === true;
}

function abortReason(options: ExecuteOptions | undefined): unknown {
  if (options instanceof CallScope) return options.reason;
  // A polyfill's signal has no reason: an AbortError, as Node's abort() gives, never undefined.
  return options?.signal?.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

/** The `ejection.failureRate` settings, parsed. */
type FailureRate = Exclude<Exclude<ParsedFailoverOptions['ejection'], false>['failureRate'], false>;

/** How far one faster sample pulls the latency average toward itself. */
const blend = 0.3;
/** The most a run of failures can raise an endpoint's latency average to, ms. */
const MAX_FAILURE_EWMA = 60_000;

class FailoverSet<T> implements Failover<T> {
  readonly name: string;
  readonly endpoints: readonly Endpoint<T>[];
  readonly #o: ParsedFailoverOptions;
  readonly #all: readonly EndpointState<T>[];
  /** Consecutive failures per endpoint; none when ejection is off. */
  readonly #counters: Map<EndpointState<T>, FailureCounter> | undefined;
  readonly #bus: Bus;
  readonly #clock: Clock;
  /**
   * The clock's monotonic time: latencies and their fading, hold-downs, ejection counts. A
   * wall-clock step (NTP, a VM resume) is not an hour-long call. Event times are `now()`.
   */
  readonly #elapsed: () => number;
  readonly #random: () => number;
  readonly #balancer: Balancer;
  readonly #budget: BudgetLike | undefined;
  /** The budget the set made itself (none given): disposed with it. */
  readonly #ownBudget: RetryBudget | undefined;
  readonly #checks: HealthChecks | undefined;
  /** Ejection settings; undefined when ejection is off. */
  readonly #ejection: Exclude<ParsedFailoverOptions['ejection'], false> | undefined;
  /** Failure-rate ejection settings; undefined when it is off. */
  readonly #rate: FailureRate | undefined;
  /** When the failure-rate interval being counted began (monotonic ms). */
  #rateSince = 0;
  readonly #timers = new Map<EndpointState<T>, TimerHandle>();
  readonly #drains = new Map<EndpointState<T>, (() => void)[]>();
  /** Tries in flight under a per-try timeout: dispose() ends each, and its ref'd timer with it. */
  readonly #deadlines = new Set<() => void>();
  /** Endpoints that take new calls now, in the order of the options. */
  #available: EndpointState<T>[] = [];
  /** Ejected endpoints whose time is over, waiting for one call to prove them. */
  #probes: EndpointState<T>[] = [];
  #active: EndpointState<T> | undefined;
  #panic = false;
  #failbackTimer: TimerHandle | undefined;
  #disposed = false;
  readonly #roles: RoleDiscovery | undefined;
  readonly #compare: (a: unknown, b: unknown) => number;
  readonly #classify: ((error: unknown) => ErrorClass) | undefined;
  /** With `roles`: where writes go, and the read tiers (the first non-empty one takes reads). */
  #primary: EndpointState<T> | undefined;
  #reads: readonly [EndpointState<T>[], EndpointState<T>[]] = [[], []];
  /** Why the last primary was lost: the cause of `NoPrimaryError`. */
  #lostCause: unknown;
  /** A split brain on now: the endpoints tied, and since when (epoch ms). */
  #split: { endpoints: string[]; since: number } | undefined;
  /** Writes answered by an endpoint no longer the primary, told whenever roles are elected again. */
  readonly #roleWaiters = new Set<() => void>();
  readonly #unregister: Unregister | undefined;

  constructor(o: ParsedFailoverOptions) {
    this.#o = o;
    this.name = o.name;
    const listing = o.policies ?? globalPolicies;
    if (listing !== false) this.#unregister = listing.register('failover', o.name, this);
    // A bus of the user's own may throw: an ejection, a switch or a panic must still take effect,
    // and the call that set it off keep its outcome.
    this.#bus = o.bus === undefined ? globalBus : shieldBus(o.bus, o.name);
    this.#clock = o.clock ?? realClock;
    this.#elapsed = elapsedTime(this.#clock);
    this.#random = o.random ?? Math.random;
    const ejection = o.ejection === false ? undefined : o.ejection;
    this.#ejection = ejection;
    this.#rate = ejection === undefined || ejection.failureRate === false ? undefined : ejection.failureRate;
    const now = this.#elapsed();
    this.#rateSince = now;
    this.#all = o.endpoints.map((e, i) => {
      const view = Object.freeze({ name: e.name, target: e.target as T, weight: e.weight, priority: e.priority });
      const state = new EndpointState<T>(view, i, hashString(e.name), e.given);
      state.availableSince = now;
      return state;
    });
    this.endpoints = this.#all.map((e) => e.view);
    this.#counters =
      ejection === undefined
        ? undefined
        : new Map(
            this.#all.map((e) => [e, breakerCounter(ejection.consecutiveFailures, `${o.name}/${e.name}`, this.#clock)]),
          );
    this.#balancer = makeBalancer(o.balancer, { random: this.#random, decay: o.decay });
    const retry = o.retry;
    // Listed where the set is, or nowhere with `policies: false`, as the set's other parts are.
    this.#ownBudget =
      retry === false || retry.budget !== undefined ? undefined : defaultBudget(o.name, this.#clock, o.policies);
    this.#budget = retry === false || retry.budget === false ? undefined : (retry.budget ?? this.#ownBudget);
    this.#compare = o.roles?.compare ?? compareTokens;
    this.#classify = o.roles?.classify;
    this.#refresh('failover', false);
    this.#roles =
      o.roles === undefined
        ? undefined
        : new RoleDiscovery(this.#all, o.roles, this.#clock, this.name, (e, previous) =>
            this.#onRole(e as EndpointState<T>, previous),
          );
    this.#checks =
      o.health === undefined
        ? undefined
        : new HealthChecks(this.#all, o.health, this.#clock, this.#random, this.name, (e, healthy) =>
            this.#onHealth(e as EndpointState<T>, healthy),
          );
  }

  get active(): Endpoint<T> | undefined {
    return (this.#roles === undefined ? this.#active : this.#primary)?.view;
  }

  // ---- calls ----

  async execute<R>(fn: EndpointCall<T, R>, options?: FailoverExecuteOptions): Promise<R> {
    if (this.#disposed) throw new DisposedError(this.name);
    // A signal of the caller's own, read as every policy reads it (a scope): one that is no
    // AbortSignal fails the call before it runs (it ran once with 'abort' as its signal), and a
    // polyfill's, aborted without a reason, fails it with an AbortError (it rejected with undefined).
    if (!(options instanceof CallScope) && CallScope.abortable(options)) {
      const scope = new CallScope(options);
      const { aborted, reason } = scope;
      scope.release();
      if (aborted) throw reason;
    }
    const key = this.#o.balancer === 'consistent-hash' ? keyOf(this.name, options?.key) : undefined;
    const roles = this.#roles;
    // A process that starts after a failover must know the roles before its first write.
    if (roles !== undefined && !roles.ready) {
      await roles.whenReady(this.#o.roles?.wait ?? 0, options?.signal);
      // dispose() wakes the calls waiting: they must not run on clients being closed.
      if (this.#disposed) throw new DisposedError(this.name);
    }
    const write = roles !== undefined && options?.intent !== 'read';
    const own = options?.retry === undefined ? undefined : callRetry(this.name, options.retry);
    const budget = own === undefined ? this.#budget : own.budget;
    budget?.deposit();
    const avoid = options?.avoid;
    let tried: EndpointState<T>[] | undefined =
      avoid !== undefined && avoid.length > 0 ? this.#all.filter((e) => avoid.includes(e.name)) : undefined;
    let last: { error: unknown } | undefined;
    for (let attempt = 1; ; attempt++) {
      if (callerAborted(options)) throw abortReason(options);
      let endpoint: EndpointState<T>;
      try {
        endpoint = roles === undefined ? this.#pick(key, tried) : this.#pickByRole(write, key, tried);
      } catch (error) {
        // Every endpoint left went away while a retry was decided on (a listener drained them): the
        // call did reach one, and its error says more than a refusal, which a breaker would not count.
        throw last === undefined ? error : last.error;
      }
      try {
        const value = await this.#try(fn, endpoint, options, attempt);
        if (write && endpoint !== this.#primary) await this.#stillPrimary(endpoint, options);
        return value;
      } catch (error) {
        // A write has one place to go: the primary. After dispose(), no new try starts anywhere.
        let may = !write && !this.#disposed && this.#mayRetry(error, attempt, options, own);
        if (typeof may !== 'boolean') may = (await may) && !this.#disposed;
        if (!may) throw error;
        tried ??= [];
        tried.push(endpoint);
        last = { error };
        if (!this.#hasCandidate(tried) || !this.#withdraw(budget, error, attempt)) throw error;
        if (this.#bus.wants('retry.attempt')) {
          this.#bus.emit({
            type: 'retry.attempt',
            source: this.name,
            time: this.#clock.now(),
            attempt: attempt + 1,
            delay: 0,
            code: errorLabel(error),
          });
        }
      }
    }
  }

  /**
   * A write `e` answered after the set stopped taking it for the primary (its checks went silent,
   * another claims primary): its answer proves nothing, the write is lost if `e` is demoted. It
   * succeeds once `e`'s role is asked again and it is the primary still; otherwise it fails with
   * `UnconfirmedWriteError`, as a timeout would. The caller's signal ends the wait with its reason.
   */
  #stillPrimary(e: EndpointState<T>, options: FailoverExecuteOptions | undefined): Promise<void> {
    const roles = this.#roles as RoleDiscovery;
    roles.recheck(e);
    return new Promise((resolve, reject) => {
      const caller = new CallScope(options);
      const done = (ok: boolean) => {
        this.#clock.clearTimeout(timer);
        this.#roleWaiters.delete(wake);
        caller.release();
        if (caller.aborted) reject(caller.reason);
        else if (ok) resolve();
        else reject(new UnconfirmedWriteError(this.name, e.name, e.discovered, { cause: e.roleError }));
      };
      const wake = () => {
        if (this.#primary === e) done(true);
        else if (this.#disposed || (e.discovered !== 'unreachable' && e.discovered !== 'unknown')) done(false);
      };
      // A check of it running already, then the one asked for; back from silence, its claim waits
      // for the others' running checks and then the ones asked for: each ends within `timeout`.
      const timer = this.#clock.setTimeout(() => done(false), 4 * roles.settings.timeout);
      this.#roleWaiters.add(wake);
      caller.onAbort(() => done(false));
      wake(); // already fenced, or back as a replica: no need to wait
    });
  }

  #mayRetry(
    error: unknown,
    attempt: number,
    options: FailoverExecuteOptions | undefined,
    own: { maxAttempts: number; retryOn: FailoverCallRetry['retryOn'] } | undefined,
  ): boolean | Promise<boolean> {
    const retry = own ?? this.#o.retry;
    if (retry === false || attempt >= retry.maxAttempts || callerAborted(options)) return false;
    // An endpoint that answered with an error (a constraint, a syntax error) would answer the same elsewhere.
    if (this.#classOf(error) === 'alive') return false;
    const retryOn = retry.retryOn;
    if (retryOn !== undefined) {
      // An async retryOn is awaited (a pending promise is no "yes"); one that throws or rejects retries nothing.
      try {
        const answer = retryOn(error, attempt);
        return isThenable(answer) ? Promise.resolve(answer).then(Boolean, () => false) : Boolean(answer);
      } catch {
        return false;
      }
    }
    // A refusal by one of our own policies inside the call is not moved, even when idempotent: the
    // same policy refuses it elsewhere, or (an idempotency key aborted or held by another call,
    // with a store per endpoint) the effect runs a second time there. An open breaker is moved,
    // as by default: it refused that endpoint's calls; and, when idempotent, an inner set's
    // refusal (a region with nothing to call): the next endpoint has a set of its own.
    if ('idempotent' in retry && retry.idempotent)
      return error instanceof TimeoutError || neverReached(error) || this.#counts(error);
    return neverReached(error);
  }

  /**
   * Takes a retry from the budget; false, and an event, when it is spent. One disposed while the
   * call ran (its `tryWithdraw()` throws) grants none: the call ends with its own error, as in retry().
   */
  #withdraw(budget: BudgetLike | undefined, error: unknown, attempt: number): boolean {
    if (budget === undefined) return true;
    try {
      if (budget.tryWithdraw()) return true;
    } catch {
      return false;
    }
    if (this.#bus.wants('retry.budgetExhausted')) {
      this.#bus.emit({
        type: 'retry.budgetExhausted',
        source: this.name,
        time: this.#clock.now(),
        attempt: attempt + 1,
        code: errorLabel(error),
      });
    }
    return false;
  }

  #counts(error: unknown): boolean {
    if (isLocalRefusal(error) && !refusedByEndpoint(error)) return false;
    if (this.#classify !== undefined && this.#classOf(error) !== 'failure') return false;
    const isFailure = this.#o.isFailure;
    // One that throws cannot clear the endpoint: the error counts (as a breaker's judge does).
    return isFailure === undefined || this.#guarded(() => isFailure(error), true);
  }

  /** A user's function's answer, or `otherwise` when it throws: a bug in it never breaks the call. */
  #guarded(decide: () => unknown, otherwise: boolean): boolean {
    try {
      const answer = decide();
      if (!isThenable(answer)) return Boolean(answer);
      // A verdict needed now cannot wait: a promise answers as a throw would, and never goes unhandled.
      Promise.resolve(answer).catch(() => {});
      return otherwise;
    } catch {
      return otherwise;
    }
  }

  #classOf(error: unknown): ErrorClass {
    if (this.#classify === undefined) return 'failure';
    try {
      return this.#classify(error);
    } catch {
      return 'failure';
    }
  }

  /** Whether a failed call counts against `e`; with roles, a failure or a read-only refusal rechecks its role now. */
  #judge(e: EndpointState<T>, error: unknown, options: FailoverExecuteOptions | undefined): boolean | undefined {
    const ignore = options?.ignore;
    if (ignore !== undefined && this.#guarded(() => ignore(error), false)) return undefined;
    // Refused by one of our own policies inside the call (a bulkhead, a rate limiter, an
    // idempotency key aborted or in progress): nothing reached the endpoint, and the refusal says
    // nothing of it, neither failure nor proof of life. Counted, a burst through a bulkhead, or a
    // client repeating an aborted key, ejected healthy endpoints. The endpoint's own breaker, open,
    // or its own set with nothing to call, does speak of it: counted (refusedByEndpoint).
    if (isLocalRefusal(error) && !refusedByEndpoint(error)) return undefined;
    const counts = this.#counts(error);
    if (this.#roles !== undefined && (counts || this.#classOf(error) === 'readOnly')) {
      e.calledOk = false; // a failed call undoes the proof of life of earlier ones
      this.#roles.recheck(e);
    }
    return counts;
  }

  /**
   * One try on one endpoint. A per-try timeout or the caller's abort settles the try at once;
   * the endpoint's in-flight count drops only when the call itself settles.
   */
  #try<R>(
    fn: EndpointCall<T, R>,
    e: EndpointState<T>,
    options: FailoverExecuteOptions | undefined,
    attempt: number,
  ): Promise<R> {
    const probe = e.ejection === 'probe' ? this.#startProbe(e) : 0;
    const ctx = new CallScope(options, attempt);
    const started = this.#elapsed();
    const limit = this.#o.timeout;
    e.inFlight++;
    if (limit === undefined && !abortable(options)) {
      // Nothing can cut this try short: no race to set up.
      return invoke((c) => fn(e.view, c), ctx).then(
        (value) => {
          this.#callSettled(e, ctx, undefined, undefined);
          this.#record(e, false, this.#elapsed() - started, probe);
          return value;
        },
        (error: unknown) => {
          this.#callSettled(e, ctx, undefined, undefined);
          this.#record(e, this.#judge(e, error, options), this.#elapsed() - started, probe);
          throw error;
        },
      );
    }
    let done = false;
    // The first outcome is the one that counts: a timeout beats a late answer.
    const settle = (failed: boolean | undefined) => {
      if (done) return false;
      done = true;
      this.#record(e, failed, this.#elapsed() - started, probe);
      return true;
    };
    return new Promise<R>((resolve, reject) => {
      const timer =
        limit === undefined
          ? undefined
          : this.#clock.setTimeout(() => ctx.abort(new TimeoutError(`${this.name}: ${e.name}`, limit)), limit, {
              ref: true,
            });
      // Ref'd, the deadline held the process open after dispose() for up to `timeout`: dispose()
      // settles the try at once with DisposedError (its signal aborts), and clears the timer.
      const dispose = timer === undefined ? undefined : () => ctx.abort(new DisposedError(this.name));
      if (dispose !== undefined) this.#deadlines.add(dispose);
      const stop = ctx.onAbort((reason) => {
        if (timer !== undefined) this.#clock.clearTimeout(timer);
        if (dispose !== undefined) this.#deadlines.delete(dispose);
        // A timeout of ours is the endpoint's failure; the caller's abort is nobody's.
        const ours = !callerAborted(options);
        if (ours) this.#roles?.recheck(e);
        if (settle(ours ? true : undefined)) reject(reason);
      });
      invoke((c) => fn(e.view, c), ctx).then(
        (value) => {
          this.#callSettled(e, ctx, timer, stop, dispose);
          if (settle(false)) resolve(value);
        },
        (error: unknown) => {
          this.#callSettled(e, ctx, timer, stop, dispose);
          if (settle(callerAborted(options) ? undefined : this.#judge(e, error, options))) reject(error);
        },
      );
    });
  }

  #callSettled(
    e: EndpointState<T>,
    ctx: CallScope,
    timer: TimerHandle | undefined,
    stop: (() => void) | undefined,
    dispose?: () => void,
  ): void {
    if (timer !== undefined) this.#clock.clearTimeout(timer);
    if (dispose !== undefined) this.#deadlines.delete(dispose);
    stop?.();
    ctx.release();
    e.inFlight--;
    if (e.inFlight === 0 && e.drained) this.#wakeDrains(e);
  }

  /**
   * Marks `e`'s probe in flight; returns its serial. Without a per-try timeout nothing else bounds
   * it: a probe that outlives the ejection it follows, and at least {@link HUNG_PROBE_MS}, is given
   * up as failed, so that a hung call cannot keep the endpoint out for good (a slow probe that
   * answers is not hung: it brings the endpoint back, and whatever watches latency judges it).
   */
  #startProbe(e: EndpointState<T>): number {
    e.probing = true;
    const serial = ++e.probeSerial;
    if (this.#o.timeout !== undefined) return serial;
    this.#clearTimer(e);
    this.#timers.set(
      e,
      this.#clock.setTimeout(
        () => {
          this.#timers.delete(e);
          if (this.#disposed || e.probeSerial !== serial || !e.probing) return;
          e.probing = false;
          // A hung probe counts as failed, with ejection off too (out by eject()): given up only,
          // the next call was its probe again and hung as well, for good.
          if (e.ejection === 'probe') this.#eject(e, this.#elapsed());
        },
        Math.max(e.ejectedFor, HUNG_PROBE_MS),
      ),
    );
    return serial;
  }

  /**
   * `failed` is undefined when the outcome says nothing about the endpoint (the caller aborted).
   * `probe` is the serial of the probe this call was, 0 for none.
   */
  #record(e: EndpointState<T>, failed: boolean | undefined, latency: number, probe: number): void {
    // A probe given up for hanging settles nothing: a later probe may be in flight.
    const current = probe !== 0 && probe === e.probeSerial && e.probing;
    if (current) {
      e.probing = false;
      if (e.ejection === 'probe') this.#clearTimer(e); // its watchdog
    }
    if (failed === undefined || this.#disposed) return;
    if (!failed) e.calledOk = true;
    const now = this.#elapsed();
    const faded = fadedEwma(e, now, this.#o.decay);
    // A clock without monotonic() stepped back during the call: no latency is below zero. Blended
    // in, it made the average hugely negative, and p2c-ewma's cost with it: the endpoint won every
    // draw, the more so the more calls it had in flight.
    const took = Math.max(0, latency);
    // Peak-sensitive: a slower sample takes over at once, a faster one blends in. A failure counts
    // double, up to a minute: doubling without a bound grew to 1e15 over a run of failures.
    const sample = failed ? Math.max(took, Math.min(2 * faded, MAX_FAILURE_EWMA)) : took;
    e.ewma = sample > faded ? sample : faded + (sample - faded) * blend;
    e.ewmaAt = now;
    if (this.#rate !== undefined && !current && e.ejection === 'none') this.#countRate(e, failed, now);
    const counter = this.#counters?.get(e);
    if (!failed) {
      counter?.success();
      // Also with ejection off: an endpoint taken out by eject() comes back through its probe.
      if (current && e.ejection === 'probe') this.#restore(e);
      return;
    }
    // A failed probe is out again, with ejection off too (after eject()): it has no counter.
    if (current && e.ejection === 'probe') this.#eject(e, now);
    else if (counter !== undefined && e.ejection === 'none' && counter.failure()) this.#tryEject(e, now);
  }

  /**
   * Failure-rate ejection: counts a call of `e`, an endpoint in service, after judging the interval
   * before it if that is over (at the first call after it: no timer runs for it). An interval that
   * ended more than an interval ago is dropped unjudged: its calls say little of the endpoints now.
   */
  #countRate(e: EndpointState<T>, failed: boolean, now: number): void {
    const rate = this.#rate as FailureRate;
    // A clock without monotonic() stepped back: start the interval over, judging nothing.
    if (now < this.#rateSince) this.#rateSince = now;
    if (now - this.#rateSince >= rate.interval) {
      if (now - this.#rateSince < 2 * rate.interval) this.#judgeRates(now);
      for (const x of this.#all) x.rateCalls = x.rateFailures = 0;
      this.#rateSince = now;
      if (e.ejection !== 'none') return; // ejected just now: back in service, it starts from nothing
    }
    e.rateCalls++;
    if (failed) e.rateFailures++;
  }

  /**
   * Ejects, worst first, the endpoints that failed `threshold` of at least `requestVolume` calls
   * in the interval just over, when at least `minimumHosts` took that many; within `maxShare`.
   */
  #judgeRates(now: number): void {
    const rate = this.#rate as FailureRate;
    const judged = this.#all.filter((x) => !x.drained && x.ejection === 'none' && x.rateCalls >= rate.requestVolume);
    if (judged.length < rate.minimumHosts) return;
    const share = (x: EndpointState<T>) => x.rateFailures / x.rateCalls;
    const outliers = judged.filter((x) => share(x) >= rate.threshold).sort((x, y) => share(y) - share(x));
    for (const x of outliers) {
      // An earlier ejection here (or a listener of its event) may have changed it.
      if (x.drained || x.ejection !== 'none') continue;
      if (this.#withinShare(x, this.#ejection?.maxShare ?? 0)) this.#eject(x, now, 'failureRate');
    }
  }

  // ---- picking ----

  #pick(key: string | number | undefined, tried: readonly EndpointState<T>[] | undefined): EndpointState<T> {
    if (tried === undefined) {
      const probe = this.#probeFor(key);
      if (probe !== undefined) return probe;
    }
    if (this.#o.mode === 'active-passive') return this.#pickPassive(tried);
    let candidates: readonly EndpointState<T>[] = this.#panic ? this.#inService() : this.#available;
    if (this.#panic && this.#o.panic === 'fail-fast') throw this.#noHealthy();
    if (tried !== undefined) candidates = candidates.filter((e) => !tried.includes(e));
    if (candidates.length === 0) throw this.#noHealthy();
    return this.#balancer.pick(candidates, key, this.#elapsed());
  }

  #pickPassive(tried: readonly EndpointState<T>[] | undefined): EndpointState<T> {
    if (tried === undefined && this.#active !== undefined) return this.#active;
    if (this.#panic && this.#o.panic === 'fail-fast') throw this.#noHealthy();
    const pool = this.#panic ? this.#inService() : this.#available;
    let best: EndpointState<T> | undefined;
    for (const e of pool) {
      if (tried?.includes(e)) continue;
      if (best === undefined || this.#better(e, best)) best = e;
    }
    if (best === undefined) throw this.#noHealthy();
    return best;
  }

  /** With roles: a write goes to the primary or nowhere; a read to the first read tier with an endpoint left. */
  #pickByRole(
    write: boolean,
    key: string | number | undefined,
    tried: readonly EndpointState<T>[] | undefined,
  ): EndpointState<T> {
    if (write) {
      const primary = this.#primary;
      if (primary === undefined || primary.drained) throw this.#noPrimary();
      // The primary is the only place a write can go: ejected or unhealthy, it still takes writes
      // unless panic is 'fail-fast' (Envoy's panic, applied to a tier of one).
      if (this.#isAvailable(primary) || this.#o.panic === 'all') return primary;
      if (primary.ejection === 'probe' && this.#mayProbe(primary)) return primary;
      throw this.#noPrimary();
    }
    if (tried === undefined) {
      for (const e of this.#probes) if (this.#mayProbe(e) && this.#readable(e)) return e;
    }
    const [first, second] = this.#reads;
    let candidates = tried === undefined && first.length > 0 ? first : second;
    if (tried !== undefined) {
      candidates = first.filter((e) => !tried.includes(e));
      if (candidates.length === 0) candidates = second.filter((e) => !tried.includes(e));
    }
    if (candidates.length === 0) throw this.#noHealthy(tried === undefined ? this.#unreadable() : undefined);
    return this.#balancer.pick(candidates, key, this.#elapsed());
  }

  /** Whether a read may go to `e` by its role: a replica within the lag bound, or the primary. */
  #readable(e: EndpointState<T>): boolean {
    if (e === this.#primary) return true;
    const maxLag = this.#o.roles?.maxLag;
    // With a bound, an unknown lag (a replica that never synced, a check that gives none) is not fresh.
    if (e.claim !== 'replica' || e.lag === Number.POSITIVE_INFINITY) return false;
    return maxLag === undefined || (e.lag !== undefined && e.lag <= maxLag);
  }

  /** `e`'s role as errors tell it: `fenced` for a primary outranked, then `, drained` or `, ejected`. */
  #roleText(e: EndpointState<T>): string {
    const role: string = e.claim === 'primary' && e.fenced ? 'fenced' : e.claim;
    return e.drained ? `${role}, drained` : e.ejection !== 'none' ? `${role}, ejected` : role;
  }

  /** `e` as errors list it: its name, its role, and why its role checks fail (a code, no message). */
  #told(e: EndpointState<T>, role: string): string {
    const code = e.claim === 'unreachable' ? errorLabel(e.roleError) : undefined;
    // Hidden as names are: some clients' codes are free text (`auth failed: password=...`).
    return `${e.name}: ${role}${code === undefined ? '' : ` (${hiddenName(code)})`}`;
  }

  /** Why no endpoint may take a read: each one's role, and a replica's lag against `maxLag`. */
  #unreadable(): string {
    const maxLag = this.#o.roles?.maxLag;
    const parts = this.#all.map((e) => {
      let lag = '';
      if (e.claim === 'replica' && e.lag === Number.POSITIVE_INFINITY) lag = ', never synced';
      else if (e.claim === 'replica' && maxLag !== undefined)
        lag =
          e.lag === undefined
            ? ', lag unknown'
            : `, lag ${Math.round(e.lag)} ms${e.lag > maxLag ? ` over maxLag ${maxLag} ms` : ''}`;
      // Its health checks fail: no read unless panic is 'all' (it listed `d: primary`, no reason).
      return this.#told(e, this.#roleText(e) + (e.health === 'unhealthy' ? ', unhealthy' : '') + lag);
    });
    return `none may take a read: ${parts.join('; ')}`;
  }

  #noPrimary(): NoPrimaryError {
    const roles: Record<string, string> = {};
    const parts: string[] = [];
    for (const e of this.#all) {
      const role = this.#roleText(e);
      roles[e.name] = role;
      parts.push(this.#told(e, role));
    }
    const claimants = this.#all.filter((e) => e.claim === 'primary' && !e.drained).length;
    const detail =
      claimants > 1 && this.#primary === undefined
        ? 'primaries tie, none is written to; '
        : this.#all.some((e) => e.tied && e.claim !== 'primary')
          ? 'a split brain, one side silent: none is written to; '
          : '';
    return new NoPrimaryError(this.name, roles, detail + parts.join('; '), { cause: this.#lostCause });
  }

  /** Whether `e`, ejected and its time over, may take a probe now: one at a time, never drained or unhealthy. */
  #mayProbe(e: EndpointState<T>): boolean {
    return !e.probing && !e.drained && e.health !== 'unhealthy';
  }

  /** An ejected endpoint whose time is over takes one call at a time, the probe. */
  #probeFor(key: string | number | undefined): EndpointState<T> | undefined {
    if (this.#probes.length === 0) return undefined;
    for (const e of this.#probes) {
      if (!this.#mayProbe(e)) continue;
      if (this.#o.mode === 'active-passive') {
        // Only an endpoint that would outrank the active one is worth live traffic.
        if (this.#active === undefined || this.#better(e, this.#active)) return e;
      } else if (this.#o.balancer !== 'consistent-hash' || key === undefined) {
        return e;
      } else if (rendezvous([...this.#available, e], key) === e) {
        // Consistent hashing probes with the keys that belong to the endpoint, so no key moves.
        return e;
      }
    }
    return undefined;
  }

  #hasCandidate(tried: readonly EndpointState<T>[]): boolean {
    if (this.#roles !== undefined) return this.#reads.some((tier) => tier.some((e) => !tried.includes(e)));
    if (this.#panic && this.#o.panic === 'fail-fast') return false;
    const pool = this.#panic ? this.#inService() : this.#available;
    return pool.some((e) => !tried.includes(e));
  }

  #inService(): EndpointState<T>[] {
    return this.#all.filter((e) => !e.drained);
  }

  /** Active-passive rank: the lower priority number first, then the order given. */
  #better(a: EndpointState<T>, b: EndpointState<T>): boolean {
    if (a.priority !== b.priority) return a.priority < b.priority;
    return a.index < b.index;
  }

  #noHealthy(why?: string): NoHealthyEndpointError {
    return new NoHealthyEndpointError(this.name, this.#available.length, this.#inService().length, undefined, why);
  }

  // ---- state changes ----

  #isAvailable(e: EndpointState<T>): boolean {
    return !e.drained && e.health === 'healthy' && e.ejection === 'none';
  }

  /** Recomputes everything derived from endpoint states: the lists, panic, the active endpoint. */
  #refresh(reason: 'failover' | 'manual', emit = true): void {
    const now = this.#elapsed();
    const available: EndpointState<T>[] = [];
    const probes: EndpointState<T>[] = [];
    for (const e of this.#all) {
      if (this.#isAvailable(e)) {
        available.push(e);
        e.availableSince ??= now;
      } else {
        e.availableSince = undefined;
        if (e.ejection === 'probe') probes.push(e);
      }
    }
    this.#available = available;
    this.#probes = probes;
    const total = this.#all.length - this.#all.filter((e) => e.drained).length;
    const panic =
      this.#o.mode === 'active-passive'
        ? available.length === 0
        : total === 0 || available.length < this.#o.panicThreshold * total;
    if (panic !== this.#panic) {
      this.#panic = panic;
      if (emit && this.#bus.wants('failover.panic')) {
        this.#bus.emit({
          type: 'failover.panic',
          source: this.name,
          time: this.#clock.now(),
          healthy: available.length,
          total,
          active: panic,
        });
      }
    }
    if (this.#o.mode === 'active-passive') this.#elect(reason, now, emit);
    if (this.#o.roles !== undefined) this.#electPrimary(emit);
  }

  /**
   * With roles: the primary is the endpoint claiming primary whose token beats every other
   * claimant's; any other claimant is fenced. Claimants that tie (or that `compare` cannot order)
   * are all fenced: a write to the wrong one is lost. One that lost to a newer token stays fenced
   * until it reports replica or a token newer than the one it lost to, even once the winner is
   * gone: its history ended there, and writes to it would be lost when it is rebuilt. A primary
   * whose checks went unanswered lost to any other elected while it was silent. Claimants that
   * tied stay a split brain while one of them is silent (frozen, cut off: taking others' writes,
   * maybe the one the operator keeps): the others take no write until it reports replica or a
   * token they beat, or is drained.
   */
  #electPrimary(emit: boolean): void {
    for (const e of this.#all) {
      if (e.claim === 'replica' || e.drained) e.tied = false;
      const lost = e.fencedBy;
      if (lost === undefined) continue;
      if (e.claim === 'replica' || (e.claim === 'primary' && this.#order(e.token, lost.token) > 0)) {
        e.fencedBy = undefined;
      }
    }
    // Drained last: one drained ties with nobody (the operator kept the other), and loses to it.
    const candidates = this.#all
      .filter((e) => e.claim === 'primary' && e.fencedBy === undefined)
      .sort((x, y) => Number(x.drained) - Number(y.drained));
    let best: EndpointState<T> | undefined;
    for (const e of candidates) if (best === undefined || this.#order(e.token, best.token) > 0) best = e;
    const winner = best;
    const ties = (e: EndpointState<T>) => !e.drained && !(this.#order(winner?.token, e.token) > 0);
    if (winner !== undefined && candidates.some((e) => e !== winner && ties(e))) {
      best = undefined;
      for (const e of candidates) if (ties(e)) e.tied = true;
    } else if (winner?.tied && this.#all.some((e) => e !== winner && e.tied && e.claim !== 'primary')) {
      best = undefined;
    } else if (winner !== undefined) for (const e of this.#all) e.tied = false;
    const top = best;
    if (top !== undefined) {
      // A drained one fences only those it beats: drained to keep the other side of a tie, it must
      // not fence that side, silent now, once it is back.
      const fences = (e: EndpointState<T>) => e !== top && (!top.drained || this.#order(top.token, e.token) > 0);
      for (const e of candidates) if (fences(e)) e.fencedBy = { token: top.token };
      // A primary silent while another was elected lost to it too: back claiming an older history
      // (frozen, resumed after the new one went silent in turn), it takes no write.
      for (const e of this.#all) {
        if (e.claim !== 'unreachable' || !e.silentPrimary || !fences(e)) continue;
        if (e.fencedBy === undefined || this.#order(top.token, e.fencedBy.token) > 0) e.fencedBy = { token: top.token };
      }
    }
    const previous = this.#primary;
    this.#primary = best;
    if (previous !== undefined && best !== previous) this.#lostCause = previous.roleError ?? this.#lostCause;
    const now = this.#clock.now();
    for (const e of this.#all) {
      const fenced = e.claim === 'primary' && e !== best;
      const wasFenced = e.fenced;
      e.fenced = fenced;
      const role: DiscoveredRole = fenced ? 'fenced' : e.claim;
      const before = e.discovered;
      e.discovered = role;
      if (!emit || role === before || role === 'unknown') continue;
      if (this.#bus.wants('failover.role')) {
        this.#bus.emit({
          type: 'failover.role',
          source: this.name,
          time: now,
          endpoint: e.name,
          role,
          previous: before,
          token: tokenText(e.token),
          code: role === 'unreachable' ? errorLabel(e.roleError) : undefined,
        });
      }
      if (fenced && !wasFenced && this.#bus.wants('failover.fence')) {
        this.#bus.emit({
          type: 'failover.fence',
          source: this.name,
          time: now,
          endpoint: e.name,
          primary: best?.name,
          token: tokenText(e.token),
          primaryToken: tokenText(best?.token),
        });
      }
    }
    this.#splitBrain(now, emit);
    if (best !== undefined && best !== previous) this.#switch(best, 'failover', emit);
    for (const wake of [...this.#roleWaiters]) wake();
    const tiers = (pool: readonly EndpointState<T>[]) => {
      const replicas = pool.filter((e) => e !== best && this.#readable(e));
      const primary = best !== undefined && pool.includes(best) ? [best] : [];
      return this.#o.roles?.reads === 'primary' ? [primary, replicas] : [replicas, primary];
    };
    let [first = [], second = []] = tiers(this.#panic && this.#o.panic === 'all' ? this.#inService() : this.#available);
    // No server a read may go to is available: with panic 'all', reads go to them anyway.
    if (first.length + second.length === 0 && this.#o.panic === 'all')
      [first = [], second = []] = tiers(this.#inService());
    this.#reads = [first, second];
  }

  /** Follows the endpoints tied in a split brain (two or more: one left tied holds nothing); tells when it starts and ends. */
  #splitBrain(now: number, emit: boolean): void {
    const tied = this.#all.filter((e) => e.tied).map((e) => e.name);
    const was = this.#split;
    if (tied.length > 1) this.#split = { endpoints: tied, since: was?.since ?? now };
    else this.#split = undefined;
    const on = this.#split ?? was;
    if (
      emit &&
      on !== undefined &&
      (was === undefined) !== (this.#split === undefined) &&
      this.#bus.wants('failover.splitBrain')
    )
      this.#bus.emit({
        type: 'failover.splitBrain',
        source: this.name,
        time: now,
        active: was === undefined,
        disposed: false,
        // A copy: a listener that changed it changed the snapshot and the health text.
        endpoints: [...on.endpoints],
        since: on.since,
      });
  }

  /** `compare`, guarded: one that throws or answers NaN orders nothing (a tie, so no writes). */
  #order(a: unknown, b: unknown): number {
    try {
      const c = this.#compare(a, b);
      return typeof c === 'number' && !Number.isNaN(c) ? c : 0;
    } catch {
      return 0;
    }
  }

  #onRole(e: EndpointState<T>, previous: EndpointState['claim']): void {
    if (this.#disposed) return;
    // Its role check answers again after it was lost: that proves more than a probe would.
    if (previous === 'unreachable' && e.ejection !== 'none') this.#restore(e);
    else this.#refresh('failover');
  }

  /** Active-passive: keeps the active endpoint, replaces it when it went away, fails back when due. */
  #elect(reason: 'failover' | 'manual', now: number, emit: boolean): void {
    let best: EndpointState<T> | undefined;
    for (const e of this.#available) if (best === undefined || this.#better(e, best)) best = e;
    const current = this.#active;
    if (current === undefined || !this.#isAvailable(current)) {
      if (best !== undefined) this.#switch(best, reason, emit);
      else this.#active = undefined;
    } else if (best !== undefined && this.#better(best, current) && this.#o.failback === 'auto') {
      // Ranked as everywhere else (priority, then the order given): by priority alone, a set of
      // equal priorities (plain strings) never failed back to the first, while failback() did.
      // A clock without monotonic() stepped back must not stretch the hold-down past its length.
      if (best.availableSince === undefined || best.availableSince > now) best.availableSince = now;
      const due = best.availableSince + this.#o.holdDown;
      if (now >= due) this.#switch(best, 'failback', emit);
      else this.#armFailback(due - now);
    }
  }

  #armFailback(delay: number): void {
    if (this.#failbackTimer !== undefined) this.#clock.clearTimeout(this.#failbackTimer);
    this.#failbackTimer = this.#clock.setTimeout(() => {
      this.#failbackTimer = undefined;
      if (!this.#disposed) this.#refresh('failover');
    }, delay);
  }

  #switch(to: EndpointState<T>, reason: 'failover' | 'failback' | 'manual', emit: boolean): void {
    const from = this.#active;
    this.#active = to;
    // Back in service from now, not from its restore: a standby held down idle served nothing,
    // and counted, a hold-down as long as baseTime forgave an ejection each round (30 s for good).
    if (reason === 'failback' && from !== to && to.restoredAt !== undefined) to.restoredAt = this.#elapsed();
    if (from === to || !emit) return;
    if (this.#bus.wants('failover.switch')) {
      this.#bus.emit({
        type: 'failover.switch',
        source: this.name,
        time: this.#clock.now(),
        from: from?.name,
        to: to.name,
        reason,
      });
    }
  }

  #onHealth(e: EndpointState<T>, healthy: boolean): void {
    if (this.#disposed) return;
    e.health = healthy ? 'healthy' : 'unhealthy';
    if (this.#bus.wants('health.change')) {
      this.#bus.emit({ type: 'health.change', source: this.name, time: this.#clock.now(), endpoint: e.name, healthy });
    }
    // The checks saw it fail and recover: that proves more than a probe would, so it is back.
    if (healthy && e.ejection !== 'none') this.#restore(e);
    else this.#refresh('failover');
  }

  /**
   * Whether ejecting `e` keeps the ejected within `share` of the endpoints in service (one always
   * may be). Drained endpoints count on neither side: they take no calls, ejected or not, and one
   * drained for days must not hold the ejection another needs.
   */
  #withinShare(e: EndpointState<T>, share: number): boolean {
    let inService = 0;
    let out = 0;
    for (const x of this.#all) {
      if (x.drained) continue;
      inService++;
      if (x !== e && x.ejection !== 'none') out++;
    }
    return out + 1 <= Math.max(1, Math.floor(share * inService));
  }

  /** Ejects `e` unless that would take more than the allowed share of endpoints out. */
  #tryEject(e: EndpointState<T>, now: number): void {
    if (!this.#withinShare(e, this.#ejection?.maxShare ?? 0)) {
      // Refused: the run starts over, so the next trip asks again.
      this.#counters?.get(e)?.reset();
      return;
    }
    this.#eject(e, now);
  }

  /**
   * Ejects `e` for failures (or its failure rate, or a failed probe): for the backoff's next time.
   * With ejection off only a probe after eject() gets here: it is out again for twice its last
   * time, up to the default `maxTime` (never shorter than the time eject() was given). Left in
   * 'probe', every call after it was its probe again, first in line, for good.
   */
  #eject(e: EndpointState<T>, now: number, reason = 'failures'): void {
    const ejection = this.#ejection;
    if (ejection === undefined) {
      e.ejections++;
      const cap = Math.max(e.ejectedFor, DEFAULT_MAX_EJECTION_MS);
      this.#ejectFor(e, Math.min(2 * e.ejectedFor, cap), reason);
      return;
    }
    const { baseTime, maxTime } = ejection;
    e.ejections = remainingEjections(e.ejections, e.restoredAt, now, baseTime) + 1;
    this.#ejectFor(e, ejectionTime(e.ejections, baseTime, maxTime), reason);
  }

  #ejectFor(e: EndpointState<T>, duration: number, reason: string): void {
    const wall = this.#clock.now();
    e.ejection = 'ejected';
    // Shown only (events, snapshots): epoch ms. The timer below is what ends it.
    e.ejectedUntil = wall + duration;
    e.ejectedFor = duration;
    e.ejectionReason = reason;
    // Its count is taken: only time back in service forgives, never the time it spends out. Kept,
    // the restore before this ejection forgave one per baseTime ejected since, and a dead endpoint
    // that came back once was probed every baseTime for good instead of backing off.
    e.restoredAt = undefined;
    e.probing = false; // a probe still in flight settles nothing now
    this.#counters?.get(e)?.reset();
    e.rateCalls = e.rateFailures = 0; // back in service, it is judged on new calls only
    this.#clearTimer(e);
    this.#timers.set(
      e,
      this.#clock.setTimeout(() => {
        this.#timers.delete(e);
        if (this.#disposed || e.ejection !== 'ejected') return;
        e.ejection = 'probe';
        this.#refresh('failover');
      }, duration),
    );
    if (this.#bus.wants('failover.eject')) {
      this.#bus.emit({
        type: 'failover.eject',
        source: this.name,
        time: wall,
        endpoint: e.name,
        until: e.ejectedUntil,
        ejections: e.ejections,
        reason,
      });
    }
    this.#refresh('failover');
  }

  #restore(e: EndpointState<T>): void {
    this.#clearTimer(e);
    e.ejection = 'none';
    e.ejectedUntil = undefined;
    e.ejectionReason = undefined;
    e.restoredAt = this.#elapsed();
    if (this.#bus.wants('failover.restore')) {
      this.#bus.emit({ type: 'failover.restore', source: this.name, time: this.#clock.now(), endpoint: e.name });
    }
    this.#refresh('failover');
  }

  #clearTimer(e: EndpointState<T>): void {
    const timer = this.#timers.get(e);
    if (timer === undefined) return;
    this.#clock.clearTimeout(timer);
    this.#timers.delete(e);
  }

  // ---- operator actions ----

  #find(name: string): EndpointState<T> {
    const e = this.#lookup(name);
    if (e === undefined) throw this.#unknown(name);
    return e;
  }

  /** The endpoint of that name, as shown or as given (a URL with its password, say). */
  #lookup(name: string): EndpointState<T> | undefined {
    return this.#all.find((x) => x.name === name) ?? this.#all.find((x) => x.given === name);
  }

  /** A name that is no endpoint's: a config error naming it (redacted: it may be a URL with a password). */
  #unknown(name: unknown): HoldfastConfigError {
    const shown = typeof name === 'string' ? shownName(name) : name;
    return new HoldfastConfigError(this.name, [
      { path: 'name', message: 'is not an endpoint of this set', value: shown },
    ]);
  }

  drain(name: string): Promise<void> {
    if (this.#disposed) return Promise.reject(new DisposedError(this.name));
    // Documented to settle later: a wrong name rejects the promise, never throws at the caller.
    const e = this.#lookup(name);
    if (e === undefined) return Promise.reject(this.#unknown(name));
    if (!e.drained) {
      e.drained = true;
      this.#refresh('manual');
    }
    if (e.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const waiting = this.#drains.get(e) ?? [];
      waiting.push(resolve);
      this.#drains.set(e, waiting);
    });
  }

  undrain(name: string): void {
    if (this.#disposed) throw new DisposedError(this.name);
    const e = this.#find(name);
    if (!e.drained) return;
    e.drained = false;
    // The drain is over: a drain() still waiting resolves now. Left waiting, it hung once the
    // calls settled (only a drained endpoint woke it), and under load one back in service may
    // never have nothing in flight.
    this.#wakeDrains(e);
    this.#refresh('manual');
  }

  eject(name: string, options: EjectOptions): boolean {
    if (this.#disposed) throw new DisposedError(this.name);
    const { durationMs, reason } = parseOptions(`${this.name}.eject`, ejectOptionsSchema, options);
    const e = this.#find(name);
    // A drained endpoint takes no calls already; an ejection would outlive the drain and probe it.
    if (e.drained) return false;
    // Never the last endpoint that takes calls, nor past the share the set's own ejection keeps to.
    if (!this.#available.some((x) => x !== e)) return false;
    if (!this.#withinShare(e, this.#ejection?.maxShare ?? 0.5)) return false;
    const now = this.#elapsed();
    // A new ejection in a row, unless it is one still running whose time starts over.
    if (e.ejection !== 'ejected') {
      e.ejections = remainingEjections(e.ejections, e.restoredAt, now, this.#ejection?.baseTime ?? durationMs) + 1;
    }
    this.#ejectFor(e, durationMs, reason);
    return true;
  }

  restore(name: string): boolean {
    if (this.#disposed) throw new DisposedError(this.name);
    const e = this.#find(name);
    if (e.ejection === 'none') return false;
    this.#restore(e);
    return true;
  }

  #wakeDrains(e: EndpointState<T>): void {
    const waiting = this.#drains.get(e);
    this.#drains.delete(e);
    if (waiting) for (const wake of waiting) wake();
  }

  failback(): boolean {
    if (this.#disposed) throw new DisposedError(this.name);
    if (this.#o.mode !== 'active-passive' || this.#roles !== undefined) return false;
    let best: EndpointState<T> | undefined;
    for (const e of this.#available) if (best === undefined || this.#better(e, best)) best = e;
    if (best === undefined || best === this.#active) return false;
    if (this.#active !== undefined && !this.#better(best, this.#active)) return false;
    this.#switch(best, 'manual', true);
    return true;
  }

  // ---- observability ----

  snapshot(): FailoverSnapshot {
    const now = this.#elapsed();
    const passive = this.#o.mode === 'active-passive';
    return {
      name: this.name,
      mode: this.#o.mode,
      balancer: passive ? 'priority' : this.#o.balancer,
      active: this.active?.name ?? null,
      primary: this.#primary?.name ?? null,
      panic: this.#panic,
      splitBrain:
        this.#split === undefined ? null : { endpoints: [...this.#split.endpoints], since: this.#split.since },
      endpoints: this.#all.map((e) => ({
        name: e.name,
        // Hidden as names are: a key/value connection string (`host=db user=app password=...`) is no URL.
        target: typeof e.view.target === 'string' ? shownName(e.view.target) : null,
        priority: e.priority,
        weight: e.weight,
        role: e.drained ? 'drained' : !passive ? 'member' : e === this.#active ? 'active' : 'standby',
        health: e.health,
        available: this.#isAvailable(e),
        ejection: e.ejection,
        ejectedUntil: e.ejectedUntil ?? null,
        ejectionReason: e.ejection === 'none' ? null : (e.ejectionReason ?? null),
        ejections: e.ejections,
        inFlight: e.inFlight,
        ewma: Math.round(fadedEwma(e, now, this.#o.decay) * 1000) / 1000,
        discovered: this.#roles === undefined ? null : e.discovered,
        token: tokenText(e.token) ?? null,
        lag: e.lag !== undefined && Number.isFinite(e.lag) ? e.lag : null,
      })),
    };
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#unregister?.();
    this.#checks?.stop();
    this.#roles?.stop();
    // Disposed in a split brain: an alert that saw it start must see it end.
    const split = this.#split;
    this.#split = undefined;
    if (split !== undefined && this.#bus.wants('failover.splitBrain')) {
      const time = this.#clock.now();
      this.#bus.emit({ type: 'failover.splitBrain', source: this.name, time, active: false, disposed: true, ...split });
    }
    for (const timer of this.#timers.values()) this.#clock.clearTimeout(timer);
    this.#timers.clear();
    if (this.#failbackTimer !== undefined) this.#clock.clearTimeout(this.#failbackTimer);
    this.#failbackTimer = undefined;
    for (const end of [...this.#deadlines]) end();
    this.#deadlines.clear();
    // A budget it made itself: off the registry it listed itself in (a disposed set's stayed listed).
    this.#ownBudget?.dispose();
    for (const e of this.#all) this.#wakeDrains(e);
    for (const wake of [...this.#roleWaiters]) wake();
  }
}

/** Whether a predicate answered with a promise (an `async` one) rather than a verdict. */
function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null)?.then === 'function';
}
