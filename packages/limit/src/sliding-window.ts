import { parseOptions } from '@holdfast/core';
import { type SlidingWindowOptions, slidingWindowOptionsSchema } from './options.js';
import {
  checkCost,
  KeyTable,
  type LocalRateLimiter,
  type RateDecision,
  RateLimiterBase,
  type RateLimiterSnapshot,
} from './rate.js';
import { type Common, commonOf, leastWait, list } from './shared.js';

interface Window {
  /** Index of the current fixed window (time / interval). */
  index: number;
  previous: number;
  current: number;
  /**
   * Set by a step back of the line: the furthest window its counts were in. The line coming back
   * to it (the step undone) is no time passing: the counts stand, once per step back.
   */
  high?: number | undefined;
}

/** Whether `s`'s counts stand at window `index`: at or behind its window, or the line come back to them. */
const standing = (s: Window, index: number) =>
  index <= s.index || (index > s.index + 1 && s.high !== undefined && Math.abs(index - s.high) <= 1);

/**
 * A sliding window per key, in this process: the calls of the current fixed window plus those
 * of the previous one, weighted by how much of it the sliding window still covers (the
 * approximation Cloudflare and nginx use: it assumes the previous window's calls were spread
 * evenly). A call that would bring the count past `limit` is refused with `retryAfter`.
 *
 * @example
 * const perIp = slidingWindow({ limit: 100, interval: 60_000 });
 * await perIp.execute(() => handle(req), { key: req.ip });
 */
export function slidingWindow(options: SlidingWindowOptions): LocalRateLimiter {
  const o = parseOptions('slidingWindow', slidingWindowOptionsSchema, options);
  const limiter = new SlidingWindow(commonOf(o), o.defaultKey, o.key, o.limit, o.interval, o.maxKeys);
  limiter.unregister = list('rateLimiter', o.name, limiter, o.policies);
  return limiter;
}

class SlidingWindow extends RateLimiterBase {
  readonly #table: KeyTable<Window>;

