import {
  type BreakerView,
  breakerStateAfter,
  breakerStates,
  type EventOf,
  type EventType,
  eventTypes,
  type HoldfastEvent,
  hiddenName,
  OTHER_POLICY,
  type PolicyRegistry,
  readBreaker,
  readBudget,
  readFailover,
} from '@holdfast/core';
import type {
  Attributes,
  BatchObservableCallback,
  BatchObservableResult,
  Histogram,
  Meter,
  MetricOptions,
  Observable,
  ObservableCounter,
} from '@opentelemetry/api';
import { attributeNames as A, durationBuckets, metricNames as M } from './names.js';

/** What to do with each event type: at most one handler per type. */
export type Handlers = { [K in EventType]?: (event: EventOf<K>) => void };

/** A duration in seconds. Below 0 only when the wall clock stepped back during the call: 0 then. */
const seconds = (ms: number) => Math.max(0, ms) / 1000;
/** `storeError` -> `store_error`. */
export const snakeCase = (word: string) => word.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
/** A code that can be an `error.type`: a short word (`ECONNRESET`, `E_TIMEOUT`, `23505`), never a message. */
export const shortCode = (code: string): string => (/^[\w.:-]{1,64}$/.test(code) ? code : '_OTHER');
/** Distinct `error.type` values per instrument() at most; past them a new code is `_OTHER`. */
const MAX_ERROR_TYPES = 100;
/**
 * Error codes as `error.type` values. Codes come from what calls throw: one made per call (an id
 * in it) must not make a series per call, nor a message (a URL with its password) an attribute,
 * nor a short one with a credential in it (`password:x`). `_OTHER` is OpenTelemetry's value for
 * an error it has no type for. A code seen is checked once.
 */
export function errorTypes(): (code: string) => string {
  const seen = new Set<string>();
  return (code) => {
    if (seen.has(code)) return code;
    const type = seen.size < MAX_ERROR_TYPES ? shortCode(code) : '_OTHER';
    if (type !== code) return type;
    if (hiddenName(code) !== code) return '_OTHER';
    seen.add(code);
    return code;
  };
}

/**
 * One key per attribute set, exact as the SDK tells sets apart (by their names and the JSON of
 * their values): names and values length-prefixed, so `a`, `b\0c` and `a\0b`, `c` stay two, and a
 * value that is no string spelled apart by its JSON, so 1 and '1', true and 'true', undefined and
 * 'undefined' stay two (an emitter of a user's own sends what it likes). undefined and null are one,
 * as to the SDK. Names are taken in the order given: each handler builds its sets in one order.
 */
export function keyOf(attributes: Attributes): string {
  let key = '';
  for (const name in attributes) {
    const value = attributes[name];
    const text = typeof value === 'string' ? value : JSON.stringify(value ?? null);
    key += `${name.length}:${name}${text.length}${typeof value === 'string' ? ':' : '~'}${text}`;
  }
  return key;
}

/**
 * A part of one instrument()'s metrics (events, chaos, limits): its handlers and the state they
 * keep, on no meter until attached. Kept apart from the meter, the state (counts, breakers' and
 * limiters' last values, toxics on, anomaly scores) outlives a move to another meter: the global
 * one the SDK registered after instrument() ran.
 */
export interface Part {
  readonly handlers: Handlers;
  /** Creates its instruments on `meter` and adds their callback, or throws having added none; returns what takes them off. */
  attach(meter: Meter): () => void;
}

/** Adds `observe` for `observables` on `meter`; returns what removes it. */
export function observing(meter: Meter, observables: Observable[], observe: BatchObservableCallback): () => void {
  meter.addBatchObservableCallback(observe, observables);
  return () => meter.removeBatchObservableCallback(observe, observables);
}

type Row = { readonly attributes: Attributes; value: number };

/** A monotonic count per attribute set, reported through an observable counter; rows grouped by policy. */
class Tally {
  readonly #rows = new Map<unknown, Map<string, Row>>();

