import {
  type BrokenCircuitError,
  type Bus,
  CallScope,
  type Clock,
  DisposedError,
  type ErrorLabel,
  type ExecuteOptions,
  elapsedTime,
  errorLabel,
  bus as globalBus,
  policies as globalPolicies,
  invokeIn,
  type Operation,
  type Policy,
  parseOptions,
  realClock,
  type Snapshottable,
  shieldBus,
  type Unregister,
  warnOnce,
} from '@holdfast/core';
import { refusal } from './errors.js';
import {
  type BreakerConfig,
  type BreakerSnapshot,
  type BreakerState,
  breakerOptionsSchema,
  type CircuitBreakerOptions,
  openDuration,
} from './options.js';
import { defaultIsFailure, type IsFailure, type Outcome, toOutcome } from './outcome.js';
import { RollingWindow, type WindowCounts } from './window.js';

// States as small integers: the hot path compares one number.
const CLOSED = 0;
const OPEN = 1;
const HALF_OPEN = 2;
const ISOLATED = 3;
const DISABLED = 4;
const DISPOSED = 5;
type StateCode = 0 | 1 | 2 | 3 | 4 | 5;
const stateNames: readonly BreakerState[] = ['closed', 'open', 'halfOpen', 'isolated', 'disabled'];

type OpenReason = 'failureRate' | 'slowCallRate' | 'consecutiveFailures' | 'halfOpenFailure' | 'manual' | 'restored';

/**
 * Core's CallScope, read once. In the CommonJS build each use of an import reads a getter on
 * core's exports object, a dictionary of ~100 names: a megamorphic load (~290 instructions under
 * callgrind, a tenth of a closed breaker's successful call) at every `new CallScope`.
 */
const Scope = CallScope;

const NO_FALLBACK: unique symbol = Symbol('no fallback');
/** The start time of a call whose latency is not measured: every latency computed from it is NaN. */
const UNTIMED = Number.NaN;
const ResponseClass: typeof Response | undefined = globalThis.Response;
/**
 * The shortest wait a half-open breaker asks of a caller refused while its probes are out (ms),
 * unless `openFor` is shorter: long enough that a caller who trusts `retryAt` does not spin.
 */
const PROBE_PAUSE_MS = 100;

/**
 * A circuit breaker. Calls flow while it is closed; when failures (or slow calls) in the
 * rolling window reach a threshold it opens and refuses calls with a `BrokenCircuitError`;
 * after `openFor` it lets probes through (half-open) and closes when enough succeed.
 * Transitions out of open happen on the next call or state read: no timer runs.
 */
export class CircuitBreakerPolicy implements Policy, Snapshottable<BreakerSnapshot> {
  readonly name: string;
  readonly #bus: Bus;
  readonly #clock: Clock;
  /**
   * The clock's monotonic time: every duration, deadline and window of the breaker is on it,
   * so a wall-clock step (NTP, a VM resume) neither opens nor closes anything. Epoch ms from
   * `now()` are for what it shows: event times, `retryAt`.
   */
  readonly #elapsed: () => number;
  readonly #config: BreakerConfig;
  readonly #isFailure: IsFailure | undefined;
  readonly #fallback: unknown;
  readonly #failureRate: number;
  readonly #slowAfter: number;
  readonly #slowRate: number;
  readonly #consecutiveLimit: number;
  /** Every call's latency is needed: a slow-call rule, or a clock that costs nothing to read. */
  readonly #timeAll: boolean;
  readonly #window: RollingWindow;
  readonly #unregister: Unregister | undefined;

