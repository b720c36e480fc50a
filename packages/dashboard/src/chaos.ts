import type { Bus, EventOf } from '@holdfast/core';

/** Faults injected on purpose (by @holdfast/chaos), as the page shows them apart from real ones. */
export interface ChaosView {
  /** True while a toxic is on or a drill runs: the page then says faults are being injected. */
  readonly active: boolean;
  /** Injections counted per source and kind (`chaos.inject` events); `detail` is the last one's. */
  readonly injected: readonly {
    readonly source: string;
    readonly kind: string;
    readonly detail: string;
    readonly count: number;
    /** When the last one happened (epoch ms). */
    readonly last: number;
  }[];
  /** Fault proxy toxics on now (`chaos.toxic` events). */
  readonly toxics: readonly {
    readonly proxy: string;
    readonly name: string;
    readonly toxic: string;
    readonly direction: string;
    readonly target: string;
    readonly since: number;
  }[];
  /** The drill running now or last run, if any (`chaos.drill` events). */
  readonly drill: {
    readonly name: string;
    readonly phase: string;
    readonly step: string | null;
    readonly passed: boolean | null;
    readonly time: number;
  } | null;
}

/** Rows kept per list: chaos event fields come from code, but a bound keeps memory flat anyway. */
const MAX_ROWS = 200;

/** Watches the bus for chaos events and keeps what the page shows of them. */
export class ChaosWatch {
  readonly #injected = new Map<string, { source: string; kind: string; detail: string; count: number; last: number }>();
  readonly #toxics = new Map<string, ChaosView['toxics'][number]>();
  #drill: ChaosView['drill'] = null;
  readonly #offs: (() => void)[];

  constructor(bus: Pick<Bus, 'on'>) {
    this.#offs = [
      bus.on('chaos.inject', (e) => this.#inject(e)),
      bus.on('chaos.toxic', (e) => this.#toxic(e)),
      bus.on('chaos.drill', (e) => {
        this.#drill = { name: e.source, phase: e.phase, step: e.step ?? null, passed: e.passed ?? null, time: e.time };
      }),
    ];
  }

  #inject(e: EventOf<'chaos.inject'>): void {
    const key = `${e.source}\u0000${e.kind}`;
    const row = this.#injected.get(key);
    if (row) {
      row.count++;
      row.last = e.time;
      row.detail = e.detail;
      return;
    }
    this.#injected.set(key, { source: e.source, kind: e.kind, detail: e.detail, count: 1, last: e.time });
    if (this.#injected.size > MAX_ROWS) this.#injected.delete(this.#injected.keys().next().value as string);
  }

  #toxic(e: EventOf<'chaos.toxic'>): void {
    const key = `${e.source}\u0000${e.name}`;
    if (!e.active) {
      this.#toxics.delete(key);
      return;
    }
    this.#toxics.set(key, {
      proxy: e.source,
      name: e.name,
      toxic: e.toxic,
      direction: e.direction,
      target: e.target,
      since: e.time,
    });
    if (this.#toxics.size > MAX_ROWS) this.#toxics.delete(this.#toxics.keys().next().value as string);
  }

  view(): ChaosView {
    const drillRunning = this.#drill !== null && this.#drill.phase !== 'end';
    return {
      active: this.#toxics.size > 0 || drillRunning,
      injected: [...this.#injected.values()].map((r) => ({ ...r })),
      toxics: [...this.#toxics.values()],
      drill: this.#drill,
    };
  }

  dispose(): void {
    for (const off of this.#offs.splice(0)) off();
  }
}
