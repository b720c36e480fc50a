import { createHash } from 'node:crypto';
import {
  type AnomalyMetric,
  type Bus,
  type Clock,
  DisposedError,
  elapsedTime,
  HoldfastConfigError,
  messageOf,
  OTHER_POLICY,
  parseOptions,
  realClock,
  type Snapshottable,
  shieldBus,
  type TimerHandle,
  type Unsubscribe,
  warnOnce,
} from '@holdfast/core';
import type { z } from 'zod';
import { Actions } from './actions.js';
import { baselineFactory, type RobustBaseline } from './baseline.js';
import { forestFactory, type HalfSpaceForest } from './forest.js';
import { type AnomalyWatchOptions, watchMetrics, watchOptionsSchema } from './options.js';
import { shown } from './shown.js';

/** A metric the watch computes per key and interval. */
export type WatchMetric = (typeof watchMetrics)[number];

/** One metric of a watched key, in a snapshot: null where the interval had no value. */
export interface WatchedMetric {
  readonly [field: string]: string | number | null;
  /** The metric's name. */
  readonly name: string;
  /** Its last value. */
  readonly value: number | null;
  /** What its baseline expected. */
  readonly expected: number | null;
  /** Its score, 0..1. */
  readonly score: number;
}

/** One watched key in a watch's snapshot. */
export interface WatchedKey {
  readonly [field: string]: string | number | boolean | readonly WatchedMetric[];
  /** The breaker, endpoint or policy name. */
  readonly key: string;
  /** Intervals scored. */
  readonly samples: number;
  /** Whether an anomaly is raised on it now. */
  readonly raised: boolean;
  /** The last interval's metrics, baselines and scores. */
  readonly metrics: readonly WatchedMetric[];
}

/** What a watch's `snapshot()` returns. */
export interface AnomalyWatchSnapshot {
  readonly [field: string]: string | number | readonly WatchedKey[] | readonly string[];
  /** The watch's name. */
  readonly name: string;
  /** The aggregation interval, ms. */
  readonly interval: number;
  /** Every key watched now. */
  readonly keys: readonly WatchedKey[];
  /** Endpoints this watch has taken out and not yet put back. */
  readonly ejected: readonly string[];
}

/** A running anomaly watch. */
export interface AnomalyWatch extends Snapshottable<AnomalyWatchSnapshot> {
  /** Shown as `source` on its events. */
  readonly name: string;
  /**
   * Counts one call of `key` that did not go through a breaker on the watched bus (a failover
   * endpoint, a client of your own): its latency in ms and its outcome. Throws `DisposedError`
   * after `dispose()`, as `flush()` does.
   */
  observe(key: string, latency: number, outcome: 'success' | 'failure' | 'reject'): void;
  /** Sums and scores the current interval now (the timer does this every `interval`). */
  flush(): void;
}

type Parsed = z.output<typeof watchOptionsSchema>;

/** Raised keys passed over, at most, to find a quiet one to forget when `maxKeys` is reached. */
const EVICTION_LOOKAHEAD = 8;

/** Characters of a key held at most: a longer one is cut, and told apart from others by a hash of it. */
const MAX_KEY_LENGTH = 200;

/**
 * Characters of a key kept whole, for the actions, at most: a longer key is watched and shown (cut)
 * but never acted on, so that a watch holds at most `maxKeys` × 4,096 characters of whole keys
 * (a client that picks keys cannot make it hold `maxKeys` keys of a megabyte each).
 */
const MAX_ACTED_KEY_LENGTH = 4_096;

/** base64url characters of a cut key's hash: 132 bits, beyond any birthday search (2^66 tries). */
const HASH_LENGTH = 22;

/**
 * `key` as the watch holds it: itself, or when longer than MAX_KEY_LENGTH (or spelled as such a
 * key's held form) its start, `…` and a
 * SHA-256 of the whole of it (a 1 MB key must not be held, nor shown, whole). Collision-resistant:
 * a client that picks keys cannot craft two that share a slot (and each other's series and actions).
 */
