import { z } from 'zod';
import { type Bus, bus as globalBus } from './bus.js';
import { type Clock, realClock, type TimerHandle } from './clock.js';
import { CallScope } from './context.js';
import { DisposedError } from './errors.js';
import { busOption, clockOption, durationOption, nameOption, parseOptions, policiesOption } from './options.js';
import { type ExecuteOptions, invoke, type Operation, type Policy } from './policy.js';
import { policies as globalPolicies, type Unregister } from './registry.js';
import type { Snapshottable } from './snapshot.js';

const percentileDelay = z.strictObject({
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
});

const budgetOption = z.strictObject({
  /** Hedges allowed as a share of the calls in the last `window`. @default 0.1 */
  ratio: z.number().min(0).max(10).default(0.1),
  /** Hedges allowed a second whatever the traffic, so a quiet service can hedge too. @default 1 */
  minPerSecond: z.number().min(0).default(1),
  /** How long a call or a hedge counts, ms. @default 10000 */
  window: z.number().finite().min(100).default(10_000),
});

/** Validates the options of {@link hedge}; {@link HedgeOptions} is inferred from it. */
export const hedgeOptionsSchema = z.strictObject({
  /** How long to wait for an attempt before sending another: ms, or a percentile of observed latency. */
  delay: z.union([durationOption, percentileDelay]),
  /** Extra attempts a call may send, besides the first. @default 1 */
  maxHedges: z.number().int().min(1).max(10).default(1),
  /**
   * Whether calls are safe to send twice (reads, idempotent writes). A call that is not safe runs
   * once, unhedged; `execute(fn, { safe: true })` marks one call. @default false
   */
  safe: z.boolean().default(false),
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
  const policy = new Hedger(o, clock, o.bus ?? globalBus);
  const listing = o.policies ?? globalPolicies;
  if (listing !== false) policy.unregister = listing.register('hedge', o.name, policy);
  return policy;
}

type Parsed = z.output<typeof hedgeOptionsSchema>;

class Hedger implements HedgePolicy {
  readonly name: string;
  readonly #maxHedges: number;
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

  constructor(
    o: Parsed,
    readonly clock: Clock,
    readonly bus: Bus,
  ) {
    this.name = o.name;
    this.#maxHedges = o.maxHedges;
    this.#safe = o.safe;
    this.#delay = typeof o.delay === 'number' ? o.delay : new LatencyDelay(o.delay);
    this.#budget = o.budget === false ? undefined : new ShareBudget(o.budget, clock);
  }

  execute<T>(fn: Operation<T>, options?: HedgeExecuteOptions): Promise<T> {
    if (this.#disposed) return Promise.reject(new DisposedError(this.name));
    this.#calls++;
    this.#budget?.deposit();
    const scope = new CallScope(options);
    if (!(options?.safe ?? this.#safe)) return this.#once(fn, scope);
    if (scope.aborted) {
      scope.release();
      return Promise.reject(scope.reason);
    }
    return new Promise<T>((resolve, reject) => this.#race(fn, scope, resolve, reject));
  }

  #once<T>(fn: Operation<T>, scope: CallScope): Promise<T> {
    const start = this.clock.now();
    return invoke(fn, scope).then(
      (value) => {
        scope.release();
        if (typeof this.#delay !== 'number') this.#delay.record(this.clock.now() - start);
        return value;
      },
      (error: unknown) => {
        scope.release();
        throw error;
      },
    );
  }

  #race<T>(fn: Operation<T>, parent: CallScope, resolve: (v: T) => void, reject: (e: unknown) => void): void {
    const running = new Set<CallScope>();
    let sent = 0;
    let settled = false;
    let lastError: unknown;
    let timer: TimerHandle | undefined;

    const finish = () => {
      settled = true;
      if (timer !== undefined) this.clock.clearTimeout(timer);
      stopOnAbort();
      parent.release();
    };
    const schedule = () => {
      if (sent > this.#maxHedges) return;
      const delay = this.delay;
      timer = this.clock.setTimeout(() => {
        timer = undefined;
        launch('delay', delay);
      }, delay);
    };
    const launch = (trigger: 'delay' | 'failure', delay: number): boolean => {
      if (settled || parent.aborted) return false;
      if (sent > 0 && !this.#allowHedge(sent + 1, trigger, delay)) return false;
      const scope = new CallScope(parent, parent.attempt + sent);
      sent++;
      running.add(scope);
      const start = this.clock.now();
      invoke(fn, scope).then(
        (value) => {
          running.delete(scope);
          scope.release();
          if (settled) return;
          if (typeof this.#delay !== 'number') this.#delay.record(this.clock.now() - start);
          if (scope.attempt !== parent.attempt) this.#hedgeWins++;
          finish();
          this.#abortLosers(running);
          resolve(value);
        },
        (error: unknown) => {
          running.delete(scope);
          scope.release();
          if (settled) return;
          lastError = error;
          if (timer !== undefined) this.clock.clearTimeout(timer);
          timer = undefined;
          // A failure need not wait out the delay: the next attempt goes at once.
          if (sent <= this.#maxHedges && launch('failure', 0)) return;
          if (running.size > 0) return;
          finish();
          reject(parent.aborted ? parent.reason : lastError);
        },
      );
      schedule();
      return true;
    };
    const stopOnAbort = parent.onAbort(() => {
      if (timer !== undefined) this.clock.clearTimeout(timer);
      timer = undefined;
    });
    launch('delay', 0);
  }

  #allowHedge(attempt: number, trigger: 'delay' | 'failure', delay: number): boolean {
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

/** A percentile of the latest successful latencies, recomputed every few samples. */
class LatencyDelay {
  readonly #ring: Float64Array;
  #count = 0;
  #sinceSort = 0;
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
    if (this.#sinceSort >= Math.max(1, this.#ring.length / 50) || this.#count === this.o.minSamples) {
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
  #slice: number;
  #callSum = 0;
  #spentSum = 0;

  constructor(
    readonly o: z.output<typeof budgetOption>,
    readonly clock: Clock,
  ) {
    this.#sliceMs = o.window / SLICES;
    this.#floor = (o.minPerSecond * o.window) / 1000;
    this.#slice = Math.floor(clock.now() / this.#sliceMs);
  }

  deposit(): void {
    const at = this.#advance();
    this.#calls[at] = (this.#calls[at] as number) + 1;
    this.#callSum++;
  }

  tryWithdraw(): boolean {
    const at = this.#advance();
    if (this.o.ratio * this.#callSum + this.#floor - this.#spentSum + 1e-9 < 1) return false;
    this.#spent[at] = (this.#spent[at] as number) + 1;
    this.#spentSum++;
    return true;
  }

  #advance(): number {
    const slice = Math.floor(this.clock.now() / this.#sliceMs);
    const steps = Math.min(slice - this.#slice, SLICES);
    for (let i = 1; i <= steps; i++) {
      const at = (this.#slice + i) % SLICES;
      this.#callSum -= this.#calls[at] as number;
      this.#spentSum -= this.#spent[at] as number;
      this.#calls[at] = 0;
      this.#spent[at] = 0;
    }
    if (slice > this.#slice) this.#slice = slice;
    return this.#slice % SLICES;
  }
}
