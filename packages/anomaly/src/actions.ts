import type { AnomalyMetric, Bus, Clock, TimerHandle } from '@holdfast/core';
import type { z } from 'zod';
import type { watchOptionsSchema } from './options.js';

type ActionOptions = z.output<typeof watchOptionsSchema>['actions'];
type Action = 'eject' | 'restore' | 'openBreaker' | 'lowerBudget';

/** Metrics where higher is worse, and the least spread among peers that makes an outlier. */
const peerFloor: Record<string, number> = { latencyP50: 0, latencyP99: 0, errorRate: 0.02, rejectRate: 0.02 };

/** A raised key not ejected yet: tried again each interval, its refusals told once. */
interface Pending {
  /** The metric its anomaly was first seen on. */
  readonly metric: string;
  readonly told: Set<string>;
  /** After an ejection ran out: the samples it had then; it waits for a newer one before it is judged. */
  readonly after: number | undefined;
}

/**
 * What a watch does about an anomaly, each action behind its safety limit. Everything acts
 * through the public API of what it is given: a failover set's `eject`/`restore`, a breaker's
 * `open()`, a budget's `tryWithdraw()`.
 */
export class Actions {
  /** Endpoint name -> the key whose anomaly took it out, and the timer that ends the ejection here. */
  readonly #ejected = new Map<string, { key: string; metric: string; timer: TimerHandle }>();
  readonly #opened = new Set<string>();
  readonly #pending = new Map<string, Pending>();

  constructor(
    private readonly o: ActionOptions,
    private readonly source: string,
    private readonly bus: Bus,
    private readonly clock: Clock,
    /** Every watched key's last metrics. */
    private readonly watched: () => Iterable<[string, readonly AnomalyMetric[]]>,
    /** Intervals scored on a key so far, and whether an anomaly is raised on it now. */
    private readonly state: (key: string) => { samples: number; raised: boolean },
  ) {}

