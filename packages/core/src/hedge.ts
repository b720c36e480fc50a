import { z } from 'zod';
import { type Bus, bus as globalBus, shieldBus } from './bus.js';
import { type Clock, elapsedTime, realClock, type TimerHandle } from './clock.js';
import { CallScope } from './context.js';
import { DisposedError, isLocalRefusal } from './errors.js';
import { busOption, clockOption, durationOption, nameOption, parseOptions, policiesOption } from './options.js';
import { type ExecuteOptions, invokeIn, type Operation, type Policy } from './policy.js';
import { policies as globalPolicies, type Unregister } from './registry.js';
import type { Snapshottable } from './snapshot.js';

const percentileDelay = z
  .strictObject({
    /** The share of observed latencies the delay waits out, e.g. 0.95: hedge the slowest 5%. */
    percentile: z.number().gt(0).lt(1),
    /** The delay until `minSamples` latencies were seen. @default 100 */
    initial: durationOption.default(100),
    /** Never hedge sooner than this. @default 0 */
    min: durationOption.default(0),
    /** Never wait longer than this. @default no bound */
    max: durationOption.optional(),
    /** How many recent successful latencies the percentile is taken over. @default 1000 */
    samples: z.number().int().min(10).max(100_000).default(1000),
    /** Latencies needed before the percentile replaces `initial`. @default 20 */
    minSamples: z.number().int().min(1).default(20),
  })
  .refine((o) => o.max === undefined || o.min <= o.max, { message: 'must be >= min', path: ['max'] });

const budgetOption = z.strictObject({
  /** Hedges allowed as a share of the calls in the last `window`. @default 0.1 */
  ratio: z.number().min(0).max(10).default(0.1),
  /**
   * Hedges allowed a second whatever the traffic, so a quiet service can hedge too: it stands in
   * for the ratio while the calls earn less, never on top of it. @default 1
   */
  minPerSecond: z.number().min(0).default(1),
  /** How long a call or a hedge counts, ms. @default 10000 */
  window: z.number().finite().min(100).default(10_000),
});

/** Validates the options of {@link hedge}; {@link HedgeOptions} is inferred from it. */
export const hedgeOptionsSchema = z.strictObject({
  /** How long to wait for an attempt before sending another: ms, or a percentile of observed latency. */
  delay: z.union([durationOption, percentileDelay], { error: 'must be ms (a number) or { percentile }' }),
  /** Extra attempts a call may send, besides the first. @default 1 */
  maxHedges: z.number().int().min(1).max(10).default(1),
  /**
   * Whether calls are safe to send twice (reads, idempotent writes). A call that is not safe runs
   * once, unhedged; `execute(fn, { safe: true })` marks one call. @default false
   */
  safe: z.boolean().default(false),
  /**
   * Whether a failed attempt sends the next one at once, before the delay. `false`: only the
   * delay hedges (a caller that retries failures itself, as resilientFetch does); a failed
   * attempt leaves the next hedge due while another is still out, and fails the call once none
   * is. @default true
   */
  onFailure: z.boolean().default(true),
  /** Caps hedges to a share of traffic; `false` removes the cap (an explicit opt-in). @default {} */
  budget: z.union([z.literal(false), budgetOption]).prefault({}),
  /** Shown as `source` on its events and in its snapshot. @default 'hedge' */
  name: nameOption.default('hedge'),
  /** The bus its events go to. @default the global bus */
  bus: busOption.optional(),
  /** @default the real clock */
  clock: clockOption.optional(),
  /** Where it lists itself for `healthReport()` and the dashboard, or `false`. @default the global registry */
  policies: policiesOption.optional(),
});

/** Options of {@link hedge}. */
export type HedgeOptions = z.input<typeof hedgeOptionsSchema>;

/** Per-call options of a hedge policy. */
export interface HedgeExecuteOptions extends ExecuteOptions {
  /** Marks this call safe (or not) to send more than once, whatever the policy's `safe` says. */
  readonly safe?: boolean;
}

/** What a hedge policy's `snapshot()` returns. */
export type HedgeSnapshot = {
  /** The policy's name. */
  readonly name: string;
  /** Calls made through the policy. */
  readonly calls: number;
  /** Extra attempts sent. */
  readonly hedges: number;
  /** Calls an extra attempt won. */
  readonly hedgeWins: number;
  /** Attempts still running when another won, aborted through their signal. */
  readonly losersAborted: number;
  /** Hedges the budget refused. */
  readonly refused: number;
  /** The delay a call would wait now before hedging, ms. */
  readonly delay: number;
};

