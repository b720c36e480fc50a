import { parseOptions } from '@holdfast/core';
import type { z } from 'zod';
import { type TokenBucketOptions, tokenBucketOptionsSchema } from './options.js';
import {
  checkCost,
  KeyTable,
  type LocalRateLimiter,
  type RateDecision,
  RateLimiterBase,
  type RateLimiterSnapshot,
} from './rate.js';
import { type Common, commonOf, leastWait, list } from './shared.js';

type Parsed = z.output<typeof tokenBucketOptionsSchema>;

interface Bucket {
  tokens: number;
  at: number;
  /** All that give-backs have put back in this bucket, in ms of refill: it only goes up. */
  given: number;
}

/**
 * A token bucket per key, in this process: `burst` tokens, refilled at `limit` per `interval`;
 * a call takes `cost` tokens (1) or is refused with `retryAfter`, the time until enough refill.
 *
 * @example
 * const perUser = tokenBucket({ limit: 10, interval: 1_000, burst: 20 });
 * await perUser.execute(() => search(q), { key: user.id });
 */
export function tokenBucket(options: TokenBucketOptions): LocalRateLimiter {
  const o = parseOptions('tokenBucket', tokenBucketOptionsSchema, options);
  const limiter = new TokenBucket(commonOf(o), o, o.burst ?? o.limit);
  limiter.unregister = list('rateLimiter', o.name, limiter, o.policies);
  return limiter;
}

class TokenBucket extends RateLimiterBase {
  readonly #table: KeyTable<Bucket>;
  /** Tokens per ms. */
  readonly #rate: number;

  readonly limit: number;
  readonly interval: number;

  constructor(
    common: Common,
    o: Parsed,
    readonly burst: number,
  ) {
    super(common, o.defaultKey, o.key, burst, (burst * o.interval) / o.limit);
    this.limit = o.limit;
    this.interval = o.interval;
    this.#rate = o.limit / o.interval;
    // The whole calls its bucket allows now, refill counted, of a full one's: the fullest goes first.
    this.#table = new KeyTable<Bucket>(
      o.maxKeys,
      (b) => Math.floor(b.tokens + Math.max(0, this.common.elapsed() - b.at) * this.#rate + 1e-9) / burst,
    );
  }

  take(key?: string, cost = 1): RateDecision {
    checkCost(this.name, cost, this.burst);
    key = this.own(key);
    const now = this.common.elapsed();
    const b = this.#table.get(key, () => ({ tokens: this.burst, at: now, given: 0 }));
    this.taking = b;
    if (now > b.at) {
      b.tokens = Math.min(this.burst, b.tokens + (now - b.at) * this.#rate);
      b.at = now;
    } else if (now < b.at) {
      // The line went back (a clock without monotonic() stepped back; realClock left fake
      // timers for real ones): refill from now, or a drained bucket waits until it is back.
      b.at = now;
    }
    // The epsilon keeps 0.1 + 0.2 + ... a whole token despite floating point.
    // reset: until the bucket is full again.
    const allowed = b.tokens + 1e-9 >= cost;
    if (allowed) b.tokens = Math.max(0, b.tokens - cost);
    // At extreme rates the estimate's epsilon rounds a wait of k + 5e-7 ms down to k, when this
    // take() still refuses: the least whole ms at which it admits, as its own arithmetic has it.
    const retryAfter = allowed
      ? 0
      : leastWait(
          // With take()'s own margin (1e-9 of a token): at 1 a day it is 0.09 ms.
          Math.ceil((cost - b.tokens - 1e-9) / this.#rate),
          (ms) => Math.min(this.burst, b.tokens + (now + ms - now) * this.#rate) + 1e-9 >= cost,
        );
    // Refused, what is left is still left: a call of a smaller cost may take it.
    const d = this.decided(allowed, retryAfter, Math.floor(b.tokens + 1e-9), (this.burst - b.tokens) / this.#rate);
    // What had been given back by then, for this request's give-back (see giveBack()).
    this.ahead += b.given;
    return d;
  }

  protected giveBack(
    key: string | undefined,
    cost: number,
    at: number,
    state: unknown,
    _d: RateDecision,
    ahead: number,
  ) {
    // Forgotten since (a full limit), or forgotten and made again: nothing of this request's to give.
    const b = this.#table.peek(this.own(key));
    if (b === undefined || b !== state) return undefined;
    // Only what the refill had not yet replaced (issue #17: given back whole after the bucket had
    // refilled, B and a C 0.5 s apart passed a limit of 1 a second). As GCRA: the bucket owed
    // `ahead` ms after the request (from `at`), at least as much until the last take (b.at), and
    // what it owes now since; the request's units count for as long as all three still owe.
    // A give-back since of a request taken before this one moved this one's place back by what it
    // gave (`given` went up by as much): where this request's units now end is that much sooner
    // (before, A and B taken, A given back in part, C taken in B's old place, and B given back
    // whole let a call through 100 ms early; test/gcra-give-back-model.test.ts).
    const now = this.common.elapsed();
    const owed = Math.min(at + ahead - b.given - b.at, (this.burst - b.tokens) / this.#rate - (now - b.at));
    const give = Math.min(cost, Math.max(0, owed * this.#rate));
    b.tokens = Math.min(this.burst, b.tokens + give);
    b.given += give / this.#rate;
    // As take() sees it now, taking nothing.
    const tokens = Math.min(this.burst, b.tokens + Math.max(0, this.common.elapsed() - b.at) * this.#rate);
    return {
      remaining: Math.floor(tokens + 1e-9),
      reset: Math.max(0, Math.ceil((this.burst - tokens) / this.#rate - 1e-6)),
    };
  }

  snapshot(): RateLimiterSnapshot {
    return {
      name: this.name,
      algorithm: 'tokenBucket',
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
