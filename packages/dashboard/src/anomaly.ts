import type { Bus, EventOf } from '@holdfast/core';

/** Intervals kept per chart. */
export const ANOMALY_POINTS = 60;
/** Keys charted at most; past this the oldest is dropped. */
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
  /** The breaker, endpoint or policy. */
  readonly key: string;
  /** Whether an anomaly is raised on it now. */
  readonly raised: boolean;
  /** One series per metric, oldest first. */
  readonly metrics: readonly { readonly name: string; readonly points: readonly AnomalyPoint[] }[];
}

/** Keeps the last intervals of every key an anomaly watch scores (`anomaly.score` events). */
export class AnomalyCharts {
  readonly #keys = new Map<string, { raised: boolean; metrics: Map<string, AnomalyPoint[]> }>();
  readonly #off: () => void;

  constructor(bus: Bus) {
    this.#off = bus.on('anomaly.score', (e) => this.#add(e));
  }

  #add(e: EventOf<'anomaly.score'>): void {
    let k = this.#keys.get(e.key);
    if (k === undefined) {
      k = { raised: false, metrics: new Map() };
      this.#keys.set(e.key, k);
      if (this.#keys.size > MAX_KEYS) this.#keys.delete(this.#keys.keys().next().value as string);
    }
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

  charts(): AnomalyChart[] {
    return [...this.#keys].map(([key, k]) => ({
      key,
      raised: k.raised,
      metrics: [...k.metrics].map(([name, points]) => ({ name, points: [...points] })),
    }));
  }

  dispose(): void {
    this.#off();
  }
}

function finite(x: number): number | null {
  return Number.isFinite(x) ? x : null;
}