  constructor(
    readonly name: string,
    readonly options: MetricOptions,
  ) {}

  add(value: number, attributes: Attributes): void {
    const policy = attributes[A.policy];
    let rows = this.#rows.get(policy);
    if (rows === undefined) this.#rows.set(policy, (rows = new Map()));
    const key = keyOf(attributes);
    const row = rows.get(key);
    if (row === undefined) rows.set(key, { attributes, value });
    else row.value += value;
  }

  /** Drops every row of `policy`: it has left, and its counts go with it. */
  forget(policy: string): void {
    this.#rows.delete(policy);
  }

  report(result: BatchObservableResult, counter: ObservableCounter): void {
    for (const rows of this.#rows.values()) {
      for (const row of rows.values()) result.observe(counter, row.value, row.attributes);
    }
  }
}

/**
 * Counters and histograms fed by events, and gauges read from the registered snapshots (and,
 * for breakers nobody registered, from their last transition event) each time the SDK collects.
 */
export function meterEvents(
  policies: PolicyRegistry,
  label: (name: string) => string,
  maxPolicies: number,
): Part & { forget: (name: string) => void; forgetBreaker: (name: string) => void } {
  // Counters are tallied here and reported at collection through observable counters: an event
  // then costs a map update instead of an SDK record (a few microseconds each, measured).
  const errorType = errorTypes();
  const withCode = (attrs: Attributes, code: string | undefined): Attributes =>
    code === undefined ? attrs : Object.assign({}, attrs, { [A.errorType]: errorType(code) });
  const tallies: Tally[] = [];
  const counter = (name: string, unit: string, description: string) => {
    const tally = new Tally(name, { unit, description });
    tallies.push(tally);
    return tally;
  };
  const histogram = (meter: Meter, name: string, description: string) =>
    meter.createHistogram(name, { unit: 's', description, advice: { explicitBucketBoundaries: durationBuckets } });
  // The histograms of the meter attached last, none before (nothing to record to).
  let durations: { readonly call: Histogram; readonly delay: Histogram } | undefined;
  // The SDK keeps every attribute set a histogram recorded while its MeterProvider lives (with
  // cumulative temporality, the default, and no call to drop one): a policy that leaves cannot take
  // its series along. So histograms name at most maxPolicies policies ever; later ones share
  // `_other` there (their counters still name them), and per-host churn grows nothing for good.
  const inHistograms = new Set<string>();
  const histogramAttributes = (attrs: Attributes): Attributes => {
    const policy = attrs[A.policy] as string;
    if (inHistograms.has(policy) || policy === OTHER_POLICY) return attrs;
    if (inHistograms.size < maxPolicies) {
      inHistograms.add(policy);
      return attrs;
    }
    if (inHistograms.size === maxPolicies) {
      inHistograms.add(OTHER_POLICY);
      process.emitWarning(
        `instrument: histograms keep every policy's series for good: past ${maxPolicies} (maxPolicies), new ones are "${OTHER_POLICY}" there`,
        { type: 'HoldfastWarning', code: 'HOLDFAST_METRICS_CARDINALITY' },
      );
    }
    return { ...attrs, [A.policy]: OTHER_POLICY };
  };
  /**
   * Records a duration given in ms. One that is no number (NaN: a stopwatch never started;
   * Infinity from a policy of a user's own) is left out: the call is counted, but an infinite or
   * NaN sum would stay in the histogram for good.
   */
  const recordMs = (histogram: Histogram | undefined, ms: number, attributes: Attributes) => {
    if (histogram !== undefined && Number.isFinite(ms)) histogram.record(seconds(ms), histogramAttributes(attributes));
  };

  const calls = counter(M.breakerCalls, '{call}', 'Calls through a circuit breaker, by outcome.');
  const slowCalls = counter(M.breakerSlowCalls, '{call}', 'Successful calls slower than the slow-call threshold.');
  const transitions = counter(M.breakerTransitions, '{transition}', 'Circuit breaker state changes, by new state.');
  const attempts = counter(M.retryAttempts, '{attempt}', 'Retries scheduled after a failed attempt.');
  const giveUps = counter(M.retryGiveUps, '{call}', 'Calls a retry policy stopped retrying, by reason.');
  const budgetRejections = counter(M.retryBudgetRejections, '{attempt}', 'Retries refused by a retry budget.');
  const timeouts = counter(M.timeouts, '{call}', 'Calls that ran past their time limit.');
  const idempotency = counter(M.idempotencyEvents, '{event}', 'Idempotency key events: claims, replays, conflicts...');
  const switches = counter(M.failoverSwitches, '{switch}', 'Traffic moves between endpoints of a failover set.');
  const ejections = counter(M.failoverEjections, '{ejection}', 'Endpoints ejected from a failover set.');

  // Least recently scored first. A watch scores each key it watches every interval; a key it
  // forgot (idle, or evicted at its maxKeys) gets no more scores from it, so its rows go: at once
  // when it is forgotten while raised (its stale high score would keep an alert firing), else
  // once 5,000 newer rows came. A new key is always reported.
  const lastScores = new Map<string, { readonly attributes: Attributes; value: number }>();
  // Detection counts per watch and key (by detector and metric), least recently raised first: a
  // key's go with its scores (forgotten while raised), or once 5,000 newer keys were raised.
  // Per-host keys churn: counts for every host ever seen would grow for good.
  const detected = new Map<string, Map<string, Row>>();
  const detect = (e: EventOf<'anomaly.detected'>) => {
    const key = hiddenName(e.key);
    const id = JSON.stringify([e.source, key]);
    const rows = detected.get(id) ?? new Map<string, Row>();
    detected.delete(id);
    detected.set(id, rows);
    if (detected.size > 5_000) detected.delete(detected.keys().next().value as string);
    const detector = hiddenName(e.detector);
    const metric = hiddenName(e.metric);
    const which = JSON.stringify([detector, metric]);
    const row = rows.get(which);
    if (row !== undefined) row.value++;
    else {
      const attributes = { [A.policy]: e.source, [A.anomalyKey]: key, [A.anomalyDetector]: detector };
      rows.set(which, { attributes: { ...attributes, [A.anomalyMetric]: metric }, value: 1 });
    }
  };
  const score = (policy: string, key: string, metric: string, value: number) => {
    // A score is a number: text from an emitter of a user's own is no value to export.
    if (typeof value !== 'number') return;
    // Exact for any strings, lone surrogates included (JSON spells them out).
    const id = JSON.stringify([policy, key, metric]);
    const row = lastScores.get(id) ?? {
      attributes: { [A.policy]: policy, [A.anomalyKey]: key, [A.anomalyMetric]: metric },
      value,
    };
    row.value = value;
    lastScores.delete(id);
    lastScores.set(id, row);
    if (lastScores.size > 5_000) lastScores.delete(lastScores.keys().next().value as string);
  };
  const dropScores = (policy: string, key: string) => {
    for (const [id, { attributes }] of lastScores) {
      if (attributes[A.policy] === policy && attributes[A.anomalyKey] === key) lastScores.delete(id);
    }
    detected.delete(JSON.stringify([policy, key]));
  };

  // Breakers seen only on the bus (not registered): their state after the last transition.
  const lastState = new Map<string, string>();
  const transition = (e: EventOf<keyof typeof breakerStateAfter>) => {
    const state = breakerStateAfter[e.type];
    // `_other` stands for many breakers: it has no one state.
    if (e.source !== OTHER_POLICY) lastState.set(e.source, state);
    transitions.add(1, { [A.policy]: e.source, [A.breakerState]: state });
  };

  const handlers: Handlers = {
    'breaker.success': (e) => {
      const attrs = { [A.policy]: e.source, [A.outcome]: 'success' };
      calls.add(1, attrs);
      recordMs(durations?.call, e.latency, attrs);
    },
    'breaker.failure': (e) => {
      const attrs = withCode({ [A.policy]: e.source, [A.outcome]: 'failure' }, e.code);
      calls.add(1, attrs);
      recordMs(durations?.call, e.latency, attrs);
    },
    'breaker.reject': (e) => calls.add(1, { [A.policy]: e.source, [A.outcome]: 'rejected' }),
    'breaker.slow': (e) => slowCalls.add(1, { [A.policy]: e.source }),
    'breaker.open': transition,
    'breaker.halfOpen': transition,
    'breaker.close': transition,
    'breaker.isolate': transition,
    'breaker.disable': transition,
    'retry.attempt': (e) => {
      attempts.add(1, withCode({ [A.policy]: e.source }, e.code));
      recordMs(durations?.delay, e.delay, { [A.policy]: e.source });
    },
    'retry.giveUp': (e) =>
      giveUps.add(1, withCode({ [A.policy]: e.source, [A.retryReason]: hiddenName(e.reason) }, e.code)),
    'retry.budgetExhausted': (e) => budgetRejections.add(1, { [A.policy]: e.source }),
    timeout: (e) => timeouts.add(1, { [A.policy]: e.source, [A.timeoutStrategy]: hiddenName(e.strategy) }),
    'failover.switch': (e) =>
      switches.add(1, {
        [A.policy]: e.source,
        [A.failoverReason]: hiddenName(e.reason),
        [A.endpoint]: hiddenName(e.to),
      }),
    'failover.eject': (e) => ejections.add(1, { [A.policy]: e.source, [A.endpoint]: hiddenName(e.endpoint) }),
    'anomaly.score': (e) => {
      const key = hiddenName(e.key);
      score(e.source, key, 'all', e.score);
      for (const m of e.metrics) score(e.source, key, hiddenName(m.name), m.score);
    },
    'anomaly.detected': detect,
    'anomaly.cleared': (e) => {
      if (e.reason === 'forgotten') dropScores(e.source, hiddenName(e.key));
    },
  };

  // Every idempotency event by name: `claim`, `replay`, `conflict`, `store_error`...
  for (const type of eventTypes) {
    if (!type.startsWith('idempotency.')) continue;
    const outcome = snakeCase(type.slice('idempotency.'.length));
    (handlers as Record<string, (e: HoldfastEvent) => void>)[type] = (e) =>
      idempotency.add(1, { [A.policy]: e.source, [A.idempotencyEvent]: outcome });
  }

  const attach = (meter: Meter) => {
    // Each tally's counter with it.
    const counters = tallies.map((t) => [t, meter.createObservableCounter(t.name, t.options)] as const);
    const stateGauge = meter.createObservableGauge(M.breakerState, {
      unit: '1',
      description: 'Circuit breaker state: 1 for the state it is in, 0 for the others.',
    });
    const endpointUp = meter.createObservableGauge(M.failoverEndpointUp, {
      unit: '1',
      description: 'Whether an endpoint of a failover set can take calls now (1) or not (0).',
    });
    const inFlight = meter.createObservableUpDownCounter(M.failoverEndpointInFlight, {
      unit: '{call}',
      description: 'Calls in flight to an endpoint of a failover set.',
    });
    const budgetBalance = meter.createObservableGauge(M.retryBudgetBalance, {
      unit: '{attempt}',
      description: 'Retries a retry budget would let through now.',
    });
    // @holdfast/anomaly: each watched key's last scores (by metric, and `all`), and its alerts, per
    // watch (its name as the policy: two watches on one bus may watch the same key).
    const anomalyScore = meter.createObservableGauge(M.anomalyScore, {
      unit: '1',
      description: 'Anomaly score of a watched key in its last interval, 0..1 (0.5 is the threshold).',
    });
    const detections = meter.createObservableCounter(M.anomalyDetections, {
      unit: '{anomaly}',
      description: 'Anomalies raised by an anomaly watch.',
    });
    const mine = {
      call: histogram(meter, M.breakerCallDuration, 'Duration of calls through a circuit breaker.'),
      delay: histogram(meter, M.retryDelay, 'Backoff delay before each retry.'),
    };
    const observe = (result: BatchObservableResult) => {
      for (const [tally, counter] of counters) tally.report(result, counter);
      // Newest first: past the SDK's own cardinality limit (2,000 by default) the live keys win.
      for (const row of [...lastScores.values()].reverse()) result.observe(anomalyScore, row.value, row.attributes);
      for (const rows of detected.values()) {
        for (const row of rows.values()) result.observe(detections, row.value, row.attributes);
      }
      // By policy label: a breaker registered and on the bus under a name with a password (its
      // label hidden) is one breaker, its snapshot's state standing, not two. Those under `_other`
      // are each counted there.
      const breakers = new Map<string, string>(lastState);
      const others: string[] = [];
      // A policy's own value (its newest copy's), or for `_other` the sum over the policies it
      // stands for: endpoints of that name up, calls in flight, retries the budgets allow. The
      // last one read would say nothing of the others.
      const gauges = new Map<Observable, Map<string, { readonly attributes: Attributes; value: number }>>();
      const gauge = (g: Observable, value: number, attributes: Attributes) => {
        let rows = gauges.get(g);
        if (rows === undefined) gauges.set(g, (rows = new Map()));
        const key = keyOf(attributes);
        const row = rows.get(key);
        if (row !== undefined && attributes[A.policy] === OTHER_POLICY) row.value += value;
        else rows.set(key, { attributes, value });
      };
      for (const { kind, name, snapshot } of policies.snapshots()) {
        if (kind === 'breaker') {
          const b: BreakerView | undefined = readBreaker(name, snapshot);
          const policy = b && label(name);
          // A state of a user's own snapshot is whatever it says.
          const state = b && hiddenName(b.state);
          if (policy === OTHER_POLICY) others.push(state as string);
          else if (policy) breakers.set(policy, state as string);
        } else if (kind === 'failover') {
          for (const e of readFailover(name, snapshot)?.endpoints ?? []) {
            const attrs = { [A.policy]: label(name), [A.endpoint]: hiddenName(e.name) };
            gauge(endpointUp, e.up ? 1 : 0, attrs);
            if (e.inFlight !== null) gauge(inFlight, e.inFlight, attrs);
          }
        } else if (kind === 'budget') {
          const balance = readBudget(name, snapshot)?.balance;
          if (balance != null) gauge(budgetBalance, balance, { [A.policy]: label(name) });
        }
      }
      for (const [g, rows] of gauges) for (const row of rows.values()) result.observe(g, row.value, row.attributes);
      // Per policy label, how many of its breakers are in each state: 1 and 0s for a breaker of
      // its own, counts for `_other`.
      const states = new Map<string, Map<string, number>>();
      for (const [policy, current] of [...breakers, ...others.map((state) => [OTHER_POLICY, state] as const)]) {
        let counts = states.get(policy);
        if (counts === undefined) states.set(policy, (counts = new Map(breakerStates.map((s) => [s, 0]))));
        counts.set(current, (counts.get(current) ?? 0) + 1);
      }
      for (const [policy, counts] of states) {
        for (const [state, count] of counts) {
          result.observe(stateGauge, count, { [A.policy]: policy, [A.breakerState]: state });
        }
      }
    };
    const gauges = [stateGauge, endpointUp, inFlight, budgetBalance, anomalyScore, detections];
    const remove = observing(meter, [...gauges, ...counters.map(([, counter]) => counter)], observe);
    durations = mine;
    return () => {
      if (durations === mine) durations = undefined;
      remove();
    };
  };
  const forget = (name: string) => {
    for (const tally of tallies) tally.forget(name);
    lastState.delete(name);
  };
  const forgetBreaker = (name: string) => {
    for (const tally of tallies) if (tally.name.startsWith('holdfast.breaker.')) tally.forget(name);
    lastState.delete(name);
  };
  return { handlers, forget, forgetBreaker, attach };
}