/** A hedging policy: a `Policy` with a snapshot. */
export interface HedgePolicy extends Policy, Snapshottable<HedgeSnapshot> {
  /** Runs `fn`, sending it again after the delay if it is safe to; the first success wins. */
  execute<T>(fn: Operation<T>, options?: HedgeExecuteOptions): Promise<T>;
}

/**
 * Hedged requests (Dean and Barroso, "The Tail at Scale"): when an attempt has not answered
 * after `delay`, the same call is sent again; the first success wins and the others are aborted
 * through their signal. A failed attempt sends the next one at once. Each attempt gets its own
 * `ctx.attempt` (2 for the first hedge), so a failover inside can pick another endpoint. Only
 * calls marked safe are hedged, and a budget keeps hedges to a share of traffic.
 *
 * @example
 * const reads = hedge({ delay: { percentile: 0.95 }, safe: true });
 * const user = await reads.execute(({ signal, attempt }) => getUser(replicas[attempt - 1], signal));
 */
export function hedge(options: HedgeOptions): HedgePolicy {
  const o = parseOptions('hedge', hedgeOptionsSchema, options);
  const clock = o.clock ?? realClock;
  const policy = new Hedger(o, clock, o.bus === undefined ? globalBus : shieldBus(o.bus, o.name));
  const listing = o.policies ?? globalPolicies;
  if (listing !== false) policy.unregister = listing.register('hedge', o.name, policy);
  return policy;
}

type Parsed = z.output<typeof hedgeOptionsSchema>;

class Hedger implements HedgePolicy {
  readonly name: string;
  readonly maxHedges: number;
  readonly onFailure: boolean;
  readonly #safe: boolean;
  readonly #delay: LatencyDelay | number;
  readonly #budget: ShareBudget | undefined;
  #calls = 0;
  #hedges = 0;
  #hedgeWins = 0;
  #losersAborted = 0;
  #refused = 0;
  #disposed = false;
  /** Takes the policy off the registry it listed itself in. */
  unregister: Unregister = () => {};
  /** The clock's monotonic time, for latencies: a wall-clock step is not an hour-long call. */
  readonly elapsed: () => number;

  constructor(
    o: Parsed,
    readonly clock: Clock,
    readonly bus: Bus,
  ) {
    this.name = o.name;
    this.elapsed = elapsedTime(clock);
    this.maxHedges = o.maxHedges;
    this.onFailure = o.onFailure;
    this.#safe = o.safe;
    this.#delay = typeof o.delay === 'number' ? o.delay : new LatencyDelay(o.delay);
    this.#budget = o.budget === false ? undefined : new ShareBudget(o.budget, clock);
  }

