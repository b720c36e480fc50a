import { type AnomalyMetric, type Bus, type Clock, elapsedTime, type TimerHandle } from '@holdfast/core';
import type { z } from 'zod';
import type { watchOptionsSchema } from './options.js';
import { shown } from './shown.js';

type ActionOptions = z.output<typeof watchOptionsSchema>['actions'];
type Action = 'eject' | 'restore' | 'openBreaker' | 'lowerBudget';
type FailoverLike = NonNullable<ActionOptions['eject']>['failover'];

/** Calls a user's callback or object; what it throws is reported (once per callback) and `fallback` returned. */
export type Guard = <R>(what: string, fn: () => R, fallback: R) => R;

/** An endpoint as the set's snapshot shows it, when the set has one. */
interface EndpointState {
  readonly name: string;
  readonly role?: string;
  readonly available?: boolean;
  readonly ejection?: string;
  readonly ejectedUntil?: number | null;
}

/**
 * Metrics where higher is worse, and the least spread among peers that makes an outlier: a share
 * of the peers' mean and an absolute floor. Latency: half the mean, so with `stdevFactor` 1.9 an
 * endpoint must be about twice as slow as its peers (one interval's latencies of identical
 * endpoints differ by more than 19%, the old 10%, every few intervals). Rates: 10%, and 0.02.
 */
/** Tokens withdrawn from a budget per interval, at most: a balance of millions is lowered in bounded time. */
const MAX_WITHDRAWALS = 100_000;

const peerFloor: Record<string, { readonly share: number; readonly least: number }> = {
  latencyP50: { share: 0.5, least: 0 },
  latencyP99: { share: 0.5, least: 0 },
  errorRate: { share: 0.1, least: 0.02 },
  rejectRate: { share: 0.1, least: 0.02 },
};

/** A raised key not ejected yet: tried again each interval, its refusals told once. */
interface Pending {
  /** The metric its anomaly was first seen on. */
  readonly metric: string;
  readonly told: Set<string>;
  /** After an ejection ran out: the samples it had then; it waits for a newer one before it is judged. */
  readonly after: number | undefined;
  /**
   * After an ejection ran out, until the first call it took since (the set's probe) is judged: when
   * the set's ejection ran out (it began no earlier than this side's, for the same time), or when
   * this side's timer for it fired, if that was earlier (both timers fire early alike). The set's
   * probe is sent no earlier, even when this side's timer fires after it (a busy event loop); a
   * call sent before is no probe: one in flight at the ejection (sent in its very millisecond,
   * too), or one the set sent while ejected (under panic it sends to every endpoint).
   */
  probeFrom: number | undefined;
}

/**
 * What a watch does about an anomaly, each action behind its safety limit. Everything acts
 * through the public API of what it is given: a failover set's `eject`/`restore`, a breaker's
 * `open()`, a budget's `tryWithdraw()`.
 */
export class Actions {
  /**
   * Endpoint name -> the key whose anomaly took it out, when it runs out (`from` the ejection plus
   * its duration), the timer that ends the ejection here, and when the set was told it ends (to
   * tell this ejection from one the set made since).
   */
  readonly #ejected = new Map<
    string,
    // `shown`: the key as its eject named it; its restore names it so, the key forgotten since or not.
    { key: string; shown: string; metric: string; runsOut: number; timer: TimerHandle; until: number | undefined }
  >();
  readonly #opened = new Set<string>();
  readonly #pending = new Map<string, Pending>();
  /** Disposed, by the watch, maybe by a listener of an action under way: nothing more is done. */
  #disposed = false;
  /**
   * The clock's monotonic time, on which latencies are measured: when an ejection runs out, and
   * so which call is its probe, must not move with a wall-clock step.
   */
  readonly #elapsed: () => number;

