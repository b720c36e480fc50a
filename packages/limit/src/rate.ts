import { createHash, type Hash } from 'node:crypto';
import {
  attemptOf,
  CallScope,
  DisposedError,
  type ExecuteOptions,
  HoldfastConfigError,
  invoke,
  invokeIn,
  type Operation,
  type Policy,
  type Snapshottable,
} from '@holdfast/core';
import { RateLimitedError } from './errors.js';
import type { Common } from './shared.js';

/** The verdict of a rate limiter on one call. */
export interface RateDecision {
  /** Whether the call may go. */
  readonly allowed: boolean;
  /** When refused: how long until it would be allowed, ms (0 when allowed). */
  readonly retryAfter: number;
  /** Units the key could still take now, rounded down (also when refused: a call of a smaller cost may take them). */
  readonly remaining: number;
  /** How long until the key has its whole limit again, ms (what `RateLimit` headers call reset). */
  readonly reset: number;
}

/** Per-call options of a rate limiter. */
export interface RateLimitExecuteOptions extends ExecuteOptions {
  /** Whose limit the call counts against (a user, an IP, a route). @default the `defaultKey` option */
  readonly key?: string;
  /** How many units the call takes. @default 1 */
  readonly cost?: number;
}

/** What a rate limiter's `snapshot()` returns. */
export type RateLimiterSnapshot = {
  /** The limiter's name. */
  readonly name: string;
  /** How it counts. */
  readonly algorithm: 'tokenBucket' | 'slidingWindow' | 'gcra';
  /** Calls allowed per `interval`. */
  readonly limit: number;
  /** The period `limit` is counted over, ms. */
  readonly interval: number;
  /** Keys tracked now (0 on Redis, where the keys live). */
  readonly keys: number;
  /** Calls let through since the limiter was made. */
  readonly allowed: number;
  /** Calls refused since the limiter was made. */
  readonly rejected: number;
};

/** A rate limiter: a `Policy` that lets `limit` calls per `interval` through for each key. */
export interface RateLimiter extends Policy, Snapshottable<RateLimiterSnapshot> {
  /** Runs `fn` if the key's limit allows it, else rejects with `RateLimitedError` (`retryAfter`). */
  execute<T>(fn: Operation<T>, options?: RateLimitExecuteOptions): Promise<T>;
  /** Takes `cost` units from `key` if it can, without running anything. */
  take(key?: string, cost?: number): RateDecision | Promise<RateDecision>;
}

/** A rate limiter in this process: it decides synchronously. */
export interface LocalRateLimiter extends RateLimiter {
  /** Takes `cost` units from `key` if it can, without running anything. */
  take(key?: string, cost?: number): RateDecision;
}

/** What a Redis limiter decides when Redis cannot be reached and it lets the call through: nothing known. */
export const UNKNOWN: RateDecision = Object.freeze({ allowed: true, retryAfter: 0, remaining: 0, reset: 0 });

/**
 * A limiter's decision on a call, as the middleware hears it: the limit (units, over ms) and the
 * decision; told again, after a give-back, with what the key holds then.
 */
export type Decided = (
  limiter: RateLimiter,
  quota: number,
  window: number,
  decision: Pick<RateDecision, 'remaining' | 'reset'>,
  steady: number,
) => void;

/**
 * Where the load-shedding middleware hears the decisions on its request: a function under this
 * key of the call's options (a `Symbol.for`, so two installed copies agree).
 */
const DECIDED = Symbol.for('holdfast.limit.decided');

/**
 * Where the middleware hears how to give back what a limiter took for a request that was then
 * not admitted (a later limit or a bulkhead refused it, the client left while queued).
 */
const TAKEN = Symbol.for('holdfast.limit.taken');

/** Runs or refuses calls on a decision; the shared part of every rate limiter. */
export abstract class RateLimiterBase implements RateLimiter {
  readonly name: string;
  protected allowedCount = 0;
  protected rejectedCount = 0;
  protected disposed = false;
  /** Takes the limiter off the registry it listed itself in. */
  unregister: () => void = () => {};

