import { performance as hrPerformance } from 'node:perf_hooks';

/**
 * The global Date when this module loaded: another one later means fake timers are installed.
 * None when the one at load is itself a fake timers' Date (it carries their `clock`): a setup
 * file installed them first, and the global performance is then the one to read, real or fake.
 */
const loadedDate = 'clock' in Date ? undefined : Date;

/** An opaque handle returned by {@link Clock.setTimeout}. */
export type TimerHandle = unknown;

/** Options of {@link Clock.setTimeout}. */
export interface TimerOptions {
  /**
   * Whether the timer keeps the process alive. Waits a caller is awaiting (a retry's backoff,
   * a call's deadline) are ref'd; background work (sweeps, health checks) is not.
   * @default false
   */
  readonly ref?: boolean;
}

/** The source of time for every time-based policy. Tests pass a {@link ManualClock}. */
export interface Clock {
  /** Milliseconds since the epoch: for timestamps (events, snapshots, `retryAt`). */
  now(): number;
  /**
   * Milliseconds on a line that never steps (NTP, a VM resume, a hand-set clock move `now()`
   * by hours): for elapsed times and deadlines. Only differences mean anything. Optional: a
   * clock without it has its durations measured on `now()`. See {@link elapsedTime}.
   */
  monotonic?(): number;
  /** Calls `callback` once, after `ms` milliseconds; the handle cancels it. */
  setTimeout(callback: () => void, ms: number, options?: TimerOptions): TimerHandle;
  /** Cancels a timer that has not fired yet; a handle that already fired is ignored. */
  clearTimeout(handle: TimerHandle): void;
}

/** The clock of the running process: `Date.now()` and Node's timers. */
export const realClock: Clock = {
  // Read at each call, not captured at load: fake timers (vitest, sinon) swap Date.now later.
  now: () => Date.now(),
  // Under fake timers (@sinonjs/fake-timers, as vitest and jest install them: the faked
  // setTimeout carries its `clock`), elapsed time is the fake clock's, which moves with the fake
  // timers: vitest 3's default fakes Date but leaves performance.now() real, and a test's
  // advanceTimersByTime() would move no policy's elapsed time (a bucket never refilled, a
  // breaker stayed open, a timeout never fired).
  // The fake clock's own time (`clock.now`), not the faked Date's: a toFake that leaves Date
  // real (timers only, or timers and performance) still moves it with the timers.
  //
  // Node's global `performance` is an accessor (a getter call at each read, ~230 instructions,
  // three times a guarded request in the idempotency store): while the global Date is the one
  // this module saw at load (no fake timers), perf_hooks' own object is read instead. Fake timers
  // that fake performance fake Date with it (the repo's tests do; faking performance alone, with
  // Date and timers real, now reads the real performance: elapsed time then moves with the timers).
  //
  // Under fake timers, `clock.now` is the fake system time, which `setSystemTime` steps (vitest's
  // `vi.setSystemTime`): a breaker open for 30 s was half-open after a step of a minute, with no
  // time advanced, and a step back held every deadline. The fake clock's `performance.now()`
  // moves with its timers and not with such a step: elapsed time is read from it, moved onto the
  // fake system time as it was when this clock first read it (the line goes on from there).
  monotonic: () => {
    const fake = (setTimeout as { clock?: FakeClock }).clock;
    if (fake?.now !== undefined) return fakeMonotonic(fake);
    return Date === loadedDate ? hrPerformance.now() : performance.now();
  },
  setTimeout(callback, ms, options) {
    const timer = setTimeout(callback, ms);
    if (options?.ref !== true) timer.unref();
    return timer;
  },
  clearTimeout(handle) {
    clearTimeout(handle as NodeJS.Timeout);
  },
};

/** What {@link realClock} reads of a fake timers' clock (@sinonjs/fake-timers, as vitest and jest install it). */
interface FakeClock {
  readonly now?: number;
  readonly performance?: { now?(): number };
}

/** Per fake clock: its system time less its `performance.now()` when first read. */
const fakeOffsets = new WeakMap<object, number>();