  /** A key went from no anomaly to one, first seen on `metric`. */
  detected(key: string, metric: string): void {
    if (this.o.eject !== undefined) {
      this.#pending.set(key, { metric, told: new Set(), after: undefined });
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

  /** Once per interval: while anything is raised, the budget gives up a share of its balance. */
  tick(anyRaised: boolean): void {
    for (const key of [...this.#pending.keys()]) this.#eject(key);
    const lower = this.o.lowerBudget;
    if (lower === undefined || !anyRaised) return;
    const take = Math.floor(lower.budget.balance * lower.share);
    let taken = 0;
    while (taken < take && lower.budget.tryWithdraw()) taken++;
    if (taken > 0) this.#report('*', 'lowerBudget', 'budget', true, `withdrew ${taken}`);
  }

  ejected(): string[] {
    return [...this.#ejected.keys()];
  }

  dispose(): void {
    for (const endpoint of [...this.#ejected.keys()]) this.#restore(endpoint, 'disposed', true);
  }

  #eject(key: string): void {
    const eject = this.o.eject;
    const pending = this.#pending.get(key);
    if (eject === undefined || pending === undefined) return;
    // Back from an ejection that ran out: judged again only on calls it took since.
    if (pending.after !== undefined && this.state(key).samples <= pending.after) return;
    const refuse = (endpoint: string, reason: string) => {
      if (pending.told.has(reason)) return;
      pending.told.add(reason);
      this.#report(key, 'eject', endpoint, false, reason);
    };
    const set = eject.failover;
    const names = set.endpoints.map((e) => e.name);
    const endpoint = endpointFor(key, names, eject.endpointOf);
    if (endpoint === undefined || this.#ejected.has(endpoint)) {
      this.#pending.delete(key);
      return;
    }
    const allowed = Math.min(names.length - 1, Math.max(1, Math.floor(eject.maxShare * names.length)));
    if (this.#ejected.size >= allowed) {
      refuse(endpoint, 'maxShare');
      return;
    }
    if (!this.#outlier(key, endpoint, pending.metric, names)) {
      refuse(endpoint, 'peers');
      return;
    }
    // The set keeps to its own share too, and never takes out its last available endpoint.
    if (!this.#ejectFrom(set, endpoint, eject.duration)) {
      refuse(endpoint, 'failover');
      return;
    }
    this.#pending.delete(key);
    const timer = this.clock.setTimeout(() => this.#expired(endpoint), eject.duration);
    this.#ejected.set(endpoint, { key, metric: pending.metric, timer });
    this.#report(key, 'eject', endpoint, true, pending.after === undefined ? 'anomaly' : 'stillRaised');
  }

  #ejectFrom(set: NonNullable<ActionOptions['eject']>['failover'], endpoint: string, durationMs: number): boolean {
    try {
      return set.eject(endpoint, { durationMs, reason: 'anomaly' });
    } catch {
      return false; // the set was disposed
    }
  }

  /**
   * The ejection ran out: the set lets the endpoint back through a probe. If its anomaly is still
   * raised, it is ejected again once an interval of its new calls has been scored and still says so.
   */
  #expired(endpoint: string): void {
    const e = this.#ejected.get(endpoint);
    if (e === undefined) return;
    this.#restore(endpoint, 'expired', false);
    const { samples, raised } = this.state(e.key);
    if (raised && !this.#pending.has(e.key))
      this.#pending.set(e.key, { metric: e.metric, told: new Set(), after: samples });
  }

  /** Envoy-style: is `endpoint`'s `metric` beyond its peers' mean by `stdevFactor` deviations? */
  #outlier(key: string, endpoint: string, metric: string, names: readonly string[]): boolean {
    const eject = this.o.eject;
    if (eject === undefined) return false;
    // A departure in throughput says nothing about which endpoint is sick: judge it by latency.
    const judged = metric in peerFloor ? metric : 'latencyP99';
    let own: number | undefined;
    const peers: number[] = [];
    for (const [k, metrics] of this.watched()) {
      const value = metrics.find((m) => m.name === judged)?.value;
      if (value === undefined || !Number.isFinite(value)) continue;
      const e = endpointFor(k, names, eject.endpointOf);
      if (k === key) own = value;
      else if (e !== undefined && e !== endpoint && !this.#ejected.has(e)) peers.push(value);
    }
    if (own === undefined || peers.length === 0) return false;
    const mean = peers.reduce((a, b) => a + b, 0) / peers.length;
    const sd = Math.sqrt(peers.reduce((a, b) => a + (b - mean) ** 2, 0) / peers.length);
    const spread = Math.max(sd, 0.1 * Math.abs(mean), peerFloor[judged] ?? 0, 1e-9);
    return own > mean + eject.stdevFactor * spread;
  }

  /** Forgets an ejection; `now` also takes the endpoint back at once (else the set's probe does). */
  #restore(endpoint: string, reason: string, now: boolean): void {
    const e = this.#ejected.get(endpoint);
    if (e === undefined || this.o.eject === undefined) return;
    this.#ejected.delete(endpoint);
    this.clock.clearTimeout(e.timer);
    if (now) {
      try {
        this.o.eject.failover.restore(endpoint);
      } catch {
        // The set was disposed: nothing to put back.
      }
    }
    this.#report(e.key, 'restore', endpoint, true, reason);
  }

  #openBreaker(key: string): void {
    const o = this.o.openBreaker;
    if (o === undefined || this.#opened.has(key)) return;
    const breaker = o.breakerOf(key);
    if (breaker === undefined) {
      this.#report(key, 'openBreaker', key, false, 'unknown');
      return;
    }
    let watched = 0;
    for (const _ of this.watched()) watched++;
    const allowed = Math.max(1, Math.floor(o.maxShare * watched));
    if (this.#opened.size >= allowed) {
      this.#report(key, 'openBreaker', breaker.name, false, 'maxShare');
      return;
    }
    this.#opened.add(key);
    breaker.open();
    this.#report(key, 'openBreaker', breaker.name, true, 'anomaly');
  }

  #report(key: string, action: Action, target: string, taken: boolean, reason: string): void {
    if (!this.bus.wants('anomaly.action')) return;
    this.bus.emit({
      type: 'anomaly.action',
      source: this.source,
      time: this.clock.now(),
      key,
      action,
      target,
      taken,
      reason,
    });
  }
}

/** The endpoint a key stands for: `endpointOf(key)`, else the endpoint named `key` or ending it after a `/`. */
function endpointFor(
  key: string,
  names: readonly string[],
  endpointOf: ((key: string) => string | undefined) | undefined,
): string | undefined {
  if (endpointOf !== undefined) {
    const name = endpointOf(key);
    return name !== undefined && names.includes(name) ? name : undefined;
  }
  return names.find((n) => n === key || key.endsWith(`/${n}`));
}
