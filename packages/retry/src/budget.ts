import {
  type Clock,
  DisposedError,
  elapsedTime,
  policies as globalPolicies,
  parseOptions,
  realClock,
  type Snapshottable,
  type Unregister,
} from '@holdfast/core';
import { type RetryBudgetOptions, retryBudgetOptionsSchema } from './options.js';

/** What a budget's `snapshot()` returns. */
export type RetryBudgetSnapshot = {
  /** The budget's name. */
  readonly name: string;
  /** Retries allowed as a share of the calls in the last `ttl`. */
  readonly ratio: number;
  /** A floor for quiet services: this many retries a second are allowed even when ratio × calls is fewer. */
  readonly minPerSecond: number;
  /** How long a call or a retry counts, in ms. */
  readonly ttl: number;
  /** Calls counted in the last ttl. */
  readonly calls: number;
  /** Retries let through in the last ttl. */
  readonly retries: number;
  /** Retries the budget would let through now. */
  readonly balance: number;
  /** Retries refused since the budget was made. */
  readonly refused: number;
};

/**
 * Retries as a share of calls, shared by every policy it is given to. In the last `ttl`,
 * retries may be at most `ratio` × calls, or `minPerSecond` × ttl in seconds when that is more.
 */
export interface RetryBudget extends Snapshottable<RetryBudgetSnapshot> {
  /** The budget's name, shown in its snapshot. */
  readonly name: string;
  /** Counts one call. A retry() policy calls it once per call, not per attempt. */
  deposit(): void;
  /** Takes one retry from the budget; false, and nothing taken, when it is spent. */
  tryWithdraw(): boolean;
  /** Retries the budget would let through now. */
  readonly balance: number;
}

/** The window is cut in this many slices; a slice leaves the window whole. */
const SLICES = 10;

/**
 * On the real clock a deposit reads the time once in this many (a read costs more than the
 * rest of a deposit): in between, calls count in the slice of the last read, which is never
 * later than theirs, so they may leave the window early, never late. Any other clock is read
 * on every deposit.
 */
const DEPOSITS_PER_READ = 8;

/**
 * A retry budget in the spirit of Finagle's RetryBudget: each call deposits, each retry
 * withdraws, and what is counted leaves the window after `ttl`. When many calls fail at once,
 * retries stay within `ratio` of the traffic instead of multiplying it. The floor is not
 * added to the ratio but stands in for it: above `minPerSecond / ratio` calls a second (10 by
 * default) an outage is amplified by at most `1 + ratio`, and below it a quiet service still
 * gets `minPerSecond` retries a second.
 *
 * @example
 * const budget = retryBudget({ ratio: 0.1 });
 * const inventory = retry({ budget });
 * const pricing = retry({ budget }); // the two share one allowance
 */
export function retryBudget(options: RetryBudgetOptions = {}): RetryBudget {
  const o = parseOptions('retryBudget', retryBudgetOptionsSchema, options);
  const budget = new TokenRetryBudget(o.name, o.ratio, o.minPerSecond, o.ttl, o.clock ?? realClock);
  const listing = o.policies ?? globalPolicies;
  if (listing !== false) budget.unregister = listing.register('budget', o.name, budget);
  return budget;
}

class TokenRetryBudget implements RetryBudget {
  readonly #calls = new Array<number>(SLICES).fill(0);
  readonly #retries = new Array<number>(SLICES).fill(0);
  /** Of each slice's retries, those the floor let through before the calls had earned them. */
  readonly #advances = new Array<number>(SLICES).fill(0);
  readonly #sliceMs: number;
  /** The clock's monotonic time: the window slides with real time, whatever the wall clock does. */
  readonly #elapsed: () => number;
  /** Retries allowed in any window, whatever the traffic. */
  readonly #floor: number;
  #slice: number;
  /** Ring index of `#slice`. */
  #at: number;
  /** Deposits since the clock was last read. */
  #unread = 0;
  readonly #readEvery: number;
  #callSum = 0;
  #retrySum = 0;
  /** The sum of `#advances`: retries the calls in the window have not yet paid for. */
  #owed = 0;
  #refused = 0;
  #disposed = false;
  /** Takes the budget off the policy registry it listed itself in. */
  unregister: Unregister = () => {};

  constructor(
    readonly name: string,
    readonly ratio: number,
    readonly minPerSecond: number,
    readonly ttl: number,
    readonly clock: Clock,
  ) {
    this.#sliceMs = ttl / SLICES;
    this.#floor = (minPerSecond * ttl) / 1000;
    this.#elapsed = elapsedTime(clock);
    this.#slice = Math.floor(this.#elapsed() / this.#sliceMs);
    this.#at = ring(this.#slice);
    this.#readEvery = clock === realClock ? DEPOSITS_PER_READ : 1;
  }