function fakeMonotonic(fake: FakeClock): number {
  const now = fake.now as number;
  const elapsed = typeof fake.performance?.now === 'function' ? fake.performance.now() : undefined;
  if (typeof elapsed !== 'number' || !Number.isFinite(elapsed)) return now;
  let offset = fakeOffsets.get(fake);
  if (offset === undefined) fakeOffsets.set(fake, (offset = now - elapsed));
  return offset + elapsed;
}

/**
 * The reader a policy measures elapsed times and deadlines with: `clock.monotonic()`, or
 * `clock.now()` for a clock that has none (a user's own, written before it existed).
 */
export function elapsedTime(clock: Clock): () => number {
  return clock.monotonic === undefined ? () => clock.now() : () => (clock.monotonic as () => number).call(clock);
}

interface ManualTimer {
  readonly due: number;
  readonly seq: number;
  readonly callback: () => void;
}

/**
 * A clock that moves only when told. `advance(ms)` fires due timers in order and lets the
 * promises they settle run before the next one, so no test sleeps to wait for a backoff.
 */
export class ManualClock implements Clock {
  #now: number;
  #seq = 0;
  #timers = new Set<ManualTimer>();

  constructor(start = 0) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  /** The same time line as `now()`: a test moves both with `advance()`. */
  monotonic(): number {
    return this.#now;
  }

  /** Schedules `callback` for when `advance()` moves the clock `ms` past now. */
  setTimeout(callback: () => void, ms: number): TimerHandle {
    const timer: ManualTimer = { due: this.#now + Math.max(0, ms), seq: this.#seq++, callback };
    this.#timers.add(timer);
    return timer;
  }

  /** Cancels a timer that has not fired yet. */
  clearTimeout(handle: TimerHandle): void {
    this.#timers.delete(handle as ManualTimer);
  }

  /** How many timers are waiting. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Moves time forward by `ms`, firing every timer that falls due on the way. */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    await settle();
    for (let next = this.#next(target); next; next = this.#next(target)) {
      this.#timers.delete(next);
      this.#now = next.due;
      next.callback();
      await settle();
    }
    this.#now = target;
    await settle();
  }

  /** Fires timers until none is left (at most `limit`), advancing time to each. */
  async runAll(limit = 10_000): Promise<void> {
    await settle(); // timers a just-started call is about to set
    for (let i = 0; i < limit; i++) {
      const next = this.#next(Number.POSITIVE_INFINITY);
      if (!next) return;
      await this.advance(next.due - this.#now);
    }
    throw new Error(`ManualClock.runAll: still ${this.#timers.size} timers after ${limit} rounds`);
  }

  #next(limit: number): ManualTimer | undefined {
    let best: ManualTimer | undefined;
    for (const t of this.#timers) {
      if (t.due <= limit && (!best || t.due < best.due || (t.due === best.due && t.seq < best.seq))) best = t;
    }
    return best;
  }
}

/** Module loads in flight that time must wait for; shared by every copy of core in the process. */
const loads: Set<Promise<unknown>> = ((globalThis as Record<symbol, unknown>)[Symbol.for('holdfast.core.loads')] ??=
  new Set()) as Set<Promise<unknown>>;

/**
 * Marks a module that a policy loads on first use (retry's dynamic `import('p-retry')`). A
 * {@link ManualClock} waits for such loads before it moves time: file reads are not promise
 * reactions, so without this a fresh process would see timers set later than a warm one does.
 * Returns `load`.
 */
export function whileLoading<T>(load: Promise<T>): Promise<T> {
  loads.add(load);
  const done = () => loads.delete(load);
  load.then(done, done);
  return load;
}

/**
 * Lets every pending promise reaction run (setImmediate fires only after the microtask queue
 * drains), and every module load in flight finish, with the reactions it causes.
 */
async function settle(): Promise<void> {
  for (;;) {
    await new Promise((resolve) => setImmediate(resolve));
    if (loads.size === 0) return;
    await Promise.allSettled(loads);
  }
}