  execute<T>(fn: Operation<T>, options?: HedgeExecuteOptions): Promise<T> {
    if (this.#disposed) return Promise.reject(new DisposedError(this.name));
    this.#calls++;
    this.#budget?.deposit();
    const scope = new CallScope(options);
    if (scope.aborted) {
      scope.release();
      return Promise.reject(scope.reason);
    }
    // Inside a pipeline, options is the outer policy's scope: `safe` is the call's.
    if (!((CallScope.given(options) as HedgeExecuteOptions | undefined)?.safe ?? this.#safe))
      return this.#once(fn, scope);
    return new Promise<T>((resolve, reject) => new HedgedCall(this, fn, scope, resolve, reject).launch('delay', 0));
  }

  #once<T>(fn: Operation<T>, scope: CallScope): Promise<T> {
    const start = this.elapsed();
    return invokeIn(fn, scope).then(
      (value) => {
        scope.release();
        this.record(this.elapsed() - start);
        return value;
      },
      (error: unknown) => {
        scope.release();
        throw error;
      },
    );
  }

  /** Records the latency of a successful attempt, for a percentile delay. */
  record(latency: number): void {
    if (typeof this.#delay !== 'number') this.#delay.record(latency);
  }

  /** Counts a call an extra attempt won, and aborts the attempts still running. */
  won(byHedge: boolean, running: Set<CallScope>): void {
    if (byHedge) this.#hedgeWins++;
    this.#abortLosers(running);
  }

  /** Whether the budget lets attempt `attempt` go; counts and reports either way. */
  allowHedge(attempt: number, trigger: 'delay' | 'failure', delay: number): boolean {
    // Disposed: calls already running finish on the attempts they have, and send no more.
    if (this.#disposed) return false;
    if (this.#budget !== undefined && !this.#budget.tryWithdraw()) {
      this.#refused++;
      if (this.bus.wants('hedge.budgetExhausted')) {
        this.bus.emit({ type: 'hedge.budgetExhausted', source: this.name, time: this.clock.now(), attempt });
      }
      return false;
    }
    this.#hedges++;
    if (this.bus.wants('hedge.attempt')) {
      this.bus.emit({ type: 'hedge.attempt', source: this.name, time: this.clock.now(), attempt, delay, trigger });
    }
    return true;
  }

  #abortLosers(running: Set<CallScope>): void {
    if (running.size === 0) return;
    const reason = new DOMException(`${this.name}: another attempt won`, 'AbortError');
    for (const scope of running) {
      this.#losersAborted++;
      scope.abort(reason);
    }
  }

  /** The delay a call would wait now before its first hedge, ms. */
  get delay(): number {
    return typeof this.#delay === 'number' ? this.#delay : this.#delay.current();
  }

  snapshot(): HedgeSnapshot {
    return {
      name: this.name,
      calls: this.#calls,
      hedges: this.#hedges,
      hedgeWins: this.#hedgeWins,
      losersAborted: this.#losersAborted,
      refused: this.#refused,
      delay: this.delay,
    };
  }

  dispose(): void {
    this.#disposed = true;
    this.unregister();
  }
}

/**
 * One hedged call: its attempts race, the first success settles it. A class rather than
 * closures: a call allocates one object, not one function per step.
 */
class HedgedCall<T> {
  readonly running = new Set<CallScope>();
  sent = 0;
  settled = false;
  lastError: unknown;
  /** An attempt failed after reaching the downstream: its error is the one to report. */
  reached = false;
  timer: TimerHandle | undefined;
  readonly stopOnAbort: () => void;

  constructor(
    readonly policy: Hedger,
    readonly fn: Operation<T>,
    readonly parent: CallScope,
    readonly resolve: (value: T) => void,
    readonly reject: (error: unknown) => void,
  ) {
    this.stopOnAbort = parent.onAbort(() => this.#stopTimer());
  }

  /** Sends the next attempt (the first, or a hedge the budget allows); false when none went. */
  launch(trigger: 'delay' | 'failure', delay: number): boolean {
    const { policy, parent } = this;
    if (this.settled || parent.aborted) return false;
    if (this.sent > 0 && !policy.allowHedge(this.sent + 1, trigger, delay)) return false;
    // A listener of the hedge's event may have aborted the caller: nothing more goes out.
    if (parent.aborted) return false;
    const scope = new CallScope(parent, parent.attempt + this.sent);
    this.sent++;
    this.running.add(scope);
    const start = policy.elapsed();
    invokeIn(this.fn, scope).then(
      (value) => this.#succeeded(scope, start, value),
      (error: unknown) => this.#failed(scope, error),
    );
    if (this.sent <= policy.maxHedges) {
      const next = policy.delay;
      // Ref'd, as every wait a caller awaits: the attempt running may hold nothing that keeps
      // the process alive (a promise-only queue or lock), and the hedge is what would answer.
      this.timer = policy.clock.setTimeout(
        () => {
          this.timer = undefined;
          this.launch('delay', next);
        },
        next,
        { ref: true },
      );
    }
    return true;
  }

  #succeeded(scope: CallScope, start: number, value: T): void {
    this.running.delete(scope);
    scope.release();
    if (this.settled) return;
    this.policy.record(this.policy.elapsed() - start);
    this.#finish();
    this.policy.won(scope.attempt !== this.parent.attempt, this.running);
    this.resolve(value);
  }

  #failed(scope: CallScope, error: unknown): void {
    this.running.delete(scope);
    scope.release();
    if (this.settled) return;
    // A later attempt refused by a policy of ours inside (a limiter) must not hide a failure of
    // the downstream: a breaker outside would not count the call, nor a retry its budget.
    const refused = isLocalRefusal(error);
    if (!refused || !this.reached) this.lastError = error;
    this.reached ||= !refused;
    // A failure need not wait out the delay: the next attempt goes at once, its own delay after it.
    if (this.policy.onFailure && this.sent <= this.policy.maxHedges) {
      this.#stopTimer();
      if (this.launch('failure', 0)) return;
    }
    // Attempts still out: the delay's next hedge (if any) still goes when due, as onFailure: false
    // says (only the delay hedges); a failure calls it off only with nothing left running.
    if (this.running.size > 0) return;
    this.#finish();
    this.reject(this.parent.aborted ? this.parent.reason : this.lastError);
  }

  #finish(): void {
    this.settled = true;
    this.#stopTimer();
    this.stopOnAbort();
    this.parent.release();
  }

  #stopTimer(): void {
    if (this.timer !== undefined) this.policy.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/** A percentile of the latest successful latencies, recomputed every few samples. */
class LatencyDelay {
  readonly #ring: Float64Array;
  #count = 0;
  /** Infinite until the first sort: the first read with `minSamples` seen sorts, however many came at once. */
  #sinceSort = Number.POSITIVE_INFINITY;
  #cached: number;

  constructor(readonly o: z.output<typeof percentileDelay>) {
    this.#ring = new Float64Array(o.samples);
    this.#cached = o.initial;
  }

  record(latency: number): void {
    this.#ring[this.#count % this.#ring.length] = latency;
    this.#count++;
    this.#sinceSort++;
  }

  current(): number {
    if (this.#count < this.o.minSamples) return this.#cached;
    // Sorting on every call would cost more than the call; a few samples of lag do not matter.
    if (this.#sinceSort >= Math.max(1, this.#ring.length / 50)) {
      const seen = this.#ring.slice(0, Math.min(this.#count, this.#ring.length)).sort();
      const at = Math.min(seen.length - 1, Math.floor(this.o.percentile * seen.length));
      const value = Math.max(this.o.min, seen[at] as number);
      this.#cached = this.o.max === undefined ? value : Math.min(this.o.max, value);
      this.#sinceSort = 0;
    }
    return this.#cached;
  }
}

const SLICES = 10;

/** Hedges as a share of calls over a sliding window of `SLICES` slices. */
class ShareBudget {
  readonly #calls = new Float64Array(SLICES);
  readonly #spent = new Float64Array(SLICES);
  readonly #sliceMs: number;
  readonly #floor: number;
  /** The clock's monotonic time: the window slides with real time, whatever the wall clock does. */
  readonly #elapsed: () => number;
  #slice: number;
  /** Set by a step back of the line: the furthest slice counted (see #advance). */
  #high: number | undefined;
  #callSum = 0;
  #spentSum = 0;

  constructor(
    readonly o: z.output<typeof budgetOption>,
    readonly clock: Clock,
  ) {
    this.#sliceMs = o.window / SLICES;
    this.#floor = (o.minPerSecond * o.window) / 1000;
    this.#elapsed = elapsedTime(clock);
    this.#slice = Math.floor(this.#elapsed() / this.#sliceMs);
  }

  deposit(): void {
    const at = this.#advance();
    this.#calls[at] = (this.#calls[at] as number) + 1;
    this.#callSum++;
  }

  tryWithdraw(): boolean {
    const at = this.#advance();
    // The floor stands in for the ratio while the calls earn less; it is not added to it.
    if (Math.max(this.o.ratio * this.#callSum, this.#floor) - this.#spentSum + 1e-9 < 1) return false;
    this.#spent[at] = (this.#spent[at] as number) + 1;
    this.#spentSum++;
    return true;
  }

  #advance(): number {
    const slice = Math.floor(this.#elapsed() / this.#sliceMs);
    const high = this.#high;
    // The line went back (a clock without monotonic() stepped back): what the window holds moves
    // to the slice of now and leaves one window later, not when the line is back. The line coming
    // back to where it counted (the step undone, once per step) is no time passing either:
    // forgotten, a flapping clock gave the full budget again at each return.
    const back = slice < this.#slice;
    const returning = !back && slice > this.#slice + 1 && high !== undefined && Math.abs(slice - high) <= 1;
    this.#high = back ? Math.max(high ?? slice, this.#slice) : returning || slice > (high ?? slice) ? undefined : high;
    if (back || returning) {
      this.#calls.fill(0);
      this.#spent.fill(0);
      this.#slice = slice;
      this.#calls[ring(slice)] = this.#callSum;
      this.#spent[ring(slice)] = this.#spentSum;
    }
    const steps = Math.min(slice - this.#slice, SLICES);
    for (let i = 1; i <= steps; i++) {
      const at = ring(this.#slice + i);
      this.#callSum -= this.#calls[at] as number;
      this.#spentSum -= this.#spent[at] as number;
      this.#calls[at] = 0;
      this.#spent[at] = 0;
    }
    this.#slice = slice;
    return ring(slice);
  }
}

/** A slice's place in the ring; a line below zero (a clock set back past its origin) included. */
const ring = (slice: number) => ((slice % SLICES) + SLICES) % SLICES;