  deposit(): void {
    if (this.#disposed) throw new DisposedError(this.name);
    if (++this.#unread >= this.#readEvery) this.#advance();
    const at = this.#at;
    this.#calls[at] = (this.#calls[at] as number) + 1;
    this.#callSum++;
    if (this.#owed > 0) this.#repay(at);
  }

  tryWithdraw(): boolean {
    const at = this.#advance();
    if (this.#available() < 1) {
      this.#refused++;
      return false;
    }
    this.#retries[at] = (this.#retries[at] as number) + 1;
    this.#retrySum++;
    // Beyond what ratio × calls allows: an advance of the floor, owed until calls pay for it.
    if (this.#retrySum > this.ratio * this.#callSum + 1e-9) {
      this.#advances[at] = (this.#advances[at] as number) + 1;
      this.#owed++;
    }
    return true;
  }

  get balance(): number {
    if (!this.#disposed) this.#advance();
    return Math.max(0, Math.floor(this.#available()));
  }

  snapshot(): RetryBudgetSnapshot {
    const balance = this.balance;
    return {
      name: this.name,
      ratio: this.ratio,
      minPerSecond: this.minPerSecond,
      ttl: this.ttl,
      calls: this.#callSum,
      retries: this.#retrySum,
      balance,
      refused: this.#refused,
    };
  }

  dispose(): void {
    this.#disposed = true;
    this.unregister();
    this.#calls.fill(0);
    this.#retries.fill(0);
    this.#advances.fill(0);
    this.#callSum = 0;
    this.#retrySum = 0;
    this.#owed = 0;
  }

  #available(): number {
    // The epsilon keeps 0.2 × 5 calls a whole retry despite floating point.
    return Math.max(this.ratio * this.#callSum, this.#floor) - this.#retrySum + 1e-9;
  }

  /**
   * Calls have come that pay for retries the floor let through before them: those retries now
   * count from the slice `at` of the call that paid, and leave the window with it. Left where
   * they were, they would leave first and hand the ratio the calls' allowance a second time
   * (an outage at 50 calls a second, starting from quiet, made 21 retries of 100 calls, not 20).
   * Advances no call pays for leave with their own slice: the floor of a quiet service holds.
   */
  #repay(at: number): void {
    const unpaid = Math.max(0, Math.ceil(this.#retrySum - this.ratio * this.#callSum - 1e-9));
    let paid = this.#owed - unpaid;
    if (paid <= 0) return;
    this.#owed = unpaid;
    // The oldest first: the slice after the current one is the oldest in the ring.
    for (let i = 1; i <= SLICES && paid > 0; i++) {
      const from = ring(at + i);
      const n = Math.min(paid, this.#advances[from] as number);
      if (n === 0) continue;
      this.#advances[from] = (this.#advances[from] as number) - n;
      this.#retries[from] = (this.#retries[from] as number) - n;
      this.#retries[at] = (this.#retries[at] as number) + n;
      paid -= n;
    }
  }

  /** Drops the slices that left the window; returns the index of the current slice. */
  #advance(): number {
    if (this.#disposed) throw new DisposedError(this.name);
    this.#unread = 0;
    const slice = Math.floor(this.#elapsed() / this.#sliceMs);
    const steps = slice - this.#slice;
    if (steps < -SLICES) {
      // A clock without monotonic() stepped back by more than the window: what it counts moves to
      // the slice of now and leaves one ttl later. Kept where it was, nothing would leave until the
      // clock caught up (an hour of calls paying for an hour's worth of retries in an outage);
      // dropped, the retries just spent would be spent again at once.
      this.#calls.fill(0);
      this.#retries.fill(0);
      this.#advances.fill(0);
      this.#slice = slice;
      this.#at = ring(slice);
      this.#calls[this.#at] = this.#callSum;
      this.#retries[this.#at] = this.#retrySum;
      this.#advances[this.#at] = this.#owed;
    } else if (steps > 0) {
      for (let i = 1; i <= Math.min(steps, SLICES); i++) {
        const at = ring(this.#slice + i);
        this.#callSum -= this.#calls[at] as number;
        this.#retrySum -= this.#retries[at] as number;
        this.#owed -= this.#advances[at] as number;
        this.#calls[at] = 0;
        this.#retries[at] = 0;
        this.#advances[at] = 0;
      }
      this.#slice = slice;
      this.#at = ring(slice);
    }
    return this.#at;
  }
}

/** The ring index of a slice number (which may be negative before 1970 on a manual clock). */
function ring(slice: number): number {
  return ((slice % SLICES) + SLICES) % SLICES;
}
