import type { Bus, EventType, HoldfastEvent } from '@holdfast/core';

// The snapshots of @holdfast/limit's policies and of core's hedge(), read structurally: the
// dashboard never imports @holdfast/limit (DESIGN.md), it only reads what the registry holds.

/** A bulkhead on the page (a `bulkhead` registry entry). */
export interface BulkheadRow {
  /** The policy's name. */
  readonly name: string;
  /** Calls that may run at once. */
  readonly maxConcurrent: number;
  /** Calls that may wait for a slot. */
  readonly maxQueue: number;
  /** Calls running now. */
  readonly running: number;
  /** Calls waiting for a slot now. */
  readonly queued: number;
  /** Calls refused since it was made. */
  readonly rejected: number;
}

/** A rate limiter on the page (a `rateLimiter` registry entry: token bucket, sliding window, Redis). */
export interface RateLimiterRow {
  /** The policy's name. */
  readonly name: string;
  /** `tokenBucket`, `slidingWindow` or `gcra` (Redis). */
  readonly algorithm: string;
  /** Calls allowed per `interval`. */
  readonly limit: number;
  /** The period `limit` is counted over, ms. */
  readonly interval: number;
  /** Keys tracked in process now (0 on Redis). */
  readonly keys: number;
  /** Calls let through since it was made. */
  readonly allowed: number;
  /** Calls refused since it was made. */
  readonly rejected: number;
  /** Decisions Redis could not give; null for an in-process limiter. */
  readonly storeErrors: number | null;
}

/** An adaptive concurrency limiter on the page (a `concurrency` registry entry). */
export interface AdaptiveRow {
  /** The policy's name. */
  readonly name: string;
  /** `gradient2`, `aimd` or `vegas`. */
  readonly algorithm: string;
  /** The learned limit now. */
  readonly limit: number;
  /** Calls in flight now. */
  readonly inFlight: number;
  /** Calls refused since it was made. */
  readonly rejected: number;
  /** The limit after its last moves (`concurrency.limit` events), oldest first: the sparkline. */
  readonly recent: readonly number[];
}

/** A client-side adaptive throttle on the page (a `throttle` registry entry). */
export interface ThrottleRow {
  /** The policy's name. */
  readonly name: string;
  /** The probability a call is refused now, 0..1. */
  readonly probability: number;
  /** Requests in the window, those refused locally included. */
  readonly requests: number;
  /** Requests the backend accepted in the window. */
  readonly accepts: number;
  /** Calls refused locally since it was made. */
  readonly rejected: number;
}

/** A hedge policy on the page (a `hedge` registry entry). */
export interface HedgeRow {
  /** The policy's name. */
  readonly name: string;
  /** Calls made through it. */
  readonly calls: number;
  /** Extra attempts sent. */
  readonly hedges: number;
  /** Calls an extra attempt won. */
  readonly hedgeWins: number;
  /** Hedges the budget refused. */
  readonly refused: number;
  /** The delay a call waits now before hedging, ms. */
  readonly delay: number;
}

/** Refusals and fallbacks counted on the bus, per source and event type. */
export interface LimitEventCount {
  /** The policy (the events' `source`). */
  readonly source: string;
  /** `bulkhead.reject`, `rateLimit.reject`, `rateLimit.storeError`, `concurrency.reject`, `throttle.reject`, `hedge.budgetExhausted` or `fallback`. */
  readonly event: string;
  /** Events seen since the page's server started. */
  readonly count: number;
  /** When the last one happened (epoch ms). */
  readonly last: number;
}

/** Bulkheads, rate limiters, adaptive limiters, throttles and hedges, and their refusals. */
export interface LimitsView {
  /** Every bulkhead registered. */
  readonly bulkheads: readonly BulkheadRow[];
  /** Every rate limiter registered, in process or on Redis. */
  readonly rateLimiters: readonly RateLimiterRow[];
  /** Every adaptive concurrency limiter registered. */
  readonly adaptive: readonly AdaptiveRow[];
  /** Every client-side adaptive throttle registered. */
  readonly throttles: readonly ThrottleRow[];
  /** Every hedge policy registered. */
  readonly hedges: readonly HedgeRow[];
  /** Counted from the bus, so policies nobody registered (and fallbacks, which have no snapshot) show too. */
  readonly events: readonly LimitEventCount[];
}

/** Limit moves kept per adaptive limiter for the sparkline. */
export const LIMIT_POINTS = 40;
/** Rows kept per list: past this the oldest is dropped. */
const MAX_ROWS = 500;

const counted: readonly EventType[] = [
  'bulkhead.reject',
  'rateLimit.reject',
  'rateLimit.storeError',
  'concurrency.reject',
  'throttle.reject',
  'hedge.budgetExhausted',
  'fallback',
];