function capKey(key: string): string {
  // A key spelled as a held form (`…` then the hash's length) is held by its hash too: held as
  // itself, it shared the slot of the long key it was spelled after (one SHA-256, no search).
  if (key.length <= MAX_KEY_LENGTH && key.charAt(key.length - HASH_LENGTH - 1) !== '…') return key;
  // Of the UTF-16 code units: UTF-8 would turn every lone surrogate into the same U+FFFD.
  const digest = createHash('sha256').update(key, 'utf16le').digest('base64url').slice(0, HASH_LENGTH);
  // Not cut between the halves of a surrogate pair.
  let end = MAX_KEY_LENGTH - HASH_LENGTH - 1;
  if (/[\uD800-\uDBFF]/.test(key[end - 1] ?? '')) end--;
  return `${key.slice(0, end)}…${digest}`;
}

/** The overflow's key in the map (shown `_other`): a symbol, so that no key of the user's is it. */
const OVERFLOW = Symbol(OTHER_POLICY);

/** Latencies kept per key and interval for the percentiles: a uniform sample of the interval's calls past that. */
const LATENCY_SLOTS = 512;

/** What one key's calls add up to in the current interval. */
class Tally {
  calls = 0;
  failures = 0;
  rejects = 0;
  seen = 0;
  /** Calls since the throughput was last rated: a flush too soon after the last one carries them to the next. */
  #unrated = 0;
  /** Whether a call (or a reject) came since the throughput was last rated: the key was not idle over that span. */
  active = false;
  /** Grown as a key's intervals need it, up to LATENCY_SLOTS: a quiet key (or a churned one) holds little. */
  latencies = new Float64Array(16);
  /** xorshift32 state of the reservoir's draws: the same calls give the same figures. */
  #draw = 0x9e3779b9;

  add(latency: number, outcome: 'success' | 'failure' | 'reject'): void {
    this.active = true;
    if (outcome === 'reject') {
      this.rejects++;
      return;
    }
    this.calls++;
    if (outcome === 'failure') {
      this.failures++;
      return;
    }
    // No duration (NaN, negative, infinite): the call counts, but is no value of the percentiles.
    if (Number.isNaN(latency)) return;
    if (this.seen === this.latencies.length && this.seen < LATENCY_SLOTS) {
      const grown = new Float64Array(Math.min(LATENCY_SLOTS, this.seen * 2));
      grown.set(this.latencies);
      this.latencies = grown;
    }
    const n = this.seen++;
    if (n < this.latencies.length) {
      this.latencies[n] = latency;
      return;
    }
    // Full: each call of the interval is kept with the same chance (Algorithm R), not only the last
    // 512, which left a slowdown over the interval's first seconds out of its figures.
    let x = this.#draw;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#draw = x;
    const slot = (x >>> 0) % (n + 1);
    if (slot < LATENCY_SLOTS) this.latencies[slot] = latency;
  }