  constructor(
    readonly common: Common,
    readonly defaultKey: string,
    /** The `key` option: the key a call counts under, from the call's. */
    readonly ownKey: ((key: string | undefined) => string | undefined) | undefined,
    /** The most units a key can hold (burst, or limit), and how long they take to come back from none, ms. */
    readonly quota: number,
    readonly window: number,
    /** The units that come back each `window` when a key is kept at its limit (a sliding window's are fewer). */
    readonly steady = quota,
  ) {
    this.name = common.name;
  }

  abstract take(key?: string, cost?: number): RateDecision | Promise<RateDecision>;

  /** The units that come back each `window` for calls of `cost` kept at the limit. */
  protected steadyFor(_cost: number): number {
    return this.steady;
  }

  /** Whether the take() being made may be given back (the caller asked how): set around it by execute(). */
  protected givable = false;
  /** The state the last take() decided on (in process), so that a give-back finds that one. */
  protected taking: unknown;
  /** How long the key the last take() decided on owed after it, ms, unrounded (in process). */
  protected ahead = 0;

  /**
   * Gives back `cost` units `take(key, cost)` took at `at` (the line's ms) from `state`, as far as
   * they still count: not to a key forgotten (past `maxKeys`) and made again since, whose units
   * are other requests'. `decision` is what take() decided. Returns the key's remaining and reset
   * after the give-back, if it knows them.
   */
  protected abstract giveBack(
    key: string | undefined,
    cost: number,
    at: number,
    state: unknown,
    decision: RateDecision,
    ahead: number,
  ): Pick<RateDecision, 'remaining' | 'reset'> | undefined;

  /** The key `key` counts under (a call's, or take()'s): through the `key` option, else itself, else `defaultKey`. */
  protected own(key: unknown): string {
    if (this.ownKey !== undefined) key = this.ownKey(key === undefined ? key : checkKey(this.name, key));
    return key === undefined ? this.defaultKey : checkKey(this.name, key);
  }
  abstract snapshot(): RateLimiterSnapshot;

  execute<T>(fn: Operation<T>, options?: RateLimitExecuteOptions): Promise<T> {
    if (this.disposed) return Promise.reject(new DisposedError(this.name));
    // A call whose signal has aborted already rejects with its reason before it is counted or
    // takes any quota (docs/concepts.md, "Aborts: the rules"): taken first, it spent a user's
    // quota on a call that never ran, or was refused as rate limited instead.
    let scope: CallScope | undefined;
    if (CallScope.abortable(options)) {
      scope = new CallScope(options);
      if (scope.aborted) {
        scope.release();
        return Promise.reject(scope.reason);
      }
    }
    let decision: RateDecision | Promise<RateDecision>;
    // Inside a pipeline, options is the outer policy's scope: the key and cost are the call's.
    const given = CallScope.given(options) as
      | (RateLimitExecuteOptions & { [DECIDED]?: Decided; [TAKEN]?: (undo: () => void) => void })
      | undefined;
    let key: string | undefined;
    let cost: number;
    let told: Decided | undefined;
    let taken: ((undo: () => void) => void) | undefined;
    let at: number;
    // Options that throw when read (a Proxy over state that is gone) reject, never throw at the call.
    try {
      key = given?.key ?? undefined;
      cost = given?.cost ?? 1;
      // Told only of a decision on the request's own key: a limit the limiter counts under a key of
      // its own (every user's, a tenant's) is other clients' business.
      told = this.ownKey === undefined && key !== undefined ? given?.[DECIDED] : undefined;
      // Only the middleware asks how to give back (a request a later policy did not admit).
      taken = given?.[TAKEN];
      at = taken ? this.common.elapsed() : 0;
      this.givable = taken !== undefined;
      decision = this.take(key, cost);
    } catch (error) {
      scope?.release();
      return Promise.reject(error);
    } finally {
      this.givable = false;
    }
    const state = this.taking;
    const ahead = this.ahead;
    this.taking = undefined;
    const undo =
      taken &&
      ((d: RateDecision) => {
        if (d.allowed && d !== UNKNOWN)
          taken(() => {
            this.allowedCount--;
            const now = this.giveBack(key, cost, at, state, d, ahead);
            // What the headers showed as taken is back: shown as spent, a limit of 1 an hour said
            // reset=3600 on a 429 another limit (back in a second) gave.
            if (told !== undefined && now !== undefined) {
              try {
                told(this, this.quota, this.window, now, this.steadyFor(cost));
              } catch {}
            }
          });
      });
    if (decision instanceof Promise) {
      return decision.then(
        (d) => this.#go(fn, options, d, cost, told, undo, scope),
        (error) => {
          scope?.release();
          throw error;
        },
      );
    }
    return this.#go(fn, options, decision, cost, told, undo, scope);
  }