type Fields = Record<string, unknown>;
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
/** The snapshot's named fields if every one of them is a finite number, else undefined. */
function numbers<K extends string>(snapshot: unknown, keys: readonly K[]): Record<K, number> | undefined {
  if (snapshot === null || typeof snapshot !== 'object') return undefined;
  const s = snapshot as Fields;
  for (const k of keys) if (!isNum(s[k])) return undefined;
  return Object.fromEntries(keys.map((k) => [k, s[k]])) as Record<K, number>;
}
const text = (snapshot: unknown, key: string): string => String((snapshot as Fields)[key] ?? '');

/** Watches the bus for refusals and limit moves, and reads the limit policies' snapshots. */
export class LimitWatch {
  readonly #events = new Map<string, { source: string; event: string; count: number; last: number }>();
  readonly #moves = new Map<string, number[]>();
  readonly #offs: (() => void)[];
  #rows: {
    bulkheads: BulkheadRow[];
    rateLimiters: RateLimiterRow[];
    adaptive: AdaptiveRow[];
    throttles: ThrottleRow[];
    hedges: HedgeRow[];
  } = LimitWatch.#empty();

  constructor(bus: Pick<Bus, 'on'>) {
    const on = bus.on.bind(bus) as (type: EventType, listener: (event: HoldfastEvent) => void) => () => void;
    this.#offs = counted.map((type) => on(type, (e) => this.#count(e)));
    this.#offs.push(
      bus.on('concurrency.limit', (e) => {
        let points = this.#moves.get(e.source);
        if (points === undefined) {
          points = [e.from];
          this.#moves.set(e.source, points);
          if (this.#moves.size > MAX_ROWS) this.#moves.delete(this.#moves.keys().next().value as string);
        }
        points.push(e.to);
        if (points.length > LIMIT_POINTS) points.shift();
      }),
    );
  }

  static #empty() {
    return { bulkheads: [], rateLimiters: [], adaptive: [], throttles: [], hedges: [] };
  }

  #count(e: HoldfastEvent): void {
    const key = `${e.source}\u0000${e.type}`;
    const row = this.#events.get(key);
    if (row) {
      row.count++;
      row.last = e.time;
      return;
    }
    this.#events.set(key, { source: e.source, event: e.type, count: 1, last: e.time });
    if (this.#events.size > MAX_ROWS) this.#events.delete(this.#events.keys().next().value as string);
  }

  /** Starts a snapshot: forgets the rows of the last one. */
  begin(): void {
    this.#rows = LimitWatch.#empty();
  }

  /** Takes a registry entry if it is one of these policies with the snapshot it should have. */
  take(kind: string, name: string, snapshot: unknown): boolean {
    const r = this.#rows;
    if (kind === 'bulkhead') {
      const n = numbers(snapshot, ['maxConcurrent', 'maxQueue', 'running', 'queued', 'rejected'] as const);
      if (n) r.bulkheads.push({ name, ...n });
      return n !== undefined;
    }
    if (kind === 'rateLimiter') {
      const n = numbers(snapshot, ['limit', 'interval', 'keys', 'allowed', 'rejected'] as const);
      if (n) {
        const storeErrors = (snapshot as Fields).storeErrors;
        r.rateLimiters.push({
          name,
          algorithm: text(snapshot, 'algorithm'),
          ...n,
          storeErrors: isNum(storeErrors) ? storeErrors : null,
        });
      }
      return n !== undefined;
    }
    if (kind === 'concurrency') {
      const n = numbers(snapshot, ['limit', 'inFlight', 'rejected'] as const);
      if (n)
        r.adaptive.push({
          name,
          algorithm: text(snapshot, 'algorithm'),
          ...n,
          recent: [...(this.#moves.get(name) ?? [])],
        });
      return n !== undefined;
    }
    if (kind === 'throttle') {
      const n = numbers(snapshot, ['probability', 'requests', 'accepts', 'rejected'] as const);
      if (n) r.throttles.push({ name, ...n });
      return n !== undefined;
    }
    if (kind === 'hedge') {
      const n = numbers(snapshot, ['calls', 'hedges', 'hedgeWins', 'refused', 'delay'] as const);
      if (n) r.hedges.push({ name, ...n });
      return n !== undefined;
    }
    return false;
  }

  /** The rows taken since `begin()`, and the counts from the bus. */
  view(): LimitsView {
    return { ...this.#rows, events: [...this.#events.values()].map((e) => ({ ...e })) };
  }

  dispose(): void {
    for (const off of this.#offs.splice(0)) off();
  }
}

/** The page's section, hidden until there is something to show. */
export const limitsSection = `<section aria-labelledby="h-limits" id="limits-section" hidden>
    <h2 id="h-limits">Limits: bulkheads, rate limits, adaptive concurrency</h2>
    <div id="limits"></div>
  </section>`;

/** The page script's part that renders `snapshot.limits`; uses the page's el/table/num/pct/ms/spark/badge. */
export const limitsScript = String.raw`
  var LIMIT_EVENTS = { 'bulkhead.reject': 'Bulkhead full', 'rateLimit.reject': 'Rate limited',
    'rateLimit.storeError': 'Redis unreachable', 'concurrency.reject': 'Over the concurrency limit',
    'throttle.reject': 'Throttled', 'hedge.budgetExhausted': 'Hedge refused by budget', 'fallback': 'Fallback served' };
  function renderLimits(l) {
    var shown = l.bulkheads.length + l.rateLimiters.length + l.adaptive.length + l.throttles.length + l.hedges.length + l.events.length;
    $('limits-section').hidden = !shown;
    var box = $('limits'); box.textContent = '';
    if (!shown) return;
    function part(title, node) { box.appendChild(el('h3', { text: title })); box.appendChild(node); }
    if (l.bulkheads.length) part('Bulkheads', table('Calls running and waiting in each bulkhead', [{ label: 'Bulkhead' },
      { label: 'State', cls: 'state-cell' }, { label: 'Running', num: true }, { label: 'Queued', num: true },
      { label: 'Capacity', num: true }, { label: 'Refused', num: true }], l.bulkheads.map(function (b) {
        return [b.name, badge(b.queued > 0 ? 'warn' : 'pass'), num(b.running), num(b.queued),
          b.maxConcurrent + (b.maxQueue ? ' + ' + b.maxQueue + ' queued' : ''), num(b.rejected)];
      }), true));
    if (l.rateLimiters.length) part('Rate limiters', table('Calls let through and refused by each rate limiter', [
      { label: 'Limiter' }, { label: 'Algorithm' }, { label: 'Limit' }, { label: 'Keys', num: true },
      { label: 'Allowed', num: true }, { label: 'Refused', num: true }, { label: 'Store errors', num: true }],
      l.rateLimiters.map(function (r) {
        return [r.name, r.algorithm, r.limit + ' per ' + ms(r.interval), num(r.keys), num(r.allowed), num(r.rejected), num(r.storeErrors)];
      }), true));
    if (l.adaptive.length) part('Adaptive concurrency', table('The limit each adaptive limiter has learned', [
      { label: 'Limiter' }, { label: 'Algorithm' }, { label: 'Limit', num: true }, { label: 'In flight', num: true },
      { label: 'Refused', num: true }, { label: 'Limit, recent moves' }], l.adaptive.map(function (a) {
        var line = spark(a.recent.length ? a.recent : [a.limit]);
        line.setAttribute('aria-label', a.recent.length ? 'Limit over its last ' + a.recent.length + ' values: from ' +
          a.recent[0] + ' to ' + a.recent[a.recent.length - 1] : 'Limit has not moved: ' + a.limit);
        return [a.name, a.algorithm, num(a.limit), num(a.inFlight), num(a.rejected), line];
      }), true));
    if (l.throttles.length) part('Adaptive throttles', table('Share of calls each throttle refuses locally', [
      { label: 'Throttle' }, { label: 'State', cls: 'state-cell' }, { label: 'Refusal probability', num: true },
      { label: 'Requests', num: true }, { label: 'Accepts', num: true }, { label: 'Refused', num: true }],
      l.throttles.map(function (t) {
        return [t.name, badge(t.probability > 0 ? 'warn' : 'pass'), pct(t.probability), num(t.requests), num(t.accepts), num(t.rejected)];
      }), true));
    if (l.hedges.length) part('Hedges', table('Extra attempts each hedge policy sent', [{ label: 'Hedge' },
      { label: 'Calls', num: true }, { label: 'Hedges', num: true }, { label: 'Won by a hedge', num: true },
      { label: 'Refused by budget', num: true }, { label: 'Delay', num: true }], l.hedges.map(function (h) {
        return [h.name, num(h.calls), num(h.hedges), num(h.hedgeWins), num(h.refused), ms(h.delay)];
      }), true));
    if (l.events.length) part('Refusals and fallbacks', table('Counted on the bus since the page\'s server started', [
      { label: 'Policy' }, { label: 'Event' }, { label: 'Count', num: true }, { label: 'Last' }], l.events.map(function (e) {
        return [e.source, LIMIT_EVENTS[e.event] || e.event, num(e.count), new Date(e.last).toLocaleTimeString()];
      }), true));
  }
`;
