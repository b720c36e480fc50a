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

/**
 * What one retry took from a budget of ours, to be given back if the retry is not made: triples
 * of the counts it was taken from, a slice (as the window numbers them, whatever a clock stepped
 * back did since) and the amount. Internal, as are `withdraw` and `giveBack`: `retry()` only.
 */
export type Taken = (number[] | number)[];

/** `budget.tryWithdraw()`, with what it took when the budget is one of ours. */
export let withdraw: (budget: RetryBudget) => Taken | boolean;

/**
 * Returns a retry taken by `withdraw` and not made: it is counted no more and what it spent is
 * unspent, in the slices still in the window. What later calls repaid of what the floor advanced
 * for it stays spent. A budget of another kind (the caller's own) keeps it.
 */
export let giveBack: (budget: RetryBudget, taken: Taken | true) => void;

/** The window is cut in this many slices; a slice leaves the window whole. */
const SLICES = 10;

/**
 * Keeps 0.2 × 5 calls a whole retry despite floating point, and ignores residues of it. Shares
 * are compared within EPSILON of the window's earnings (see `slack`), not of 1: the rounding of a
 * product or a sum grows with its size.
 */
const EPSILON = 1e-9;

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
  /** Retries by the slice they were let through in: they leave the window with it. */
  readonly #retries = new Array<number>(SLICES).fill(0);
  /**
   * Of each slice's earnings (ratio × its calls), the share retries have spent. Spent earnings
   * leave with their calls; until then they pay for nothing else.
   */
  readonly #spent = new Array<number>(SLICES).fill(0);
  /**
   * Of each slice's retries, the share the floor let through before the calls had earned it
   * (fractions of a retry), owed until later calls pay for it or the slice leaves.
   */
  readonly #owing = new Array<number>(SLICES).fill(0);
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
  /** The sum of `#spent`. */
  #spentSum = 0;
  /** The sum of `#owing`: what the floor advanced that calls in the window have not yet paid. */
  #owed = 0;
  #refused = 0;
  #disposed = false;
  /** How far a clock stepped back has moved the slices' numbers: `Taken` is counted without it. */
  #moved = 0;
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
    if (this.#owed > EPSILON) this.#repay(at);
  }

  static {
    withdraw = (budget) => (#take in budget ? budget.#take([]) : budget.tryWithdraw());
    giveBack = (budget, taken) => {
      if (#take in budget && taken !== true) budget.#giveBack(taken);
    };
  }

  tryWithdraw(): boolean {
    return this.#take() !== false;
  }

  /** Takes one retry, or returns false; notes in `taken`, when given, what it took. */
  #take(taken?: Taken): Taken | boolean {
    const at = this.#advance();
    const earned = this.ratio * this.#callSum;
    const unspent = earned - this.#spentSum;
    const tolerance = slack(earned);
    if (this.#retrySum + 1 <= earned + tolerance && unspent >= 1 - tolerance) {
      // Earned: the calls of the window pay for it whole.
      this.#spend(at, 1, taken);
    } else if (earned < this.#floor && this.#retrySum + 1 <= this.#floor + EPSILON) {
      // The floor stands in for what the calls have not earned: they pay what they can now, and
      // later calls the rest while this slice is in the window. Counted whole, the calls' share
      // would pay for another retry once this one left (0.1 × 36 calls = 3.6 against a floor of
      // 4: the fourth retry is 0.4 floor, and the calls' 0.6 of it is spent).
      const paid = Math.min(1, Math.max(0, unspent));
      if (paid > 0) this.#spend(at, paid, taken);
      // With ratio 0 no call can pay: nothing is owed, and deposits skip #repay.
      if (1 - paid > EPSILON && this.ratio > 0) {
        this.#owing[at] = (this.#owing[at] as number) + (1 - paid);
        this.#owed += 1 - paid;
        taken?.push(this.#owing, this.#slice - this.#moved, 1 - paid);
      }
    } else {
      this.#refused++;
      return false;
    }
    this.#retries[at] = (this.#retries[at] as number) + 1;
    this.#retrySum++;
    taken?.push(this.#retries, this.#slice - this.#moved, 1);
    return taken ?? true;
  }

  #giveBack(taken: Taken): void {
    if (this.#disposed) return; // counts nothing any more
    this.#advance();
    for (let i = 0; i < taken.length; i += 3) {
      const slice = (taken[i + 1] as number) + this.#moved;
      // Older slices have left the window, and what they counted with them.
      if (slice <= this.#slice - SLICES) continue;
      const counts = taken[i] as number[];
      const at = ring(slice);
      counts[at] = Math.max(0, (counts[at] as number) - (taken[i + 2] as number));
    }
    // Summed afresh, as #advance does: no rounding is left behind.
    this.#retrySum = sum(this.#retries);
    this.#spentSum = sum(this.#spent);
    this.#owed = sum(this.#owing);
  }

  get balance(): number {
    // Disposed, it lets nothing through: tryWithdraw() throws.
    if (this.#disposed) return 0;
    this.#advance();
    const earned = this.ratio * this.#callSum;
    // As tryWithdraw() decides: what the calls earned and have not spent, or the floor's rest.
    const left = Math.floor(Math.min(earned - this.#spentSum, earned - this.#retrySum) + slack(earned));
    const floor = earned < this.#floor ? Math.floor(this.#floor - this.#retrySum + EPSILON) : 0;
    return Math.max(0, left, floor);
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
    for (const counts of [this.#calls, this.#retries, this.#spent, this.#owing]) counts.fill(0);
    this.#callSum = 0;
    this.#retrySum = 0;
    this.#spentSum = 0;
    this.#owed = 0;
  }

  /**
   * Spends `amount` of the window's unspent earnings, the oldest first (the first to leave),
   * noting in `taken`, when given, whose.
   */
  #spend(at: number, amount: number, taken?: Taken): void {
    this.#spentSum += amount;
    for (let i = 1; i <= SLICES && amount > EPSILON; i++) {
      const from = ring(at + i);
      const n = Math.min(amount, this.ratio * (this.#calls[from] as number) - (this.#spent[from] as number));
      if (n <= 0) continue;
      this.#spent[from] = (this.#spent[from] as number) + n;
      amount -= n;
      // Slice `#slice - SLICES + i` is in ring place `from`.
      taken?.push(this.#spent, this.#slice - this.#moved - SLICES + i, n);
    }
  }

  /**
   * A call has come while retries the floor advanced are owed: its earnings pay for them, the
   * oldest first, and are spent. Left unpaid, the advances would leave with their slice and the
   * ratio would then give the calls' earnings out again (an outage at 50 calls a second,
   * starting from quiet, made 21 retries of 100 calls, not 20). What no call pays for leaves
   * with its slice: the floor of a quiet service holds.
   */
  #repay(at: number): void {
    let paid = Math.min(this.#owed, this.ratio * (this.#calls[at] as number) - (this.#spent[at] as number));
    if (paid <= 0) return;
    this.#spent[at] = (this.#spent[at] as number) + paid;
    this.#spentSum += paid;
    this.#owed -= paid;
    for (let i = 1; i <= SLICES && paid > EPSILON; i++) {
      const from = ring(at + i);
      const n = Math.min(paid, this.#owing[from] as number);
      if (n <= 0) continue;
      this.#owing[from] = (this.#owing[from] as number) - n;
      paid -= n;
    }
    if (this.#owed <= EPSILON) this.#owed = 0;
  }

  /** Drops the slices that left the window; returns the index of the current slice. */
  #advance(): number {
    if (this.#disposed) throw new DisposedError(this.name);
    this.#unread = 0;
    const slice = Math.floor(this.#elapsed() / this.#sliceMs);
    const steps = slice - this.#slice;
    if (steps < 0) {
      // A clock without monotonic() stepped back: the window moves with it, each slice keeping
      // its age, and what it counts leaves when it would have. Kept where it was, nothing would
      // leave until the clock caught up (an hour of calls paying for an hour's worth of retries in
      // an outage); dropped, the retries just spent would be spent again at once; all moved to the
      // slice of now, everything would stay one ttl more at each step, and a clock stepped back
      // every second would pile up every call (60 s of 100 calls a second then paid a burst of
      // 1,200 retries).
      const shift = ring(slice) - this.#at;
      this.#moved += steps;
      if (shift !== 0)
        for (const counts of [this.#calls, this.#retries, this.#spent, this.#owing]) rotate(counts, shift);
      this.#slice = slice;
      this.#at = ring(slice);
    } else if (steps > 0) {
      for (let i = 1; i <= Math.min(steps, SLICES); i++) {
        const at = ring(this.#slice + i);
        this.#callSum -= this.#calls[at] as number;
        this.#retrySum -= this.#retries[at] as number;
        this.#calls[at] = 0;
        this.#retries[at] = 0;
        this.#spent[at] = 0;
        this.#owing[at] = 0;
      }
      // Shares are fractions: summed afresh, their rounding never piles up.
      this.#spentSum = sum(this.#spent);
      this.#owed = sum(this.#owing);
      this.#slice = slice;
      this.#at = ring(slice);
    }
    return this.#at;
  }
}

/**
 * How far two shares of `earned` may differ and be taken as equal. Relative to the earnings:
 * 0.57 × 10^8 calls is 56,999,999.99999999 in floating point, and the fractions 10^4 floor
 * retries are repaid in (0.9 a call) sum to 10^4 + 10^-8; against an absolute 1e-9 either cost
 * a whole retry.
 */
function slack(earned: number): number {
  return earned > 1 ? EPSILON * earned : EPSILON;
}

/** Moves each count `shift` places on in the ring. */
function rotate(counts: number[], shift: number): void {
  const was = counts.slice();
  for (let i = 0; i < SLICES; i++) counts[ring(i + shift)] = was[i] as number;
}

function sum(counts: readonly number[]): number {
  let total = 0;
  for (const n of counts) total += n;
  return total;
}

/** The ring index of a slice number (which may be negative before 1970 on a manual clock). */
function ring(slice: number): number {
  return ((slice % SLICES) + SLICES) % SLICES;
}
