import {
  breakerStateAfter,
  breakerStates,
  type EventOf,
  type EventType,
  eventTypes,
  bus as globalBus,
  policies as globalPolicies,
  HoldfastConfigError,
  type HoldfastEvent,
  healthReport,
  labelled,
  OTHER_POLICY,
  PolicyLabels,
  parseOptions,
  plainPolicies,
  readBreaker,
  readBudget,
  readFailover,
  runAll,
  shieldBus,
} from '@holdfast/core';
import { Counter, Gauge, type GaugeConfiguration, Histogram, type Metric, register } from 'prom-client';
import { type AnyRegistry, type CollectOptions, collectOptionsSchema, type ParsedCollectOptions } from './options.js';
import { keyOf, type Labels, wiring } from './wire.js';

/** Stops collecting: unsubscribes from the bus and removes the metrics from the registry. */
export type StopCollecting = () => void;

type Handlers = { [K in EventType]?: (event: EventOf<K>) => void };

/** A duration in seconds. Below 0 only when the wall clock stepped back during the call: 0 then. */
const seconds = (ms: number) => Math.max(0, ms) / 1000;
/**
 * Sets a scrape-time gauge for one policy label: summed under `_other` (it stands for many), else
 * the value of the newest copy of that name (one re-created before the old was disposed: the old
 * one's value is stale).
 */
function put(gauge: Gauge, labels: Labels<string> & { policy: string }, value: number, wire: Wire): void {
  gauge[labels.policy === OTHER_POLICY ? 'inc' : 'set'](wire(labels), value);
}
type Wire = ReturnType<typeof wiring>['labels'];
/** Anomaly score series kept at most: the least recently scored keys' go first. */
const MAX_SCORE_SERIES = 5_000;

/**
 * Registers holdfast's metrics on a prom-client registry: counters and histograms fed by bus
 * events, and gauges read from the registered snapshots each time Prometheus scrapes.
 *
 * @example
 * const stop = collect({ registry });
 * app.get('/metrics', async (_req, res) => res.type(registry.contentType).send(await registry.metrics()));
 */
export function collect(options: CollectOptions = {}): StopCollecting {
  const o = parseOptions('collect', collectOptionsSchema, options);
  const registry: AnyRegistry = o.registry ?? register;
  // What this collect() put on, so that stop() takes off that and no more: a metric of that name
  // that is not its own (the registry cleared and collected again meanwhile) stays.
  const owned = new Map<string, Metric>();
  const offs: (() => void)[] = [];
  let active = true;
  const stop = () => {
    if (!active) return;
    active = false;
    // Each step, whatever one throws (a registry that will not remove a metric): the others go all
    // the same. Then the first error is told.
    const steps = [...offs];
    for (const [n, metric] of owned) {
      steps.push(() => {
        if (registry.getSingleMetric(n) === metric) registry.removeSingleMetric(n);
      });
    }
    runAll(steps);
  };
  try {
    start(o, registry, owned, offs);
  } catch (error) {
    // All or nothing: a registry or bus of the user's that throws halfway (or a name taken) leaves
    // none of this collect()'s metrics and listeners behind, and a collect() again works.
    try {
      stop();
    } catch {
      // The setup's error is the one to tell.
    }
    throw error;
  }
  return stop;
}