  #state: StateCode = CLOSED;
  /** The state reported after dispose(). */
  #lastState: StateCode = CLOSED;
  /** Bumped on every transition: a call that settles in a later state is not counted. */
  #generation = 0;
  #retryAt = 0;
  /** How long the current open period lasts: no `retryAt` is further from now than this. */
  #openFor = 0;
  #opens = 0;
  #consecutive = 0;
  #probes = 0;
  #probeSuccesses = 0;
  /** How long a probe is expected to take: the p99 latency when it opened, within [pause, openFor]. */
  #probeWait = PROBE_PAUSE_MS;
  /** When the oldest probe out is expected back: the `retryAt` of a call refused meanwhile. */
  #probeDueAt = 0;
  /**
   * Since when the probes now out are waited for: the start of the oldest still out, or the last
   * counted answer if later (probes still out are hung only if none answers for maxWait).
   */
  #probesSince = 0;
  /** When each probe still out began, oldest first (at most maxProbes). */
  readonly #probeStarts: number[] = [];
  /**
   * When it was last called (monotonic ms), for a registry's idle and LRU eviction: set from the
   * clock read a call makes anyway, or, in a breaker a registry holds, by one read for it when
   * the call reads none. A breaker held and called (a pipeline built once over `hosts.get(key)`)
   * is in use though the registry sees no get().
   */
  #usedAt = Number.NEGATIVE_INFINITY;
  /** Held by a registry: every call dates `#usedAt`, so its idle drop is never early nor late. */
  #tracked = false;

  /** `name` and `restore` default to the config's; a registry shares one config among its keys. */
  constructor(config: BreakerConfig, name = config.name, restore = config.restore) {
    this.name = name;
    this.#config = config;
    this.#bus = config.bus === undefined ? globalBus : shieldBus(config.bus, name);
    this.#clock = config.clock ?? realClock;
    this.#elapsed = elapsedTime(this.#clock);
    this.#isFailure = config.isFailure;
    this.#fallback = config.fallback === undefined ? NO_FALLBACK : config.fallback;
    const consecutive = config.consecutiveFailures;
    this.#consecutiveLimit = consecutive ?? Number.POSITIVE_INFINITY;
    this.#failureRate = consecutive === undefined ? (config.failureRateThreshold ?? 0.5) : Number.POSITIVE_INFINITY;
    this.#slowAfter = config.slowCall?.duration ?? Number.POSITIVE_INFINITY;
    this.#slowRate = config.slowCall?.rateThreshold ?? Number.POSITIVE_INFINITY;
    this.#timeAll = config.slowCall !== undefined || this.#clock !== realClock;
    const now = this.#elapsed();
    const wall = this.#clock.now();
    const prime = restore && wall - restore.time < config.window.duration ? countsOf(restore) : undefined;
    this.#window = new RollingWindow(config.window.duration, config.window.buckets, now, prime);
    if (restore) this.#restore(restore, now, wall);
    const listing = config.policies ?? globalPolicies;
    if (listing !== false) this.#unregister = listing.register('breaker', name, this);
  }