  /**
   * The interval's metrics, in `watchMetrics` order, then resets. `ms`: the time the throughput is
   * rated over; NaN for none (too short a time to rate): its calls count toward the next.
   */
  take(ms: number): number[] {
    const kept = Math.min(this.seen, this.latencies.length);
    const sorted = this.latencies.subarray(0, kept).sort();
    const at = (p: number) => (kept === 0 ? Number.NaN : (sorted[Math.min(kept - 1, Math.floor(p * kept))] as number));
    const offered = this.calls + this.rejects;
    this.#unrated += this.calls;
    const throughput = ms > 0 ? (this.#unrated * 1000) / ms : Number.NaN;
    if (ms > 0) {
      this.#unrated = 0;
      this.active = false;
    }
    const sample = [
      at(0.5),
      at(0.99),
      this.calls === 0 ? Number.NaN : this.failures / this.calls,
      throughput,
      offered === 0 ? 0 : this.rejects / offered,
    ];
    this.calls = 0;
    this.failures = 0;
    this.rejects = 0;
    this.seen = 0;
    return sample;
  }
}

/**
 * Per metric: the direction that matters, and the smallest spread worth an alarm. A rate is judged
 * against its own sampling noise too (`rateNoise`); at the default threshold, 4 spreads of 0.005
 * are the 2 points a rate must move by.
 */
const metricSettings: Record<
  WatchMetric,
  { direction: 'up' | 'down' | 'both'; minScale: number; relativeScale: number }
> = {
  latencyP50: { direction: 'up', minScale: 0, relativeScale: 0.05 },
  latencyP99: { direction: 'up', minScale: 0, relativeScale: 0.05 },
  errorRate: { direction: 'up', minScale: 0.005, relativeScale: 0 },
  throughput: { direction: 'down', minScale: 0, relativeScale: 0.1 },
  rejectRate: { direction: 'up', minScale: 0.005, relativeScale: 0 },
};

/** The smallest spread of an error or reject rate in the forest, which is given no sampling noise. */
const FOREST_RATE_FLOOR = 0.02;

/** Makes one key's detectors; options are parsed once per watch, not per key. */
interface Detectors {
  readonly baselines: (() => RobustBaseline)[] | undefined;
  readonly forest: ((keyHash: number) => HalfSpaceForest) | undefined;
}

function detectors(o: Parsed): Detectors {
  const hysteresis = { raiseAfter: o.raiseAfter };
  const forest =
    o.detector === 'baseline'
      ? undefined
      : forestFactory('anomalyWatch.forest', {
          ...o.forest,
          dimensions: watchMetrics.length,
          directions: watchMetrics.map((m) => metricSettings[m].direction),
          // The forest is given no sampling noise: a rate must move 2 points (it normalises by its own spread).
          minScales: watchMetrics.map((m) => (metricSettings[m].minScale > 0 ? FOREST_RATE_FLOOR : 0)),
          hysteresis,
        });
  const seed = o.forest.seed ?? 1;
  return {
    baselines:
      o.detector === 'forest'
        ? undefined
        : watchMetrics.map((m) =>
            baselineFactory('anomalyWatch.baseline', { ...o.baseline, ...metricSettings[m], hysteresis }),
          ),
    forest: forest === undefined ? undefined : (keyHash) => forest((seed + keyHash) >>> 0),
  };
}

/** One key's detectors and state. */
class Watched {
  readonly tally = new Tally();
  /**
   * Its detectors, made at its first sample: a key that never makes one (a key per request path,
   * churned at `maxKeys`) costs no forest (about 92 kB and a millisecond to build).
   */
  #detectors: { baselines: RobustBaseline[] | undefined; forest: HalfSpaceForest | undefined } | undefined;
  /** When each detector's anomaly was raised, on the clock's monotonic time (baselines by metric index, the forest last). */
  readonly raisedAt: (number | undefined)[] = new Array(watchMetrics.length + 1).fill(undefined);
  /** The metric the forest's anomaly was raised on. */
  forestMetric: string | undefined;
  idle = 0;
  samples = 0;
  last: readonly AnomalyMetric[] = [];
  /** The key as events and snapshots show it: cut, and without a password it may carry. */
  readonly shown: string;

  constructor(
    private readonly make: Detectors,
    /** As held: cut (see capKey); `_other` for the overflow. */
    private readonly held: string,
    /**
     * As the user gave it, for the actions; undefined for the overflow, which stands for many keys,
     * and for a key longer than MAX_ACTED_KEY_LENGTH, which is not kept whole.
     */
    readonly key: string | undefined,
    overflow: boolean,
    taken: Set<string>,
  ) {
    // Two keys redaction shows alike (two users on one host) are shown apart: `#2`, `#3`...; and
    // `_other` is the overflow's alone: a key of the user's so named is `_other#2`.
    let as = overflow ? OTHER_POLICY : shown(held);
    for (let n = 1; !overflow && (taken.has(as) || as === OTHER_POLICY); ) as = `${shown(held)}#${++n}`;
    taken.add((this.shown = as));
  }

  get detectors(): { baselines: RobustBaseline[] | undefined; forest: HalfSpaceForest | undefined } {
    this.#detectors ??= {
      baselines: this.make.baselines?.map((m) => m()),
      forest: this.make.forest?.(hash(this.held)), // one forest per key, each its own structure
    };
    return this.#detectors;
  }

  get raised(): boolean {
    return this.raisedAt.some((t) => t !== undefined);
  }
}