  constructor(
    private readonly o: ActionOptions,
    private readonly source: string,
    private readonly bus: Bus,
    private readonly clock: Clock,
    /** Every watched key's last metrics. */
    private readonly watched: () => Iterable<[string, readonly AnomalyMetric[]]>,
    /** Intervals scored on a key so far, whether an anomaly is raised on it now, and how it is shown (cut, redacted). */
    private readonly state: (key: string) => { samples: number; raised: boolean; shown: string },
    private readonly guard: Guard,
  ) {
    this.#elapsed = elapsedTime(clock);
  }

  /** A key went from no anomaly to one, first seen on `metric`. */
  detected(key: string, metric: string): void {
    if (this.o.eject !== undefined) {
      this.#pending.set(key, { metric, told: new Set(), after: undefined, probeFrom: undefined });
      this.#eject(key);
    }
    if (this.o.openBreaker !== undefined) this.#openBreaker(key);
  }

  /** Every anomaly on `key` cleared. */
  cleared(key: string): void {
    this.#pending.delete(key);
    this.#opened.delete(key);
    for (const [endpoint, e] of this.#ejected) if (e.key === key) this.#restore(endpoint, 'cleared', true);
  }

  /**
   * The watch forgot `key` (idle, or evicted for a new key): that is no recovery, so nothing is
   * put back. An ejection runs its course and the set's probe decides; nothing new is tried.
   */
  forgotten(key: string): void {
    this.#pending.delete(key);
    this.#opened.delete(key);
  }

  /**
   * A call of `key` settled. The first one it took since its ejection ran out (the set's probe) is
   * judged at once: still an outlier, the endpoint goes out again before the set lets it back,
   * rather than after an interval of calls at its full share (a slow endpoint's calls are scored
   * only once they answer).
   */
  settled(key: string, latency: number, outcome: 'success' | 'failure' | 'reject'): void {
    if (this.#pending.size === 0 && this.#ejected.size === 0) return;
    // Sent once the ejection ran out, before our timer for it fired (late, or on another clock than
    // the set's): it is the set's probe, and must not settle unjudged.
    for (const [endpoint, e] of this.#ejected)
      if (e.key === key && this.#elapsed() - latency >= e.runsOut) this.#expired(endpoint);
    const pending = this.#pending.get(key);
    // A rejected call never reached the endpoint: it says nothing of it.
    if (pending?.probeFrom === undefined || outcome === 'reject' || !Number.isFinite(latency)) return;
    // Sent before the ejection ran out (in flight at it, or sent under panic): no news of the endpoint now.
    if (this.#elapsed() - latency < pending.probeFrom) return;
    const metric = judged(pending.metric);
    // A failed probe says nothing of a latency (a refused connection fails at once), and the set
    // takes the endpoint out again for it itself: its next probe is the one judged.
    if (outcome === 'failure' && metric !== 'errorRate' && metric !== 'rejectRate') return;
    pending.probeFrom = undefined;
    const value = metric === 'errorRate' ? Number(outcome === 'failure') : metric === 'rejectRate' ? 0 : latency;
    this.#eject(key, value);
  }

  /** Once per interval: while anything is raised, the budget gives up a share of its balance. */
  tick(anyRaised: boolean): void {
    for (const key of [...this.#pending.keys()]) this.#eject(key);
    const lower = this.o.lowerBudget;
    if (lower === undefined || !anyRaised) return;
    const balance = this.guard('lowerBudget.budget', () => lower.budget.balance, 0);
    // An unbounded balance (Infinity) has no share to take: withdrawing from it would never end.
    const take = Number.isFinite(balance) ? Math.min(MAX_WITHDRAWALS, Math.floor(balance * lower.share)) : 0;
    let taken = 0;
    while (taken < take && this.guard('lowerBudget.budget', () => lower.budget.tryWithdraw(), false)) taken++;
    if (taken > 0) this.#report('*', 'lowerBudget', 'budget', true, `withdrew ${taken}`);
  }

  ejected(): string[] {
    return [...this.#ejected.keys()];
  }

  dispose(): void {
    this.#disposed = true;
    for (const endpoint of [...this.#ejected.keys()]) this.#restore(endpoint, 'disposed', true);
  }

  /** Tries to eject `key`'s endpoint; `probe` is the value of its probe's call, judged instead of its last interval. */
  #eject(key: string, probe?: number): void {
    const eject = this.o.eject;
    const pending = this.#pending.get(key);
    if (eject === undefined || pending === undefined || this.#disposed) return;
    // Back from an ejection that ran out: judged again only on calls it took since.
    if (probe === undefined && pending.after !== undefined && this.state(key).samples <= pending.after) return;
    const refuse = (endpoint: string, reason: string) => {
      if (pending.told.has(reason)) return;
      pending.told.add(reason);
      this.#report(key, 'eject', endpoint, false, reason);
    };
    const set = eject.failover;
    const names = set.endpoints.map((e) => e.name);
    const endpoint = this.#endpointFor(key, names);
    if (endpoint === undefined || this.#ejected.has(endpoint)) {
      this.#pending.delete(key);
      return;
    }
    // A set of one endpoint: that one is its last, whatever its share.
    if (names.length <= 1) {
      refuse(endpoint, 'lastEndpoint');
      return;
    }
    const allowed = Math.min(names.length - 1, atLeastOne(eject.maxShare, names.length));
    if (this.#ejected.size >= allowed) {
      refuse(endpoint, 'maxShare');
      return;
    }
    // What the set says now: the operator's drains and the set's own ejections count too.
    const states = this.#states(set);
    const own = states?.find((e) => e.name === endpoint);
    const out = own === undefined ? undefined : outOfService(own);
    if (out !== undefined) {
      // Already out, by the operator or by the set: not the watch's to take, nor to put back.
      refuse(endpoint, out);
      return;
    }
    if (states !== undefined && !states.some((e) => e.name !== endpoint && inService(e))) {
      refuse(endpoint, 'lastEndpoint');
      return;
    }
    if (!this.#outlier(key, endpoint, pending.metric, names, states, probe)) {
      refuse(endpoint, 'peers');
      return;
    }
    // The set keeps to its own share too, and never takes out its last available endpoint.
    // Read before the set's ejection begins: its probe goes no earlier than this plus the duration.
    const runsOut = this.#elapsed() + eject.duration;
    if (!this.#ejectFrom(set, endpoint, eject.duration)) {
      refuse(endpoint, 'failover');
      return;
    }
    // Disposed meanwhile (by a listener of the set's own failover.eject): put back, as dispose() does.
    if (this.#disposed) {
      this.guard('eject.failover', () => set.restore(endpoint), false);
      return;
    }
    const until = this.#states(set)?.find((e) => e.name === endpoint)?.ejectedUntil ?? undefined;
    this.#pending.delete(key);
    const timer = this.clock.setTimeout(() => this.#expired(endpoint), eject.duration);
    this.#ejected.set(endpoint, { key, shown: this.#shown(key), metric: pending.metric, runsOut, timer, until });
    this.#report(key, 'eject', endpoint, true, pending.after === undefined ? 'anomaly' : 'stillRaised');
  }

  #ejectFrom(set: FailoverLike, endpoint: string, durationMs: number): boolean {
    // Throws when the set was disposed: nothing to take out.
    return this.guard('eject.failover', () => set.eject(endpoint, { durationMs, reason: 'anomaly' }) === true, false);
  }

  /** The set's endpoints as its snapshot shows them, or undefined when it has no snapshot. */
  #states(set: FailoverLike): readonly EndpointState[] | undefined {
    if (typeof set.snapshot !== 'function') return undefined;
    const states = this.guard('eject.failover', () => set.snapshot?.().endpoints, undefined);
    return Array.isArray(states) ? states : undefined;
  }

  /**
   * The endpoint a key stands for: `endpointOf(key)`, else the endpoint named `key`, else the
   * longest name ending it after a `/` ('api/backup/east' is 'backup/east', not 'east').
   */
  #endpointFor(key: string, names: readonly string[]): string | undefined {
    const endpointOf = this.o.eject?.endpointOf;
    if (endpointOf === undefined) {
      if (names.includes(key)) return key;
      let found: string | undefined;
      for (const n of names) if (key.endsWith(`/${n}`) && n.length > (found?.length ?? -1)) found = n;
      return found;
    }
    // A callback that throws (a key it was not written for) stands for no endpoint.
    const name = this.guard('eject.endpointOf', () => endpointOf(key), undefined);
    return typeof name === 'string' && names.includes(name) ? name : undefined;
  }

  /**
   * The ejection ran out: the set lets the endpoint back through a probe. If its anomaly is still
   * raised, it is ejected again when that probe, or a later interval of its new calls, says it is
   * still an outlier.
   */
  #expired(endpoint: string): void {
    const e = this.#ejected.get(endpoint);
    if (e === undefined) return;
    this.#restore(endpoint, 'expired', false);
    const { samples, raised } = this.state(e.key);
    // Node counts a timer in whole ms of the loop's time: the set's timer and this one, set in the
    // same turn, fire together up to a millisecond before `runsOut`, and the set's probe may be
    // sent then.
    const probeFrom = Math.min(e.runsOut, this.#elapsed());
    if (raised && !this.#pending.has(e.key))
      this.#pending.set(e.key, { metric: e.metric, told: new Set(), after: samples, probeFrom });
  }

  /**
   * Envoy-style: does `endpoint` stand out from its peers on what `metric` is judged by? A latency
   * outlier on p99 must stand out on p50 too; a probe (one call) is judged against the peers' medians.
   */
  #outlier(
    key: string,
    endpoint: string,
    metric: string,
    names: readonly string[],
    states: readonly EndpointState[] | undefined,
    probe: number | undefined,
  ): boolean {
    const by = judged(metric);
    if (by !== 'latencyP50' && by !== 'latencyP99') return this.#beyond(key, endpoint, by, names, states, probe);
    // One call (the probe) is a sample of the endpoint's median: judged against the peers' medians.
    if (probe !== undefined) return this.#beyond(key, endpoint, 'latencyP50', names, states, probe);
    // A tail from one interval's calls is little more than its slowest call: a p99 outlier must
    // stand out at the median too, or it is jitter (three identical endpoints were ejected a dozen
    // times in 10 minutes on their p99 alone).
    if (by === 'latencyP99' && !this.#beyond(key, endpoint, 'latencyP50', names, states, undefined)) return false;
    return this.#beyond(key, endpoint, by, names, states, undefined);
  }

  /** Whether `endpoint`'s `by` (its last interval's, or `probe`) is beyond its peers' mean by `stdevFactor` deviations. */
  #beyond(
    key: string,
    endpoint: string,
    by: string,
    names: readonly string[],
    states: readonly EndpointState[] | undefined,
    probe: number | undefined,
  ): boolean {
    const eject = this.o.eject;
    if (eject === undefined) return false;
    let own = probe;
    const peers: number[] = [];
    for (const [k, metrics] of this.watched()) {
      if (k === key) {
        own ??= metrics.find((m) => m.name === by)?.value;
        continue;
      }
      const value = metrics.find((m) => m.name === by)?.value;
      if (value === undefined || !Number.isFinite(value)) continue;
      const e = this.#endpointFor(k, names);
      // A peer out of service (drained, ejected) has stale metrics: it is no measure of the others.
      if (e === undefined || e === endpoint || this.#ejected.has(e)) continue;
      const state = states?.find((s) => s.name === e);
      if (state === undefined || inService(state)) peers.push(value);
    }
    if (own === undefined || !Number.isFinite(own) || peers.length === 0) return false;
    const mean = peers.reduce((a, b) => a + b, 0) / peers.length;
    const sd = Math.sqrt(peers.reduce((a, b) => a + (b - mean) ** 2, 0) / peers.length);
    const floor = peerFloor[by] ?? { share: 0.1, least: 0 };
    const spread = Math.max(sd, floor.share * Math.abs(mean), floor.least, 1e-9);
    return own > mean + eject.stdevFactor * spread;
  }

  /**
   * Forgets an ejection; `now` also takes the endpoint back at once (else the set's probe does),
   * unless the set has ejected it again since, by its own rule: that is not the watch's to undo.
   */
  #restore(endpoint: string, reason: string, now: boolean): void {
    const e = this.#ejected.get(endpoint);
    const eject = this.o.eject;
    if (e === undefined || eject === undefined) return;
    this.#ejected.delete(endpoint);
    this.clock.clearTimeout(e.timer);
    if (now) {
      const state = this.#states(eject.failover)?.find((s) => s.name === endpoint);
      const ours = e.until === undefined || state === undefined || state.ejectedUntil === e.until;
      // Throws when the set was disposed: nothing to put back.
      if (ours) this.guard('eject.failover', () => eject.failover.restore(endpoint), false);
    }
    this.#report(e.key, 'restore', endpoint, true, reason, e.shown);
  }

  #openBreaker(key: string): void {
    const o = this.o.openBreaker;
    if (o === undefined || this.#opened.has(key) || this.#disposed) return;
    const breaker = this.guard('openBreaker.breakerOf', () => o.breakerOf(key), undefined);
    if (breaker === undefined) {
      this.#report(key, 'openBreaker', key, false, 'unknown');
      return;
    }
    let watched = 0;
    for (const _ of this.watched()) watched++;
    const allowed = atLeastOne(o.maxShare, watched);
    if (this.#opened.size >= allowed) {
      this.#report(key, 'openBreaker', breaker.name, false, 'maxShare');
      return;
    }
    const opened = this.guard(
      'openBreaker.breakerOf',
      () => {
        breaker.open();
        return true;
      },
      false,
    );
    if (!opened) {
      this.#report(key, 'openBreaker', breaker.name, false, 'error');
      return;
    }
    this.#opened.add(key);
    this.#report(key, 'openBreaker', breaker.name, true, 'anomaly');
  }

  /** As the watch's other events show it: two keys redaction shows alike are `#2` apart there. */
  #shown(key: string): string {
    return this.state(key).shown;
  }

  #report(key: string, action: Action, target: string, taken: boolean, reason: string, as = this.#shown(key)): void {
    if (!this.bus.wants('anomaly.action')) return;
    this.bus.emit({
      type: 'anomaly.action',
      source: this.source,
      time: this.clock.now(),
      key: as,
      action,
      target: target === key ? as : shown(target),
      taken,
      reason,
    });
  }
}

/** The metric an endpoint is compared with its peers on: a departure in throughput says nothing about which is sick, so latency. */
function judged(metric: string): string {
  return metric in peerFloor ? metric : 'latencyP99';
}

/** Whether an endpoint takes calls now (a probing one, back from an ejection, is not yet). */
function inService(e: EndpointState): boolean {
  return e.available ?? (e.role !== 'drained' && (e.ejection ?? 'none') === 'none');
}

/** Why an endpoint is out of service, by the operator or the set, or undefined if it is not (or is being probed). */
function outOfService(e: EndpointState): 'drained' | 'ejected' | 'unhealthy' | undefined {
  if (e.role === 'drained') return 'drained';
  if (e.ejection === 'ejected') return 'ejected';
  if (e.ejection === 'probe' || inService(e)) return undefined;
  return 'unhealthy';
}

/** `share` of `n`, rounded down but at least one, so a small set can act at all; none for a share of 0. */
function atLeastOne(share: number, n: number): number {
  return share && Math.max(1, Math.floor(share * n));
}