  /**
   * Whether a registry should keep this breaker rather than give its key a fresh, closed one.
   * To make room (`idle` false): any but a closed one. An open one that is due lets a single
   * probe through, a half-open one only its probes: a closed one lets everything through.
   * Unused for `idleTtl` (`idle` true): open and not yet due, isolated or disabled; one whose
   * `openFor` passed that long ago with no call since has a verdict too old to keep. @internal
   */
  static holdsState(breaker: CircuitBreakerPolicy, idle: boolean): boolean {
    const state = breaker.#state;
    if (!idle) return state !== CLOSED && state !== DISPOSED;
    return state === ISOLATED || state === DISABLED || (state === OPEN && breaker.#elapsed() < breaker.#retryAt);
  }

  /**
   * Makes every call date the breaker's last use, those that read no clock for their latency
   * too: a registry holding it reads that time for its idle drop and LRU eviction. @internal
   */
  static trackUse(breaker: CircuitBreakerPolicy): void {
    breaker.#tracked = true;
  }

  /** When the breaker was last called (monotonic ms, on its clock), if tracked. @internal */
  static usedAt(breaker: CircuitBreakerPolicy): number {
    return breaker.#usedAt;
  }

  /** The current state. An open breaker whose `openFor` has passed turns half-open here. */
  get state(): BreakerState {
    if (this.#state === DISPOSED) return stateNames[this.#lastState] as BreakerState;
    return stateNames[this.#refresh(this.#elapsed())] as BreakerState;
  }

  /**
   * Runs `fn` if the breaker lets it: counts its outcome, or refuses it with a
   * `BrokenCircuitError` (or serves the `fallback`) without running it.
   */
  execute<T>(fn: Operation<T>, options?: ExecuteOptions): Promise<T> {
    // A call the caller already aborted is not run, nor counted. Most calls pass no options: they
    // skip the `instanceof`, whose Symbol.hasInstance lookups V8 did not cache (two megamorphic
    // keyed loads, ~580 of a refusal's ~9,300 instructions under callgrind).
    if (options != null) {
      if (options instanceof Scope) {
        if (options.aborted) return Promise.reject(options.reason);
      } else if (Scope.abortable(options)) {
        // The caller's signal is followed by a scope made here, before the gate: one that is no
        // signal (a string, `{}`) refuses the call as an aborted one does. It ran and counted.
        const scope = new Scope(options);
        if (scope.aborted) {
          scope.release();
          return Promise.reject(scope.reason);
        }
        // Closed (the hot path): the call releases the scope as it settles, nothing more allocated.
        if (this.#state === CLOSED) return this.#call(fn, scope, this.#startTime(), this.#generation, false, true);
        return this.#gate(fn, scope).finally(() => scope.release());
      }
    }
    if (this.#state === CLOSED) return this.#call(fn, options, this.#startTime(), this.#generation, false);
    return this.#gate(fn, options);
  }

  /**
   * When a closed breaker's call starts, if its latency is wanted: by the slow-call rule, by a
   * listener (the outcome events carry it), or for the sample the latency percentiles come from.
   */
  #startTime(): number {
    if (
      this.#timeAll ||
      this.#window.wantsSample() ||
      this.#bus.wants('breaker.success') ||
      this.#bus.wants('breaker.failure')
    ) {
      const now = this.#elapsed();
      this.#usedAt = now;
      return now;
    }
    // No clock read for the latency. A breaker a registry holds reads one for its last use: a
    // call dated only when the registry next looked could be kept without bound past idleTtl,
    // and one dated before it was made could be dropped (and disposed) under its caller.
    if (this.#tracked) this.#usedAt = this.#elapsed();
    return UNTIMED;
  }

  /** Opens the breaker by hand, for `openFor`; then it probes as usual. */
  open(): void {
    this.#live();
    // An open time that ran out is over whether or not anyone looked: it opens again, straight
    // from open (through #refresh it told of a half-open state no call saw: breaker.halfOpen).
    const now = this.#elapsed();
    if (this.#state !== OPEN || now >= this.#retryAt) this.#open('manual', now, undefined);
  }

  /** Closes the breaker by hand and empties its window. */
  close(): void {
    this.#live();
    if (this.#state !== CLOSED) this.#close('manual', this.#elapsed());
  }

  /** Holds the breaker open until `close()` or `open()`: every call is refused. */
  isolate(): void {
    this.#live();
    if (this.#state === ISOLATED) return;
    this.#enter(ISOLATED);
    if (this.#bus.wants('breaker.isolate')) {
      this.#bus.emit({ type: 'breaker.isolate', source: this.name, time: this.#clock.now() });
    }
  }

  /** Lets every call through and records nothing until `close()`, `open()` or `isolate()`. */
  disable(): void {
    this.#live();
    if (this.#state === DISABLED) return;
    this.#enter(DISABLED);
    if (this.#bus.wants('breaker.disable')) {
      this.#bus.emit({ type: 'breaker.disable', source: this.name, time: this.#clock.now() });
    }
  }

  snapshot(): BreakerSnapshot {
    const now = this.#elapsed();
    const wall = this.#clock.now();
    const state = this.#state === DISPOSED ? this.#lastState : this.#refresh(now);
    const w = this.#window;
    w.advance(now);
    const totals = w.totals;
    const [p50, p95, p99] = w.latency([0.5, 0.95, 0.99]);
    const retryAt = state === OPEN ? this.#shown(this.#retryAt, now, wall) : null;
    return {
      name: this.name,
      state: stateNames[state] as BreakerState,
      time: wall,
      retryAt,
      retryIn: retryAt === null ? null : Math.max(0, retryAt - wall),
      opens: this.#opens,
      consecutiveFailures: this.#consecutive,
      probes: { inFlight: this.#probes, succeeded: this.#probeSuccesses },
      window: {
        duration: this.#config.window.duration,
        buckets: this.#config.window.buckets,
        calls: w.calls,
        successes: w.calls - w.failures,
        failures: w.failures,
        slow: w.slow,
        timeouts: totals.timeouts,
        rejects: totals.rejects,
        fallbacks: totals.fallbacks,
        failureRate: w.calls === 0 ? 0 : w.failures / w.calls,
        slowCallRate: w.calls === 0 ? 0 : w.slow / w.calls,
      },
      latency: { p50: p50 ?? null, p95: p95 ?? null, p99: p99 ?? null },
    };
  }

  /**
   * Calls afterwards reject with `E_DISPOSED`; calls in flight settle unrecorded. Its snapshot
   * still shows it as it was (state, failures in a row, probes that succeeded, a window that ages
   * as time passes): one saved at shutdown restores the breaker it was, not a fresh one.
   */
  dispose(): void {
    if (this.#state === DISPOSED) return;
    this.#lastState = this.#state;
    this.#state = DISPOSED;
    this.#generation++;
    this.#probes = 0; // none is waited for: they settle unrecorded
    this.#probeStarts.length = 0;
    this.#unregister?.();
  }

  #gate<T>(fn: Operation<T>, options: ExecuteOptions | undefined): Promise<T> {
    const now = this.#elapsed();
    this.#usedAt = now;
    switch (this.#refresh(now)) {
      case HALF_OPEN: {
        if (this.#probes < this.#config.halfOpen.maxProbes) {
          if (this.#probes++ === 0) {
            this.#probeDueAt = now + this.#probeWait;
            this.#probesSince = now;
          }
          this.#probeStarts.push(now);
          return this.#call(fn, options, now, this.#generation, true);
        }
        // Probes out past maxWait (hung, with nothing around them to time them out): given up.
        const { maxWait } = this.#config.halfOpen;
        // A clock without monotonic() stepped back (NTP): count maxWait from now, not the hour the step added.
        if (now < this.#probesSince) this.#probesSince = now;
        const givenUpAt = maxWait === false ? Number.POSITIVE_INFINITY : this.#probesSince + maxWait;
        if (now >= givenUpAt) {
          // Given up when maxWait ran out, not when a call came to notice: the open time counts
          // from then, so a caller told to come back at its end (below) is let through.
          this.#open('halfOpenFailure', now, 'E_PROBE_HUNG', givenUpAt);
          return this.#gate(fn, options);
        }
        // Probes are out: come back when one is expected to have settled; if one is overdue, a
        // wait later again. Never "now", or a caller that trusts `retryAt` spins until it settles.
        // (Also when it is further off than a wait: a clock without monotonic() stepped back.)
        if (now >= this.#probeDueAt || this.#probeDueAt - now > this.#probeWait)
          this.#probeDueAt = now + this.#probeWait;
        // If they will be given up first (a maxWait under the probe time): when the open time that
        // follows ends. At the give-up itself the breaker opens again and lets nothing through.
        const due = this.#probeDueAt;
        return this.#reject(
          now,
          'halfOpen',
          due < givenUpAt ? due : givenUpAt + openDuration(this.#config.openFor, this.#opens + 1),
        );
      }
      case OPEN:
        return this.#reject(now, 'open', this.#retryAt);
      case ISOLATED:
        return this.#reject(now, 'isolated', undefined);
      case DISABLED:
        return this.#passThrough(fn, options);
      case DISPOSED:
        return Promise.reject(new DisposedError(this.name));
      default:
        return this.#call(fn, options, now, this.#generation, false);
    }
  }

  async #call<T>(
    fn: Operation<T>,
    options: ExecuteOptions | undefined,
    start: number,
    generation: number,
    probe: boolean,
    /** `options` is a scope made by execute() for this call: released here. */
    owned = false,
  ): Promise<T> {
    // The breaker never aborts a call, so an outer policy's context serves as ours. No options
    // (most calls) skip the `instanceof`: see the one in execute().
    const scope = options != null && options instanceof Scope ? options : new Scope(options);
    let result: T;
    try {
      result = await fn(scope);
    } catch (error) {
      // A failure after the caller gave up says nothing of the dependency: it is not counted.
      if (scope.aborted) {
        this.#settle(false, error, start, generation, probe, true);
        throw scope.reason; // once the caller aborts, its reason is the outcome
      }
      this.#settle(false, error, start, generation, probe);
      throw error;
    } finally {
      if (owned || scope !== options) scope.release();
    }
    this.#settle(true, result, start, generation, probe);
    if (scope.aborted) throw scope.reason;
    return result;
  }

  async #passThrough<T>(fn: Operation<T>, options: ExecuteOptions | undefined): Promise<T> {
    const scope = options instanceof Scope ? options : new Scope(options);
    try {
      // Nothing recorded, but the abort rules hold: a caller that aborted gets its reason.
      return await invokeIn(fn, scope);
    } finally {
      if (scope !== options) scope.release();
    }
  }

  #settle(ok: boolean, value: unknown, start: number, generation: number, probe: boolean, gaveUp = false): void {
    // Disposed (a registry evicted it) while the call ran: unrecorded, and unannounced too. An
    // event would bring its name back to the exporters, which dropped it when it left, for good.
    if (this.#state === DISPOSED) return;
    const outcome = gaveUp ? 'ignored' : this.#judge(ok, value);
    const current = generation === this.#generation;
    if (outcome === 'ignored') {
      if (probe && current) {
        this.#probes--;
        // Its slot is free, and its start no longer counts: the probes still out are waited for
        // from the oldest one's start (or the last answer, if later), never from this one's.
        this.#probeDone(start);
        const oldest = this.#probeStarts[0];
        if (oldest !== undefined && oldest > this.#probesSince) this.#probesSince = oldest;
      }
      return;
    }
    const failure = outcome === 'failure';
    if (!failure && !probe && Number.isNaN(start)) {
      // An untimed success changes no state and needs no clock: it counts in the newest slice
      // as of the last read, which a timed call (one in 8 at most) or a failure moved on.
      if (current) {
        this.#window.record(false, false, UNTIMED, false);
        this.#consecutive = 0;
      }
      return;
    }
    const now = this.#elapsed();
    const latency = now - start;
    const slow = !failure && latency > this.#slowAfter;
    // A listener that came while an untimed call ran misses that call: there is no latency to give.
    if (!Number.isNaN(latency)) this.#emitOutcome(failure, slow, latency, ok, value);
    // The state moved on while the call ran (opened, closed by hand, disposed): not counted.
    if (!current) return;
    const w = this.#window;
    w.advance(now);
    w.record(failure, slow, latency, failure && isTimeout(value));
    if (probe) {
      this.#probes--;
      this.#probeDone(start);
      // A probe answered: the ones still out are hung only if none answers for maxWait from now.
      this.#probesSince = now;
      if (failure || slow) this.#open('halfOpenFailure', now, failure ? label(ok, value) : undefined);
      else if (++this.#probeSuccesses >= this.#config.halfOpen.successesToClose) this.#close('probes', now);
      return;
    }
    if (failure) {
      this.#consecutive++;
      if (this.#consecutive >= this.#consecutiveLimit) this.#open('consecutiveFailures', now, label(ok, value));
      // The ratio, as the snapshot shows it: the product rounds (0.56 * 25 is 14.000000000000002,
      // so 14 failures of 25 would not reach 0.56). A division costs no more than a multiply here.
      else if (w.calls >= this.#config.minimumCalls && w.failures / w.calls >= this.#failureRate) {
        this.#open('failureRate', now, label(ok, value));
      }
    } else {
      this.#consecutive = 0;
      if (slow && w.calls >= this.#config.minimumCalls && w.slow / w.calls >= this.#slowRate) {
        this.#open('slowCallRate', now, undefined);
      }
    }
  }

  /** A probe that began at `start` is no longer out. */
  #probeDone(start: number): void {
    const starts = this.#probeStarts;
    const at = starts.indexOf(start);
    if (at !== -1) starts.splice(at, 1);
  }

  #judge(ok: boolean, value: unknown): Outcome {
    const judge = this.#isFailure;
    try {
      if (judge === undefined) {
        // Only an object can be a Response: most results skip the instanceof.
        if (ok && (typeof value !== 'object' || value === null || !(ResponseClass && value instanceof ResponseClass))) {
          return 'success';
        }
        return defaultIsFailure(ok ? { ok, result: value } : { ok: false, error: value });
      }
      return toOutcome(judge(ok ? { ok: true, result: value } : { ok: false, error: value }));
    } catch (error) {
      // A judge that throws (or answers nonsense), or a value whose getters throw (a Proxy, a
      // hostile `name`), cannot clear the call: count it against the downstream. A judge of
      // the user's is told, or an async one silently opens the breaker on healthy calls.
      if (judge !== undefined) {
        const text = `${this.name}: isFailure threw or answered no outcome (reported once per function); the call counts as a failure`;
        warnOnce(toldJudges, judge, 'HOLDFAST_PREDICATE_ERROR', text, error);
      }
      return 'failure';
    }
  }

  #emitOutcome(failure: boolean, slow: boolean, latency: number, ok: boolean, value: unknown): void {
    const bus = this.#bus;
    const clock = this.#clock;
    if (failure) {
      if (bus.wants('breaker.failure')) {
        bus.emit({ type: 'breaker.failure', source: this.name, time: clock.now(), latency, code: label(ok, value) });
      }
      return;
    }
    if (bus.wants('breaker.success')) {
      bus.emit({ type: 'breaker.success', source: this.name, time: clock.now(), latency });
    }
    if (slow && bus.wants('breaker.slow')) {
      bus.emit({ type: 'breaker.slow', source: this.name, time: clock.now(), latency, threshold: this.#slowAfter });
    }
  }

  #reject<T>(now: number, state: 'open' | 'halfOpen' | 'isolated', due: number | undefined): Promise<T> {
    const fallback = this.#fallback;
    const served = fallback !== NO_FALLBACK;
    this.#window.advance(now);
    this.#window.reject(served);
    const wall = this.#clock.now();
    const retryAt = due === undefined ? undefined : this.#shown(due, now, wall);
    if (this.#bus.wants('breaker.reject')) {
      this.#bus.emit({
        type: 'breaker.reject',
        source: this.name,
        time: wall,
        state,
        retryAt,
        code: 'E_CIRCUIT_OPEN',
        fallback: served,
      });
    }
    if (!served) return Promise.reject(refusal(this.name, retryAt));
    if (typeof fallback !== 'function') return Promise.resolve(fallback as T);
    return this.#serve(fallback as (error: BrokenCircuitError) => T | PromiseLike<T>, refusal(this.name, retryAt));
  }

  async #serve<T>(fallback: (error: BrokenCircuitError) => T | PromiseLike<T>, error: BrokenCircuitError): Promise<T> {
    return fallback(error);
  }

  /** Turns an open breaker half-open once `openFor` has passed; returns the state. */
  #refresh(now: number): StateCode {
    if (this.#state !== OPEN) return this.#state;
    if (now >= this.#retryAt) {
      this.#enter(HALF_OPEN);
      if (this.#bus.wants('breaker.halfOpen')) {
        this.#bus.emit({ type: 'breaker.halfOpen', source: this.name, time: this.#clock.now() });
      }
    } else if (this.#retryAt - now > this.#openFor) {
      // A clock without monotonic() stepped back (NTP), or a restored retryAt came from a clock
      // that ran ahead: wait openFor from now, not the hour the step added.
      this.#retryAt = now + this.#openFor;
    }
    return this.#state;
  }

  /** Opens it; the open time counts from `since` (hung probes were given up when maxWait ran out). */
  #open(reason: OpenReason, now: number, code: ErrorLabel, since = now): void {
    this.#opens++;
    this.#enter(OPEN);
    const openFor = openDuration(this.#config.openFor, this.#opens);
    this.#openFor = openFor;
    this.#retryAt = since + openFor;
    // The calls that opened it (timeouts among them) say how long a probe may take.
    this.#window.advance(now);
    const [p99] = this.#window.latency([0.99]);
    this.#probeWait = Math.min(openFor, Math.max(PROBE_PAUSE_MS, p99 ?? 0));
    this.#emitOpen(reason, now, code);
  }

  #emitOpen(reason: OpenReason, now: number, code: ErrorLabel): void {
    if (!this.#bus.wants('breaker.open')) return;
    const w = this.#window;
    const wall = this.#clock.now();
    this.#bus.emit({
      type: 'breaker.open',
      source: this.name,
      time: wall,
      reason,
      failureRate: w.calls === 0 ? 0 : w.failures / w.calls,
      slowCallRate: w.calls === 0 ? 0 : w.slow / w.calls,
      retryAt: this.#shown(this.#retryAt, now, wall),
      opens: this.#opens,
      code,
    });
  }

  #close(reason: 'probes' | 'manual', now: number): void {
    this.#enter(CLOSED);
    this.#opens = 0;
    this.#window.reset(now);
    if (this.#bus.wants('breaker.close')) {
      this.#bus.emit({ type: 'breaker.close', source: this.name, time: this.#clock.now(), reason });
    }
  }

  /** Enters a state afresh: calls still in flight belong to the old one. */
  #enter(state: StateCode): void {
    this.#state = state;
    this.#generation++;
    this.#probes = 0;
    this.#probeStarts.length = 0;
    this.#probeSuccesses = 0;
    this.#consecutive = 0;
  }

  /**
   * A time `t` of the monotonic line (read as `now`) in epoch ms (read as `wall`), whole, and
   * never before `t`: a caller that waits until `Date.now()` reaches it finds the breaker past
   * `t` too (rounded, it could be refused there with a retryAt of now, and spin). On two lines
   * (the real clock: `wall` is whole ms, truncated, `now` fractional) the epoch's lost fraction
   * is up to 1 ms more; on one (a ManualClock, a clock without monotonic()) there is none.
   */
  #shown(t: number, now: number, wall: number): number {
    return Math.ceil(wall + (t - now)) + (now === wall ? 0 : 1);
  }

  /** `now` is monotonic, `wall` epoch ms read with it: the snapshot's times are epoch ms. */
  #restore(snapshot: BreakerSnapshot, now: number, wall: number): void {
    this.#opens = snapshot.opens;
    switch (snapshot.state) {
      case 'closed':
        this.#consecutive = snapshot.consecutiveFailures;
        return;
      case 'open':
      case 'halfOpen': {
        // A half-open breaker restarts as one whose open time is over: its next call probes.
        this.#enter(OPEN);
        const retryAt = snapshot.state === 'open' && snapshot.retryAt !== null ? snapshot.retryAt : wall;
        this.#retryAt = now + (retryAt - wall);
        // No further off than openFor, or than the saved wait (a snapshot from a clock that ran ahead).
        this.#openFor = Math.max(openDuration(this.#config.openFor, Math.max(1, this.#opens)), retryAt - snapshot.time);
        this.#probeWait = Math.min(openDuration(this.#config.openFor, Math.max(1, this.#opens)), PROBE_PAUSE_MS);
        this.#emitOpen('restored', now, undefined);
        return;
      }
      case 'isolated':
        this.isolate();
        return;
      case 'disabled':
        this.disable();
        return;
    }
  }

  #live(): void {
    if (this.#state === DISPOSED) throw new DisposedError(this.name);
  }
}

/**
 * Makes a circuit breaker: a `Policy`, so it composes with `pipeline()`.
 *
 * @example
 * const breaker = circuitBreaker({ name: 'payments', failureRateThreshold: 0.5, openFor: 10_000 });
 * const res = await breaker.execute(({ signal }) => fetch(url, { signal }));
 */
export function circuitBreaker(options: CircuitBreakerOptions = {}): CircuitBreakerPolicy {
  return new CircuitBreakerPolicy(parseOptions('circuitBreaker', breakerOptionsSchema, options));
}

function countsOf(snapshot: BreakerSnapshot): WindowCounts {
  const w = snapshot.window;
  return {
    successes: w.successes,
    failures: w.failures,
    slow: w.slow,
    rejects: w.rejects,
    timeouts: w.timeouts,
    fallbacks: w.fallbacks,
  };
}

/** The `code` an outcome event carries: the error's, or `HTTP_<status>` for a failed response. */
function label(ok: boolean, value: unknown): ErrorLabel {
  try {
    if (!ok) return errorLabel(value);
    const status = (value as { status?: unknown } | null)?.status;
    return typeof status === 'number' ? `HTTP_${status}` : undefined;
  } catch {
    // A getter that throws: the call is still counted, without a code. Throwing here would
    // leave a probe's slot taken for good and hand the caller the getter's error for its own.
    return undefined;
  }
}

/** isFailure functions already told: once per function, however many breakers of a registry share it. */
const toldJudges = new WeakSet<IsFailure>();

function isTimeout(error: unknown): boolean {
  const code = label(false, error);
  return code === 'E_TIMEOUT' || code === 'ETIMEDOUT';
}