  #go<T>(
    fn: Operation<T>,
    options: ExecuteOptions | undefined,
    decision: RateDecision,
    cost: number,
    told?: Decided,
    undo?: (d: RateDecision) => void,
    scope?: CallScope,
  ): Promise<T> {
    if (told !== undefined && decision !== UNKNOWN) {
      // Headers the middleware could not write never break the call.
      try {
        told(this, this.quota, this.window, decision, this.steadyFor(cost));
      } catch {}
    }
    undo?.(decision);
    if (!decision.allowed) {
      scope?.release();
      return Promise.reject(this.refuse(decision.retryAfter));
    }
    if (scope === undefined) {
      // No signal and no outer scope: nothing can abort the call, nothing to detach from (the
      // signal is not read again: a getter may give one now, followed and never left).
      return invoke(fn, new CallScope(undefined, attemptOf(options)));
    }
    // Aborted while an asynchronous take (a shared store) was waited for.
    if (scope.aborted) {
      scope.release();
      return Promise.reject(scope.reason);
    }
    return invokeIn(fn, scope).finally(() => scope.release());
  }

  /** Counts a refusal, emits `rateLimit.reject`, and returns the error to throw. */
  protected refuse(retryAfter: number): RateLimitedError {
    const { bus, clock } = this.common;
    if (bus.wants('rateLimit.reject')) {
      bus.emit({ type: 'rateLimit.reject', source: this.name, time: clock.now(), retryAfter, code: 'E_RATE_LIMITED' });
    }
    return new RateLimitedError(this.name, retryAfter);
  }

  /** Counts a decision and returns it. */
  protected decided(allowed: boolean, retryAfter: number, remaining: number, reset: number): RateDecision {
    if (allowed) this.allowedCount++;
    else this.rejectedCount++;
    this.ahead = reset;
    return { allowed, retryAfter, remaining, reset: Math.max(0, Math.ceil(reset - 1e-6)) };
  }

  dispose(): void {
    this.disposed = true;
    this.unregister();
  }
}

/**
 * Keys longer than this are kept as their SHA-256 digest (65 characters: '#' and its hex, longer
 * than any key kept as it is, so no short key shares its limit): `maxKeys` then bounds
 * memory, not only the count (10,000 keys a client sent in 16 kB headers held 162 MB).
 */
const LONG_KEY = 64;

/**
 * Feeds a key to `hash`. As UTF-8 a lone surrogate reads as U+FFFD, so keys that differ only in one
 * (a JSON string may hold it) would share a limit: a key that is not well-formed goes in as its
 * UTF-16 code units after a 0xff byte, which no UTF-8 holds. A well-formed key is its UTF-8, as before.
 */
export function hashKey(hash: Hash, key: string): Hash {
  return (key as unknown as { isWellFormed(): boolean }).isWellFormed()
    ? hash.update(key)
    : hash.update('\xff', 'latin1').update(key, 'utf16le');
}

/** How many of the least recently used keys a full table looks through for one to forget. */
const EVICTION_SCAN = 16;

/** A key's state, in a list from the least recently used to the most. */
interface Entry<S> {
  readonly key: string;
  readonly state: S;
  prev: Entry<S> | undefined;
  next: Entry<S> | undefined;
}

/**
 * The state of each key, in least recently used order. Past `maxKeys` it forgets, of the 16 least
 * recently used keys, the one with the most of its limit left (the first one back to a full limit,
 * which forgetting changes nothing for): forgetting a key hands it a full limit again, so a key
 * part-way through its limit (one call short of it: a login tried 4 times of 5) is kept while keys
 * with more room are tracked, and a client spraying new keys, each used less, cannot reset it.
 * A key longer than 64 characters is kept as its digest. The order is a linked list, not the
 * Map's: a Map read from its front after deletes there walks past every deleted entry, which made
 * each new key of a spray cost time in proportion to `maxKeys` (19 µs at 10,000, 73 µs at 100,000).
 */