  constructor(
    common: Common,
    defaultKey: string,
    ownKey: ((key: string | undefined) => string | undefined) | undefined,
    readonly limit: number,
    readonly interval: number,
    maxKeys: number,
  ) {
    // Kept at its limit, a window takes limit - 1 (the previous window's weight leaves no room for
    // the last), and a limit of 1 goes every other window.
    super(common, defaultKey, ownKey, limit, interval, limit > 1 ? limit - 1 : 0.5);
    // The whole calls its window allows now, of `limit`: the emptiest window is forgotten first.
    this.#table = new KeyTable<Window>(maxKeys, (s) => {
      const now = this.common.elapsed();
      const index = Math.floor(now / interval);
      // At or behind its window (the line went back), or coming back: its counts stand, as take() keeps them.
      const stand = standing(s, index);
      if (index > s.index + 1 && !stand) return 1;
      const previous = stand ? s.previous : s.current;
      const current = stand ? s.current : 0;
      const count = previous * ((interval - (now - index * interval)) / interval) + current;
      return Math.floor(limit - count + 1e-9) / limit;
    });
  }

  take(key?: string, cost = 1): RateDecision {
    checkCost(this.name, cost, this.limit);
    key = this.own(key);
    const now = this.common.elapsed();
    const w = this.interval;
    const index = Math.floor(now / w);
    const s = this.#table.get(key, () => ({ index, previous: 0, current: 0 }));
    this.taking = s;
    if (index > s.index && standing(s, index)) {
      // The line came back to the window it counted in (a clock stepped back, then set right; or
      // flapping between two times): no time passed, the counts stand. Forgotten, a clock
      // flapping every few ms granted a full limit per flap. Once per step back: a quiet spell
      // ending just there is told from a return by nothing, and holds the key a window more.
      s.index = index;
      s.high = undefined;
    } else if (index > s.index) {
      s.previous = index === s.index + 1 ? s.current : 0;
      s.current = 0;
      s.index = index;
      if (s.high !== undefined && index > s.high) s.high = undefined;
    } else if (index < s.index) {
      // The line went back (a clock without monotonic() stepped back; realClock left fake timers
      // for real ones): its counts stand in the window of now, or it stays full until the line
      // is back where it was (an hour after a one-hour step).
      s.high = Math.max(s.high ?? s.index, s.index);
      s.index = index;
    }
    const elapsed = now - index * w;
    const weight = (w - elapsed) / w;
    const count = s.previous * weight + s.current;
    const allowed = count + cost <= this.limit + 1e-9;
    if (allowed) s.current += cost;
    // This window's calls weigh until the next one ends; the previous window's, until this one does.
    const reset = s.current > 0 ? 2 * w - elapsed : s.previous > 0 ? w - elapsed : 0;
    // Refused, what is left is still left: a call of a smaller cost may take it.
    const left = Math.max(0, Math.floor(this.limit - count - (allowed ? cost : 0) + 1e-9));
    return this.decided(
      allowed,
      allowed ? 0 : this.#wait(now, s, cost, retryAfter(this.limit, w, elapsed, s.previous, s.current, cost)),
      left,
      reset,
    );
  }

  /**
   * The least whole ms at which this take() admits `cost`, as its own arithmetic has it, from the
   * estimate `first`: its epsilon put it a ms off at extreme settings. After a step back of the
   * line, windows near the furthest one the counts were in hold them (see `standing`): the
   * estimate, which knows nothing of that, fell inside them, and the call was refused at it
   * (150 ms where 350 were needed); then the first window past them.
   */
  #wait(now: number, s: Window, cost: number, first: number): number {
    const w = this.interval;
    const admits = (ms: number) => {
      const at = now + ms;
      const i = Math.floor(at / w);
      const stand = standing(s, i);
      const previous = stand ? s.previous : i === s.index + 1 ? s.current : 0;
      return previous * ((w - (at - i * w)) / w) + (stand ? s.current : 0) + cost <= this.limit + 1e-9;
    };
    const ms = leastWait(first, admits);
    return admits(ms) || s.high === undefined ? ms : leastWait(Math.ceil((s.high + 2) * w - now), admits);
  }

  // Kept at its limit in calls of `cost`, a window takes limit - cost (what the previous one
  // weighs leaves no room for more), or one call every other window.
  protected override steadyFor(cost: number): number {
    return Math.max(this.limit - cost, cost / 2);
  }

  protected giveBack(key: string | undefined, cost: number, at: number, state: unknown) {
    const w = this.interval;
    const index = Math.floor(at / w);
    // Forgotten since (a full limit), or forgotten and made again: nothing of this request's to give.
    const s = this.#table.peek(this.own(key));
    if (s === undefined || s !== state) return undefined;
    // Counted in the window of `at`: the current one still, or the previous one since.
    if (s.index === index) s.current = Math.max(0, s.current - cost);
    else if (s.index === index + 1) s.previous = Math.max(0, s.previous - cost);
    // As take() sees it now, taking nothing; not known for sure once the window moved on.
    const now = this.common.elapsed();
    if (Math.floor(now / w) !== s.index) return undefined;
    const elapsed = now - s.index * w;
    const count = (s.previous * (w - elapsed)) / w + s.current;
    const reset = s.current > 0 ? 2 * w - elapsed : s.previous > 0 ? w - elapsed : 0;
    return {
      remaining: Math.max(0, Math.floor(this.limit - count + 1e-9)),
      reset: Math.max(0, Math.ceil(reset - 1e-6)),
    };
  }

  snapshot(): RateLimiterSnapshot {
    return {
      name: this.name,
      algorithm: 'slidingWindow',
      limit: this.limit,
      interval: this.interval,
      keys: this.#table.size,
      allowed: this.allowedCount,
      rejected: this.rejectedCount,
    };
  }

  override dispose(): void {
    super.dispose();
    this.#table.clear();
  }
}

/** How long until `previous × weight + current + cost <= limit`, ms (at least 1). */
export function retryAfter(
  limit: number,
  w: number,
  elapsed: number,
  previous: number,
  current: number,
  cost: number,
): number {
  const room = limit - current - cost;
  if (room >= 0 && previous > 0) {
    // Within this window: wait until the previous window's weight has shrunk enough.
    return Math.max(1, Math.ceil(w - elapsed - (w * room) / previous - 1e-6));
  }
  // Next window: this window's calls become the previous ones, weighted down as it slides.
  const needed = current > 0 ? Math.max(0, w * (1 - (limit - cost) / current)) : 0;
  return Math.max(1, Math.ceil(w - elapsed + needed - 1e-6));
}