/** Registers the metrics (each in `owned` once on the registry) and subscribes (each in `offs`). */
function start(o: ParsedCollectOptions, registry: AnyRegistry, owned: Map<string, Metric>, offs: (() => void)[]): void {
  const policies = plainPolicies(o.policies ?? globalPolicies);
  // A user's bus whose unsubscribe is none or throws must not leave stop() half done (see shieldBus).
  const bus = shieldBus(o.bus ?? globalBus, 'collect');
  const name = (suffix: string) => {
    const full = o.prefix + suffix;
    if (registry.getSingleMetric(full) !== undefined) {
      const message = `already has a metric "${full}"; stop the other collect() or use a prefix`;
      throw new HoldfastConfigError('collect', [{ path: 'registry', message }]);
    }
    return full;
  };
  // Constructed with `registers`, a metric is on the registry once its constructor returns.
  const own = <M extends Metric>(metric: M): M => {
    owned.set((metric as unknown as { name: string }).name, metric);
    return metric;
  };
  const registers = [registry];
  const gauge = <L extends string>(config: Omit<GaugeConfiguration<L>, 'registers'>) =>
    own(new Gauge({ ...config, registers }));
  // Policy labels: capped, without the credentials their names may carry, two that hide alike
  // apart, and a user's `_other` apart from the overflow (see PolicyLabels).
  const policyLabels = new PolicyLabels(o.maxPolicies, 'collect');
  const label = (policy: string) => policyLabels.label(policy);
  // Every label value as it goes on the wire, hidden (see wiring).
  const wired = wiring();
  const wire = wired.labels;
  // Per policy label, what removes each of its series: a policy that leaves takes them along.
  const series = new Map<string, Map<string, () => void>>();
  // Tracked as the series is written (`wired`): values that differ only in a secret are one series,
  // and one key here (per raw value, presigned URLs grew it for good).
  const track = <L extends string>(
    id: string,
    metric: { remove(labels: Labels<L>): void },
    labels: Labels<L>,
    wired: Labels<L>,
  ) => {
    const policy = (labels as { policy?: unknown }).policy;
    if (typeof policy !== 'string') return;
    let mine = series.get(policy);
    if (mine === undefined) series.set(policy, (mine = new Map()));
    const key = `${id}\u0000${keyOf(Object.values(wired))}`;
    if (!mine.has(key)) mine.set(key, () => metric.remove(wired));
  };
  const counter = <L extends string>(suffix: string, help: string, labelNames: readonly L[]) => {
    const metric = own(new Counter({ name: name(suffix), help, labelNames, registers }));
    return {
      inc(labels: Labels<L>) {
        const wired = wire(labels);
        track(suffix, metric, labels, wired);
        metric.inc(wired);
      },
    };
  };
  const histogram = <L extends string>(suffix: string, help: string, labelNames: readonly L[]) => {
    const metric = own(new Histogram({ name: name(suffix), help, labelNames, buckets: o.buckets, registers }));
    return {
      /** Observes a duration given in ms, in seconds. */
      observe(labels: Labels<L>, ms: number) {
        // No number of ms (NaN: a stopwatch never started; ±Infinity from a policy of a user's own;
        // null: NaN after a JSON hop) is no figure, checked before seconds() clamps it to 0: the
        // call is counted by its counter, and prom-client throws on NaN.
        if (!Number.isFinite(ms)) return;
        const wired = wire(labels);
        track(suffix, metric, labels, wired);
        metric.observe(wired, seconds(ms));
      },
    };
  };

  const calls = counter('breaker_calls_total', 'Calls through a circuit breaker, by outcome.', ['policy', 'outcome']);
  const slow = counter('breaker_slow_calls_total', 'Successful calls slower than the slow-call threshold.', ['policy']);
  const latency = histogram('breaker_call_duration_seconds', 'Duration of calls through a circuit breaker.', [
    'policy',
    'outcome',
  ]);
  const transitions = counter('breaker_transitions_total', 'Circuit breaker state changes, by new state.', [
    'policy',
    'state',
  ]);
  const attempts = counter('retry_attempts_total', 'Retries scheduled after a failed attempt.', ['policy']);
  const delay = histogram('retry_delay_seconds', 'Backoff delay before each retry.', ['policy']);
  const giveUps = counter('retry_give_ups_total', 'Calls a retry policy stopped retrying, by reason.', [
    'policy',
    'reason',
  ]);
  const refused = counter('retry_budget_rejections_total', 'Retries refused by a retry budget.', ['policy']);
  const timeouts = counter('timeouts_total', 'Calls that ran past their time limit.', ['policy']);
  const idempotency = counter('idempotency_events_total', 'Idempotency key events: claims, replays, conflicts...', [
    'policy',
    'event',
  ]);
  const limits = counter(
    'limit_events_total',
    'Bulkhead, rate limit, adaptive concurrency, throttle, hedge and fallback events, by event.',
    ['policy', 'event'],
  );
  const switches = counter('failover_switches_total', 'Traffic moves between endpoints of a failover set.', [
    'policy',
    'reason',
    'to',
  ]);
  const ejections = counter('failover_ejections_total', 'Endpoints ejected from a failover set.', [
    'policy',
    'endpoint',
  ]);

  // @holdfast/anomaly: each watched key's scores per interval, and its alerts, per watch (`policy`:
  // two watches on one bus may watch the same key).
  const anomalyScore = gauge({
    name: name('anomaly_score'),
    help: 'Anomaly score of a watched key in its last interval, 0..1 (0.5 is the threshold); metric "all" is the highest.',
    labelNames: ['policy', 'key', 'metric'],
  });
  const anomalies = own(
    new Counter({
      name: name('anomaly_detected_total'),
      help: 'Anomalies raised by an anomaly watch.',
      labelNames: ['policy', 'key', 'detector', 'metric'],
      registers,
    }),
  );
  // Per watch and key, its score series (by metric) and detection series (by detector and metric),
  // least recently scored first. A watch scores each key it watches every interval; a key it forgot
  // (idle, or evicted at its maxKeys) gets no more scores from it, so its series are dropped: at
  // once when it is forgotten while raised (its stale high score would keep an alert firing), else
  // once MAX_SCORE_SERIES newer ones came. Its detection counts go with them: per-host keys churn.
  type Scored = { policy: string; key: string; metrics: readonly string[]; detected: Map<string, Labels<string>> };
  const scored = new Map<string, Scored>();
  let scoreSeries = 0;
  // Exact for any two strings, lone surrogates included (JSON spells them out).
  const idOf = (policy: string, key: string) => JSON.stringify([policy, key]);
  const touch = (policy: string, key: string) => {
    const id = idOf(policy, key);
    const entry = scored.get(id) ?? { policy, key, metrics: [], detected: new Map() };
    scored.delete(id);
    scored.set(id, entry);
    return entry;
  };
  const dropScores = (id: string) => {
    const entry = scored.get(id);
    if (entry === undefined) return;
    const { policy, key } = entry;
    for (const metric of entry.metrics) anomalyScore.remove(wire({ policy, key, metric }));
    for (const labels of entry.detected.values()) anomalies.remove(wire(labels));
    scoreSeries -= entry.metrics.length + entry.detected.size;
    scored.delete(id);
  };
  const bound = () => {
    while (scoreSeries > MAX_SCORE_SERIES && scored.size > 1) dropScores(scored.keys().next().value as string);
  };

  // Breakers seen only on the bus (not registered): their state after the last transition.
  const lastState = new Map<string, string>();
  gauge({
    name: name('breaker_state'),
    help: 'Circuit breaker state: 1 for the state it is in, 0 for the others.',
    labelNames: ['policy', 'state'],
    collect() {
      this.reset();
      // By policy label: a breaker registered and on the bus is one breaker, its snapshot's state
      // standing. Those under `_other` are each counted there.
      const current = new Map(lastState);
      const others: string[] = [];
      for (const { name, snapshot } of policies.snapshots('breaker')) {
        const state = readBreaker(name, snapshot)?.state;
        if (state === undefined) continue;
        const policy = label(name);
        if (policy === OTHER_POLICY) others.push(state);
        else current.set(policy, state);
      }
      // Summed per label: 1 and 0s for a breaker of its own, counts per state for `_other`.
      for (const [policy, state] of [...current, ...others.map((state) => [OTHER_POLICY, state] as const)]) {
        const all: readonly string[] = breakerStates.includes(state as never)
          ? breakerStates
          : [...breakerStates, state];
        for (const s of all) this.inc(wire({ policy, state: s }), s === state ? 1 : 0);
      }
    },
  });
  gauge({
    name: name('failover_endpoint_up'),
    help: 'Whether an endpoint of a failover set can take calls now (1) or not (0).',
    labelNames: ['policy', 'endpoint'],
    collect() {
      this.reset();
      for (const { name, snapshot } of policies.snapshots('failover')) {
        for (const e of readFailover(name, snapshot)?.endpoints ?? []) {
          put(this, { policy: label(name), endpoint: e.name }, e.up ? 1 : 0, wire);
        }
      }
    },
  });
  gauge({
    name: name('failover_endpoint_in_flight'),
    help: 'Calls in flight to an endpoint of a failover set.',
    labelNames: ['policy', 'endpoint'],
    collect() {
      this.reset();
      for (const { name, snapshot } of policies.snapshots('failover')) {
        for (const e of readFailover(name, snapshot)?.endpoints ?? []) {
          if (e.inFlight !== null) put(this, { policy: label(name), endpoint: e.name }, e.inFlight, wire);
        }
      }
    },
  });
  gauge({
    name: name('retry_budget_balance'),
    help: 'Retries a retry budget would let through now.',
    labelNames: ['policy'],
    collect() {
      this.reset();
      for (const { name, snapshot } of policies.snapshots('budget')) {
        const balance = readBudget(name, snapshot)?.balance;
        if (balance != null) put(this, { policy: label(name) }, balance, wire);
      }
    },
  });
  gauge({
    name: name('ready'),
    help: 'Whether healthReport() finds the instance ready (1) or not (0).',
    collect() {
      this.set(healthReport({ policies }).ready ? 1 : 0);
    },
  });

  const transition = (e: EventOf<keyof typeof breakerStateAfter>) => {
    const state = breakerStateAfter[e.type];
    // `_other` stands for many breakers: it has no one state.
    if (e.source !== OTHER_POLICY) lastState.set(e.source, state);
    transitions.inc({ policy: e.source, state });
  };
  const handlers: Handlers = {
    'breaker.success': (e) => {
      calls.inc({ policy: e.source, outcome: 'success' });
      latency.observe({ policy: e.source, outcome: 'success' }, e.latency);
    },
    'breaker.failure': (e) => {
      calls.inc({ policy: e.source, outcome: 'failure' });
      latency.observe({ policy: e.source, outcome: 'failure' }, e.latency);
    },
    'breaker.reject': (e) => calls.inc({ policy: e.source, outcome: 'rejected' }),
    'breaker.slow': (e) => slow.inc({ policy: e.source }),
    'breaker.open': transition,
    'breaker.halfOpen': transition,
    'breaker.close': transition,
    'breaker.isolate': transition,
    'breaker.disable': transition,
    'retry.attempt': (e) => {
      attempts.inc({ policy: e.source });
      delay.observe({ policy: e.source }, e.delay);
    },
    'retry.giveUp': (e) => giveUps.inc({ policy: e.source, reason: e.reason }),
    'retry.budgetExhausted': (e) => refused.inc({ policy: e.source }),
    timeout: (e) => timeouts.inc({ policy: e.source }),
    'failover.switch': (e) => switches.inc({ policy: e.source, reason: e.reason, to: e.to }),
    'failover.eject': (e) => ejections.inc({ policy: e.source, endpoint: e.endpoint }),
    'anomaly.score': (e) => {
      const { source: policy, key } = e;
      const entry = touch(policy, key);
      const had = entry.metrics.length;
      entry.metrics = [...new Set([...entry.metrics, 'all', ...e.metrics.map((m) => m.name)])];
      scoreSeries += entry.metrics.length - had;
      // A score is a number: prom-client throws on text (from an emitter of a user's own), and its
      // message, which holds the text, went out as a warning.
      if (typeof e.score === 'number') anomalyScore.set(wire({ policy, key, metric: 'all' }), e.score);
      for (const m of e.metrics) {
        if (typeof m.score === 'number') anomalyScore.set(wire({ policy, key, metric: m.name }), m.score);
      }
      bound();
    },
    'anomaly.cleared': (e) => {
      if (e.reason === 'forgotten') dropScores(idOf(e.source, e.key));
    },
    'anomaly.detected': (e) => {
      const labels = { policy: e.source, key: e.key, detector: e.detector, metric: e.metric };
      const entry = touch(e.source, e.key);
      const id = keyOf([e.detector, e.metric]);
      if (!entry.detected.has(id)) {
        entry.detected.set(id, labels);
        scoreSeries++;
      }
      anomalies.inc(wire(labels));
      bound();
    },
  };

  // Every idempotency event by name: `claim`, `replay`, `conflict`, `store_error`...
  for (const type of eventTypes) {
    if (!type.startsWith('idempotency.')) continue;
    const event = type.slice('idempotency.'.length).replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    (handlers as Record<string, (e: HoldfastEvent) => void>)[type] = (e) =>
      idempotency.inc({ policy: e.source, event });
  }

  // Every event of @holdfast/limit, hedge() and fallback() by name: `bulkhead_reject`, `hedge_attempt`...
  for (const type of eventTypes) {
    if (!/^(bulkhead|rateLimit|concurrency|throttle|hedge)\.|^fallback$/.test(type)) continue;
    const event = type.replace('.', '_').replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    (handlers as Record<string, (e: HoldfastEvent) => void>)[type] = (e) => limits.inc({ policy: e.source, event });
  }
  gauge({
    name: name('concurrency_limit'),
    help: 'The limit an adaptive concurrency limiter has learned.',
    labelNames: ['policy'],
    collect() {
      this.reset();
      for (const { name, snapshot } of policies.snapshots('concurrency')) {
        const limit = (snapshot as { limit?: unknown } | null)?.limit;
        if (typeof limit === 'number') put(this, { policy: label(name) }, limit, wire);
      }
    },
  });
  // Chaos (@holdfast/chaos): faults injected on purpose, counted apart so a drill is never taken
  // for an outage. Injections by kind (no per-call detail: it would grow the label set), and the
  // fault proxy toxics on now.
  const injections = counter('chaos_injections_total', 'Faults injected into calls on purpose, by kind.', [
    'policy',
    'kind',
  ]);
  // Per proxy (by its name as given), the names of its toxics on now, by toxic type. Proxies are
  // labelled apart from policies (they never register, so never leave the registry): one whose
  // toxics all went off is scraped at 0 once, then leaves, and frees its place.
  const proxyLabels = new PolicyLabels(o.maxPolicies, 'collect');
  const toxicsOn = new Map<string, Map<string, Set<string>>>();
  gauge({
    name: name('chaos_toxics_active'),
    help: 'Fault proxy toxics on now, by proxy and toxic type.',
    labelNames: ['proxy', 'toxic'],
    collect() {
      this.reset();
      for (const [source, toxics] of toxicsOn) {
        const proxy = proxyLabels.label(source);
        for (const [toxic, names] of toxics) {
          // Summed under `_other`, which stands for many proxies.
          this[proxy === OTHER_POLICY ? 'inc' : 'set'](wire({ proxy, toxic }), names.size);
          if (names.size === 0) toxics.delete(toxic);
        }
        if (toxics.size > 0) continue;
        toxicsOn.delete(source);
        const gone = proxyLabels.forget(source);
        if (gone !== undefined) wired.forget(gone);
      }
    },
  });
  handlers['chaos.inject'] = (e) => injections.inc({ policy: e.source, kind: e.kind });
  // Not labelled as a policy (see toxicsOn): subscribed on its own below.
  const toxicOn = (e: EventOf<'chaos.toxic'>) => {
    const source = String(e.source);
    const toxics = toxicsOn.get(source) ?? new Map<string, Set<string>>();
    toxicsOn.set(source, toxics);
    const toxic = String(e.toxic);
    const names = toxics.get(toxic) ?? new Set<string>();
    toxics.set(toxic, names);
    if (e.active) names.add(e.name);
    else names.delete(e.name);
  };

  const on = bus.on.bind(bus) as (type: EventType, listener: (event: HoldfastEvent) => void) => () => void;
  for (const [type, handler] of Object.entries(handlers)) {
    const h = handler as (event: HoldfastEvent) => void;
    offs.push(on(type as EventType, (event) => h(labelled(event, label))));
  }
  offs.push(bus.on('chaos.toxic', toxicOn));
  // A policy that leaves the registry (a breakerRegistry's evicted host) takes its series along,
  // and its last state: an evicted breaker is not open any more.
  if (typeof policies.onUnregister === 'function') {
    // Per kind, before the name goes (put on first, told first): a breaker disposed while a
    // failover set of its name stays takes its breaker series and last state along (its state
    // stayed `open` 1 as long as the set lived). The name keeps its label for the set.
    offs.push(
      policies.onUnregister(
        (kind, name) => {
          const policy = kind === 'breaker' ? policyLabels.peek(name) : undefined;
          if (policy === undefined || policy === OTHER_POLICY) return;
          lastState.delete(policy);
          const mine = series.get(policy);
          for (const [key, remove] of mine ?? []) {
            if (!key.startsWith('breaker_')) continue;
            remove();
            mine?.delete(key);
          }
        },
        { perKind: true },
      ),
    );
    offs.push(
      policies.onUnregister((_kind, name) => {
        const policy = policyLabels.forget(name);
        if (policy === undefined) return;
        for (const remove of series.get(policy)?.values() ?? []) remove();
        series.delete(policy);
        wired.forget(policy);
        lastState.delete(policy);
      }),
    );
  }
}
