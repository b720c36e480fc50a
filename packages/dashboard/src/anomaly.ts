import type { Bus, EventOf } from '@holdfast/core';

/** Intervals kept per chart. */
export const ANOMALY_POINTS = 60;
/** Keys charted at most (see AnomalyCharts for which wait). */
const MAX_KEYS = 50;

/** One interval of one metric on an anomaly chart. */
export interface AnomalyPoint {
  /** The metric's value; null when the interval had none. */
  readonly value: number | null;
  /** The baseline it was scored against; null before the baseline had one. */
  readonly expected: number | null;
  /** Whether the interval scored as anomalous (0.5 or more). */
  readonly anomalous: boolean;
}

/** The charts of one key an `anomalyWatch()` watches: one per metric. */
export interface AnomalyChart {
  /** The watch that scores it (its `name`): two watches on one bus chart a key apart. */
  readonly watch: string;
  /** The breaker, endpoint or policy. */
  readonly key: string;
  /** Whether an anomaly is raised on it now. */
  readonly raised: boolean;
  /** One series per metric, oldest first. */
  readonly metrics: readonly { readonly name: string; readonly points: readonly AnomalyPoint[] }[];
}

interface Kept {
  readonly watch: string;
  readonly key: string;
  raised: boolean;
  /** Its watch's interval (see #interval) when it was last scored: to find one it stopped scoring. */
  seen: number;
  readonly metrics: Map<string, AnomalyPoint[]>;
}

/**
 * Keeps the last intervals of every key an anomaly watch scores (`anomaly.score` events), by
 * watch and key, in the order first charted. A key the watch forgot while raised leaves at once.
 * At MAX_KEYS a new key takes the place of one its watch stopped scoring (a whole interval of
 * that watch went by without it), or, when the new one is raised, of the calm one scored longest
 * ago; else it waits: keys scored in turn keep their history rather than each remaking the next.
 */
export class AnomalyCharts {
  readonly #keys = new Map<string, Kept>();
  readonly #offs: (() => void)[];
  /** Per watch: the time of its latest scores, and how many intervals it has scored (a watch scores every key at once). */
  readonly #intervals = new Map<string, { time: number; count: number }>();

  constructor(bus: Pick<Bus, 'on'>) {
    this.#offs = [
      bus.on('anomaly.score', (e) => this.#add(e)),
      bus.on('anomaly.cleared', (e) => {
        if (e.reason === 'forgotten') this.#keys.delete(id(e));
      }),
    ];
  }

  #add(e: EventOf<'anomaly.score'>): void {
    const interval = this.#interval(e.source, e.time);
    let k = this.#keys.get(id(e));
    if (k === undefined) {
      if (this.#keys.size >= MAX_KEYS && !this.#makeRoom(e.raised)) return;
      k = { watch: e.source, key: e.key, raised: false, seen: interval, metrics: new Map() };
      this.#keys.set(id(e), k);
    }
    k.seen = interval;
    k.raised = e.raised;
    for (const m of e.metrics) {
      let points = k.metrics.get(m.name);
      if (points === undefined) {
        points = [];
        k.metrics.set(m.name, points);
      }
      points.push({ value: finite(m.value), expected: finite(m.expected), anomalous: m.score >= 0.5 });
      if (points.length > ANOMALY_POINTS) points.shift();
    }
  }

  #interval(watch: string, time: number): number {
    const w = this.#intervals.get(watch);
    if (w === undefined) this.#intervals.set(watch, { time, count: 0 });
    else if (w.time !== time) {
      w.time = time;
      w.count++;
    }
    return w?.count ?? 0;
  }

  #makeRoom(raised: boolean): boolean {
    const age = (k: Kept) => (this.#intervals.get(k.watch)?.count ?? 0) - k.seen;
    let calmest: [string, Kept] | undefined;
    for (const entry of this.#keys) {
      // Its watch has scored a whole interval (all its keys at one time) without it.
      if (age(entry[1]) >= 2) {
        this.#keys.delete(entry[0]);
        return true;
      }
      if (!entry[1].raised && (calmest === undefined || age(entry[1]) > age(calmest[1]))) calmest = entry;
    }
    if (!raised || calmest === undefined) return false;
    this.#keys.delete(calmest[0]);
    return true;
  }

  charts(): AnomalyChart[] {
    return [...this.#keys.values()].map((k) => ({
      watch: k.watch,
      key: k.key,
      raised: k.raised,
      metrics: [...k.metrics].map(([name, points]) => ({ name, points: [...points] })),
    }));
  }

  dispose(): void {
    for (const off of this.#offs) off();
  }
}

const id = (e: { source: string; key: string }) => `${e.source}\u0000${e.key}`;

function finite(x: number): number | null {
  return Number.isFinite(x) ? x : null;
}