/**
 * Watches the calls on a bus (every breaker's successes, failures and rejections, by breaker
 * name), sums them per key and interval into latency p50/p99, error rate, throughput and reject
 * rate, scores each interval with a robust baseline per metric and a Half-Space forest over all
 * of them, and reports `anomaly.*` events. Asked to, it acts ahead of the thresholds: ejects an
 * endpoint that is an outlier among its peers, opens a breaker, lowers a retry budget, never on
 * more than a share of what it watches.
 *
 * @example
 * import { createBus } from '@holdfast/core';
 * const bus = createBus();
 * const watch = anomalyWatch({ bus, interval: 10_000 });
 * bus.on('anomaly.detected', (e) => console.log(`${e.key}: ${e.metric} ${e.value} (expected ${e.expected})`));
 * watch.dispose();
 */
export function anomalyWatch(options: AnomalyWatchOptions): AnomalyWatch {
  return new Watch(parseOptions('anomalyWatch', watchOptionsSchema, options));
}

class Watch implements AnomalyWatch {
  readonly name: string;
  readonly #o: Parsed;
  readonly #bus: Bus;
  readonly #clock: Clock;
  /** Monotonic: how long an anomaly lasted must not move with a wall-clock step. */
  readonly #elapsed: () => number;
  /** By the key as held (see capKey), the overflow by OVERFLOW. */
  readonly #keys = new Map<string | typeof OVERFLOW, Watched>();
  /** Keys not yet scored, oldest first: what a new key takes the place of first (see #makeRoom). */
  readonly #fresh = new Set<string>();
  /** The shown keys in use (see Watched): each names one key. */
  readonly #shown = new Set<string>();
  readonly #detectors: Detectors;
  readonly #actions: Actions;
  readonly #off: Unsubscribe[];
  /** Callbacks (and their owners) that threw, each reported once. */
  readonly #warned = new Set<string>();
  #timer: TimerHandle | undefined;
  #disposed = false;
  /** Monotonic time the watch was made at, and the throughput was last rated at. */
  readonly #madeAt: number;
  #ratedAt: number;