export class KeyTable<S> {
  readonly #map = new Map<string, Entry<S>>();
  #oldest: Entry<S> | undefined;
  #newest: Entry<S> | undefined;

  constructor(
    readonly maxKeys: number,
    /**
     * The share of its limit a key's state allows now, in whole calls: 0 refusing calls, 1 as good
     * as new. Keys with the same room go least recently used first.
     */
    readonly room: (state: S) => number = () => 1,
  ) {}

  get size(): number {
    return this.#map.size;
  }

  /** The state of `key`, if kept, without making it or touching its order. */
  peek(key: string): S | undefined {
    if (key.length > LONG_KEY) key = `#${hashKey(createHash('sha256'), key).digest('hex')}`;
    return this.#map.get(key)?.state;
  }

  get(key: string, make: () => S): S {
    // Kept longer than any key kept as it is: a short key that spells the digest is another key.
    if (key.length > LONG_KEY) key = `#${hashKey(createHash('sha256'), key).digest('hex')}`;
    let entry = this.#map.get(key);
    if (entry !== undefined) {
      // Touched: it becomes the most recently used.
      if (entry !== this.#newest) {
        this.#unlink(entry);
        this.#append(entry);
      }
      return entry.state;
    }
    if (this.#map.size >= this.maxKeys) this.#evict();
    entry = { key, state: make(), prev: undefined, next: undefined };
    this.#map.set(key, entry);
    this.#append(entry);
    return entry.state;
  }

  #evict(): void {
    let chosen = this.#oldest as Entry<S>;
    let most = Number.NEGATIVE_INFINITY;
    let e = this.#oldest;
    for (let i = 0; e !== undefined && i < EVICTION_SCAN; i++, e = e.next) {
      const room = this.room(e.state);
      // Ties go to the least recently used.
      if (room > most) {
        most = room;
        chosen = e;
        if (room >= 1) break;
      }
    }
    this.#unlink(chosen);
    this.#map.delete(chosen.key);
  }

  #append(entry: Entry<S>): void {
    entry.prev = this.#newest;
    entry.next = undefined;
    if (this.#newest === undefined) this.#oldest = entry;
    else this.#newest.next = entry;
    this.#newest = entry;
  }

  #unlink(entry: Entry<S>): void {
    if (entry.prev === undefined) this.#oldest = entry.next;
    else entry.prev.next = entry.next;
    if (entry.next === undefined) this.#newest = entry.prev;
    else entry.next.prev = entry.prev;
  }

  clear(): void {
    this.#map.clear();
    this.#oldest = undefined;
    this.#newest = undefined;
  }
}

/**
 * A call's key as the string it is counted under: a number counts as its digits (so `7` and
 * `'7'` share one limit); anything else (an array a repeated query parameter made, an object)
 * is a `HoldfastConfigError` (`E_CONFIG`, path `key`), never a new limit per call.
 */
export function checkKey(name: string, key: unknown): string {
  if (typeof key === 'string') return key;
  if (typeof key === 'number' || typeof key === 'bigint') return String(key);
  const message = 'must be a string (or a number)';
  if (typeof key !== 'object' || key === null)
    throw new HoldfastConfigError(name, [{ path: 'key', message, value: key }]);
  // An object's contents are not shown: a whole request or user object may carry a token.
  const kind = Array.isArray(key) ? 'an array' : 'an object';
  throw new HoldfastConfigError(name, [{ path: 'key', message: `${message} (got ${kind}, not shown)` }]);
}

/** Checks a call's cost against what the limiter could ever allow: a `HoldfastConfigError` (`E_CONFIG`) if not. */
export function checkCost(name: string, cost: number, most: number): void {
  if (!(Number.isInteger(cost) && cost >= 1 && cost <= most)) {
    throw new HoldfastConfigError(name, [
      { path: 'cost', message: `must be a whole number from 1 to ${most}`, value: cost },
    ]);
  }
}