  constructor(o: Parsed) {
    this.#o = o;
    this.name = o.name;
    this.#bus = shieldBus(o.bus, o.name);
    this.#clock = o.clock ?? realClock;
    this.#elapsed = elapsedTime(this.#clock);
    this.#madeAt = this.#ratedAt = this.#elapsed();
    this.#detectors = detectors(o);
    this.#actions = new Actions(
      o.actions,
      o.name,
      this.#bus,
      this.#clock,
      () => this.#lastMetrics(),
      (key) => {
        const held = capKey(key);
        const w = this.#keys.get(held);
        return { samples: w?.samples ?? 0, raised: w?.raised ?? false, shown: w?.shown ?? shown(held) };
      },
      (what, fn, fallback) => this.#guard(what, fn, fallback),
    );
    this.#off = [];
    try {
      this.#off.push(this.#bus.on('breaker.success', (e) => this.#observed(e.source, e.latency, 'success')));
      this.#off.push(this.#bus.on('breaker.failure', (e) => this.#observed(e.source, e.latency, 'failure')));
      this.#off.push(this.#bus.on('breaker.reject', (e) => this.#observed(e.source, 0, 'reject')));
    } catch (error) {
      // A user's bus whose on() throws: the listeners already on go, or they fed a watch nobody holds.
      this.dispose();
      throw error;
    }
    this.#arm();
  }

  observe(name: string, latency: number, outcome: 'success' | 'failure' | 'reject'): void {
    // As a disposed breaker, fetch or failover set: a call after dispose() is a bug to hear of.
    if (this.#disposed) throw new DisposedError(this.name);
    this.#observed(name, latency, outcome);
  }

  /** A call seen on the bus: one handed out after dispose() (a bus of the user's may) is dropped. */
  #observed(name: string, latency: number, outcome: 'success' | 'failure' | 'reject'): void {
    if (this.#disposed) return;
    if (outcome !== 'success' && outcome !== 'failure' && outcome !== 'reject') {
      throw new HoldfastConfigError(`${this.name}.observe`, [
        { path: 'outcome', message: "must be 'success', 'failure' or 'reject'", value: outcome },
      ]);
    }
    if (typeof name !== 'string') {
      throw new HoldfastConfigError(`${this.name}.observe`, [
        { path: 'key', message: 'must be a string', value: name },
      ]);
    }
    const held = capKey(name);
    let key: string | typeof OVERFLOW = held;
    // A stopwatch read across a clock step (negative) or a call never timed (null, a BigInt) is no
    // latency: counted, not measured, and never taken for the probe of an ejection (nor its end).
    const ms = typeof latency === 'number' && latency >= 0 && latency < Number.POSITIVE_INFINITY ? latency : Number.NaN;
    let w = this.#keys.get(key);
    if (w === undefined) {
      // No room, and no key to give it up: counted under `_other` with the other keys past the cap.
      if (this.#watched() >= this.#o.maxKeys && !this.#makeRoom()) key = OVERFLOW;
      w = this.#keys.get(key);
    }
    if (w === undefined) {
      const overflow = key === OVERFLOW;
      // The user's key is kept whole, for the actions, only while it is watched, and only up to a length.
      const whole = overflow || name.length > MAX_ACTED_KEY_LENGTH ? undefined : name;
      w = new Watched(this.#detectors, overflow ? OTHER_POLICY : held, whole, overflow, this.#shown);
      this.#keys.set(key, w);
      if (!overflow) this.#fresh.add(held);
    } else if (w.tally.calls + w.tally.rejects === 0) {
      // Its first call this interval: to the back of the map, which is so ordered idlest first.
      this.#keys.delete(key);
      this.#keys.set(key, w);
    }
    w.tally.add(ms, outcome);
    // The overflow stands for many keys: no endpoint nor breaker of its own to act on (nor a key too long to keep).
    if (w.key !== undefined) this.#actions.settled(w.key, ms, outcome);
  }

  flush(): void {
    if (this.#disposed) throw new DisposedError(this.name);
    const now = this.#clock.now();
    const ms = this.#rateSpan();
    // A copy: a listener of the events below may observe() a call, which reorders the map.
    for (const [key, w] of [...this.#keys]) {
      // A listener of the events below may dispose the watch: then nothing more is scored or done.
      if (this.#disposed) return;
      const { calls, rejects } = w.tally;
      if (calls + rejects < Math.max(1, this.#o.minCalls)) {
        const active = w.tally.active;
        w.tally.take(ms);
        // Too few calls to score is no idleness: only a rated interval without any (its calls carried
        // from a flush too soon to rate count too) counts toward `idleAfter`; such a flush counts for none.
        if (active) w.idle = 0;
        else if (!Number.isNaN(ms) && ++w.idle >= this.#o.idleAfter) this.#forget(key, w, now);
        continue;
      }
      w.idle = 0;
      this.#score(key, w, w.tally.take(ms), [calls, calls + rejects], now);
    }
    if (!this.#disposed) this.#actions.tick(this.#anyRaised());
  }

  /**
   * The time this flush rates throughput over: since the last rating, if that is half an interval
   * or more (a flush() between the timer's ticks cuts an interval short, and a rate over a moment
   * is none: NaN, its calls carried to the next). On a clock that has not moved since the watch
   * was made (flush() driving the intervals, as in a simulation), one interval.
   */
  #rateSpan(): number {
    const at = this.#elapsed();
    const span = at - this.#ratedAt;
    if (span < this.#o.interval / 2 && at !== this.#madeAt) return Number.NaN;
    this.#ratedAt = at;
    return span > 0 ? span : this.#o.interval;
  }

  /** `calls` and `offered`: how many calls the error rate and the reject rate were taken from. */
  #score(
    key: string | typeof OVERFLOW,
    w: Watched,
    sample: number[],
    [calls, offered]: [number, number],
    now: number,
  ): void {
    if (w.samples++ === 0 && key !== OVERFLOW) this.#fresh.delete(key);
    const metrics: AnomalyMetric[] = [];
    const changes: [slot: number, detector: 'baseline' | 'forest', metric: number, score: number, expected: number][] =
      [];
    let top = 0;
    const { baselines, forest } = w.detectors;
    watchMetrics.forEach((name, q) => {
      const b = baselines?.[q];
      const value = sample[q] as number;
      const n = name === 'errorRate' ? calls : name === 'rejectRate' ? offered : 0;
      const v = b?.update(value, n ? rateNoise(value, b.expected, n) : 0);
      metrics.push({ name, value, expected: v?.expected ?? Number.NaN, score: v?.score ?? 0 });
      if (v === undefined) return;
      top = Math.max(top, v.score);
      if (v.change !== undefined) changes.push([q, 'baseline', q, v.score, v.expected]);
    });
    const f = forest?.update(sample);
    if (f !== undefined) {
      top = Math.max(top, f.score);
      const q = Math.max(0, f.dimension);
      if (f.change !== undefined)
        changes.push([watchMetrics.length, 'forest', q, f.score, f.expected[q] ?? Number.NaN]);
    }
    // The actions compare this interval's values with the peers': they must be in place first.
    w.last = metrics;
    for (const [slot, detector, q, score, expected] of changes) {
      if (this.#disposed) return;
      this.#changed(w, slot, detector, watchMetrics[q] as string, score, sample[q] as number, expected, now);
    }
    if (!this.#disposed && this.#bus.wants('anomaly.score')) {
      this.#bus.emit({
        type: 'anomaly.score',
        source: this.name,
        time: now,
        key: w.shown,
        score: top,
        raised: w.raised,
        metrics,
      });
    }
  }

  #changed(
    w: Watched,
    slot: number,
    detector: 'baseline' | 'forest',
    metric: string,
    score: number,
    value: number,
    expected: number,
    now: number,
  ): void {
    const was = w.raised;
    const since = w.raisedAt[slot];
    if (since === undefined) {
      w.raisedAt[slot] = this.#elapsed();
      if (detector === 'forest') w.forestMetric = metric;
      if (this.#bus.wants('anomaly.detected')) {
        this.#bus.emit({
          type: 'anomaly.detected',
          source: this.name,
          time: now,
          key: w.shown,
          detector,
          metric,
          score,
          value,
          expected,
        });
      }
      // Disposed by a listener of that event: what it raised was closed, and nothing is acted on.
      if (!was && !this.#disposed && w.key !== undefined) this.#actions.detected(w.key, metric);
      return;
    }
    w.raisedAt[slot] = undefined;
    // Cleared on the metric it was raised on: the forest's most departed metric may have moved since.
    const raisedOn = detector === 'forest' ? (w.forestMetric ?? metric) : metric;
    this.#cleared(w.shown, detector, raisedOn, this.#elapsed() - since, 'recovered', now);
    if (!w.raised && !this.#disposed && w.key !== undefined) this.#actions.cleared(w.key);
  }

  #cleared(
    key: string,
    detector: 'baseline' | 'forest',
    metric: string,
    duration: number,
    reason: 'recovered' | 'forgotten',
    now: number,
  ): void {
    if (!this.#bus.wants('anomaly.cleared')) return;
    this.#bus.emit({ type: 'anomaly.cleared', source: this.name, time: now, key, detector, metric, duration, reason });
  }

  *#lastMetrics(): Iterable<[string, readonly AnomalyMetric[]]> {
    for (const w of this.#keys.values()) if (w.key !== undefined) yield [w.key, w.last];
  }

  #anyRaised(): boolean {
    for (const w of this.#keys.values()) if (w.raised) return true;
    return false;
  }

  /** Keys watched, the overflow aside. */
  #watched(): number {
    return this.#keys.size - (this.#keys.has(OVERFLOW) ? 1 : 0);
  }

  /**
   * Makes room for a new key in O(1), or says there is none. A key never scored (it has learned
   * nothing) goes first, the oldest: a flood of new keys (one per user id) churns among itself,
   * not through the keys the watch has learned. Else a learned key that was idle the last interval
   * and has had no call in this one: the map is ordered by each key's first call in its latest
   * interval, so such keys are at the front. Raised keys are passed over, so a sick endpoint taken
   * out of traffic is not the first forgotten. Every key learned and busy: no room.
   */
  #makeRoom(): boolean {
    for (const key of this.#fresh) {
      const w = this.#keys.get(key);
      if (w === undefined) this.#fresh.delete(key);
      else {
        this.#forget(key, w, this.#clock.now());
        return true;
      }
    }
    let looked = 0;
    for (const [key, w] of this.#keys) {
      if (key !== OVERFLOW && !w.raised && w.idle > 0 && w.tally.calls + w.tally.rejects === 0) {
        this.#forget(key, w, this.#clock.now());
        return true;
      }
      if (++looked >= EVICTION_LOOKAHEAD) break;
    }
    return false;
  }

  /**
   * Forgets a key, idle or evicted. That is no recovery: each anomaly still raised on it is
   * cleared with `reason: 'forgotten'` (every `anomaly.detected` has its `anomaly.cleared`), and
   * what the watch did about it is not undone (an ejection runs its course).
   */
  #forget(key: string | typeof OVERFLOW, w: Watched, now: number): void {
    this.#keys.delete(key);
    if (key !== OVERFLOW) this.#fresh.delete(key);
    this.#shown.delete(w.shown);
    if (!w.raised) return;
    w.raisedAt.forEach((since, slot) => {
      if (since === undefined) return;
      w.raisedAt[slot] = undefined;
      const forest = slot === watchMetrics.length;
      const metric = forest ? (w.forestMetric ?? 'latencyP99') : (watchMetrics[slot] as string);
      this.#cleared(w.shown, forest ? 'forest' : 'baseline', metric, this.#elapsed() - since, 'forgotten', now);
    });
    if (w.key !== undefined) this.#actions.forgotten(w.key);
  }

  /**
   * Runs a user's callback, or a call on an object the user gave (a failover set, a breaker, a
   * budget): what it throws is contained, `fallback` is used instead, and the first error of
   * each (but a DisposedError) is reported as a process warning (code HOLDFAST_CALLBACK_ERROR).
   */
  #guard<R>(what: string, fn: () => R, fallback: R): R {
    try {
      return fn();
    } catch (error) {
      // A set or breaker disposed before the watch is no bug: there is nothing left to act on.
      if (!isDisposed(error)) this.#warn(what, error);
      return fallback;
    }
  }

  #warn(what: string, error: unknown): void {
    const text = `anomalyWatch "${this.name}": ${what} threw (reported once; the watch carries on without it)`;
    // A callback's message may name a URL with its password: warnings reach the logs.
    warnOnce(this.#warned, what, 'HOLDFAST_CALLBACK_ERROR', text, shown(messageOf(error)));
  }

  #arm(): void {
    this.#timer = this.#clock.setTimeout(() => {
      if (this.#disposed) return;
      try {
        this.flush();
      } catch (error) {
        // Never out of the timer (an uncaught exception), and never a watch gone silent.
        this.#warn('flush', error);
      } finally {
        if (!this.#disposed) this.#arm();
      }
    }, this.#o.interval);
  }

  snapshot(): AnomalyWatchSnapshot {
    return {
      name: this.name,
      interval: this.#o.interval,
      keys: [...this.#keys.values()].map((w) => ({
        key: w.shown,
        samples: w.samples,
        raised: w.raised,
        metrics: w.last.map(json),
      })),
      ejected: this.#actions.ejected(),
    };
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    for (const off of this.#off) off();
    // No recovery either: each anomaly still raised gets its anomaly.cleared (reason 'forgotten').
    const now = this.#clock.now();
    for (const [key, w] of [...this.#keys]) this.#forget(key, w, now);
    this.#actions.dispose();
  }
}

/**
 * The standard error of a rate `x` of `n` calls where `p` was expected, taken from the binomial
 * likelihood ratio, whose signed root stays near normal for a handful of calls: one failure in five
 * calls at 1% expected is 2 standard errors up (it happens 5% of the time), not the 4 that
 * sqrt(p(1 - p) / n) would say.
 */
export function rateNoise(x: number, p: number, n: number): number {
  const q = Math.max(p, 1e-6);
  const deviance = x > q ? 2 * n * (x * Math.log(x / q) + (x < 1 ? (1 - x) * Math.log((1 - x) / (1 - q)) : 0)) : 0;
  return deviance > 0 ? (x - q) / Math.sqrt(deviance) : Math.sqrt((q * (1 - q)) / n);
}

/** A small string hash, so each key's forest gets its own (still deterministic) trees. */
function hash(key: string): number {
  let h = 0;
  for (let i = 0; i < key.length; i++) h = (Math.imul(h, 31) + key.charCodeAt(i)) | 0;
  return h & 0x7fff;
}

function json(m: AnomalyMetric): WatchedMetric {
  const finite = (x: number) => (Number.isFinite(x) ? x : null);
  return { name: m.name, value: finite(m.value), expected: finite(m.expected), score: m.score };
}

/** A DisposedError, of any installed copy; a value whose reads throw (a Proxy) is none. */
function isDisposed(error: unknown): boolean {
  try {
    return error instanceof DisposedError;
  } catch {
    return false;
  }
}
