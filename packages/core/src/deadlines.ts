import { type Clock, elapsedTime, realClock, type TimerHandle } from './clock.js';

/** One pending deadline: a node of the queue's list, unlinked when its call settles or it expires. */
export interface Deadline<S = unknown> {
  /** When it expires, on the queue's time source (brought forward if that source goes back). */
  at: number;
  /** What `onExpire` is given when it expires. */
  readonly subject: S;
  /** The deadline before it in the queue (sooner), if any. */
  prev: Deadline<S> | undefined;
  /** The deadline after it in the queue (later), if any. */
  next: Deadline<S> | undefined;
  /** In the queue: neither expired nor cancelled. */
  pending: boolean;
}

/**
 * Deadlines of one duration behind one timer. Each `add` appends to a list kept in order of
 * expiry (every deadline is `ms` after its start, and time only moves forward), `cancel`
 * unlinks in O(1), and the one timer is armed for the head. A call that settles before its
 * deadline costs no timer of its own: Node makes and deletes a timer list whenever the last
 * timer of a duration goes, which a per-call setTimeout/clearTimeout pays on every call.
 *
 * The timer keeps the process alive only while some deadline is pending: on the real clock
 * it is unref'd when the queue empties (and left to fire, harmlessly); on any other clock it
 * is cleared then. A deadline never fires early: the timer re-arms for what is left of the
 * head's time when it wakes before it.
 *
 * Time is the clock's `monotonic()` line. A clock without one has no line that never steps but
 * its timers: the queue keeps its own line, moved by how long its timer ran, and reads `now()`
 * only to place a start within the timer's current run. A step of the wall clock (NTP, a VM
 * resume) cannot expire deadlines early: a reading outside that run counts as the whole run, so
 * a start it cannot place ends at most one length late; only a step back smaller than the run
 * so far goes unseen, and makes a deadline early by at most that step.
 *
 * The monotonic line can go back (realClock leaving fake timers for real ones): then no pending
 * deadline is left more than `ms` ahead, so each still ends within twice its length instead of
 * when the line comes back to it (on performance.now() after a fake clock's epoch time, never).
 */
export class DeadlineQueue<S> {
  readonly #ms: number;
  readonly #clock: Clock;
  readonly #onExpire: (subject: S) => void;
  readonly #real: boolean;
  readonly #now: () => number;
  readonly #fire = () => this.#expireDue();
  #head: Deadline<S> | undefined;
  #tail: Deadline<S> | undefined;
  #timer: TimerHandle | undefined;
  /** The timer is armed and has not fired. */
  #armed = false;
  /** On realClock: the global setTimeout and clearTimeout the timer was armed with. */
  #armedOn: typeof setTimeout | undefined;
  #armedClear: typeof clearTimeout | undefined;
  #size = 0;
  /** A clock without monotonic(): the queue's own line (see #line). */
  readonly #ownLine: boolean;
  /** On its own line: the line's time and the clock's now() when the timer was armed or fired. */
  #lineAt = 0;
  #wallAt = 0;
  /** On its own line: how long the armed timer runs. */
  #armedFor = 0;

  constructor(ms: number, clock: Clock, onExpire: (subject: S) => void) {
    this.#ms = ms;
    this.#clock = clock;
    this.#onExpire = onExpire;
    this.#real = clock === realClock;
    // Deadlines on the clock's monotonic time: a wall-clock step cannot stall them.
    this.#ownLine = clock.monotonic === undefined;
    this.#now = this.#ownLine ? () => this.#line() : elapsedTime(clock);
  }

  /** The queue's own line: where it was when the timer was armed, plus what `now()` says ran since, within the run. */
  #line(): number {
    if (!this.#armed) return this.#lineAt;
    const ran = this.#clock.now() - this.#wallAt;
    return this.#lineAt + (ran >= 0 && ran <= this.#armedFor ? ran : this.#armedFor);
  }

  /** Deadlines pending now. */
  get size(): number {
    return this.#size;
  }

  /** Starts a deadline `ms` from now; `onExpire(subject)` runs then unless it is cancelled first. */
  add(subject: S): Deadline<S> {
    const deadline: Deadline<S> = {
      at: this.#now() + this.#ms,
      subject,
      prev: undefined,
      next: undefined,
      pending: true,
    };
    this.#size++;
    // realClock's timers are the globals of the moment: a test runner's fake timers, installed
    // or removed since the timer was armed, dropped it (it would never fire) or would never fire
    // it. Armed again on the timers of now, for what is left of the head's time.
    if (this.#armed && this.#real && this.#armedOn !== setTimeout) {
      (this.#armedClear as typeof clearTimeout)(this.#timer as NodeJS.Timeout);
      this.#armed = false;
      const head = this.#head;
      if (head !== undefined) this.#arm(Math.max(1, Math.ceil(Math.min(head.at - deadline.at + this.#ms, this.#ms))));
    }
    const tail = this.#tail;
    if (tail === undefined) {
      this.#head = deadline;
      this.#tail = deadline;
      if (!this.#armed) this.#arm(this.#ms);
      // Node's ref() and unref() do nothing when already so.
      else if (this.#real) (this.#timer as NodeJS.Timeout).ref();
    } else {
      tail.next = deadline;
      deadline.prev = tail;
      this.#tail = deadline;
    }
    return deadline;
  }

  /** Drops a deadline whose call settled; one that already expired is ignored. */
  cancel(deadline: Deadline<S>): void {
    if (!deadline.pending) return;
    this.#unlink(deadline);
    if (this.#head === undefined) this.#idle();
  }

  #unlink(deadline: Deadline<S>): void {
    deadline.pending = false;
    this.#size--;
    const { prev, next } = deadline;
    if (prev === undefined) this.#head = next;
    else prev.next = next;
    if (next === undefined) this.#tail = prev;
    else next.prev = prev;
    deadline.prev = undefined;
    deadline.next = undefined;
  }

  /** Nothing pending: the timer must not hold the process open. */
  #idle(): void {
    if (!this.#armed) return;
    if (this.#real) {
      (this.#timer as NodeJS.Timeout).unref();
      return;
    }
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#ownLine) this.#lineAt = this.#line();
    this.#armed = false;
  }

  #arm(delay: number): void {
    if (this.#ownLine) {
      this.#lineAt = this.#line();
      this.#wallAt = this.#clock.now();
      this.#armedFor = delay;
    }
    this.#armed = true;
    if (this.#real) {
      this.#armedOn = setTimeout;
      this.#armedClear = clearTimeout;
      this.#timer = setTimeout(this.#fire, delay);
    } else this.#timer = this.#clock.setTimeout(this.#fire, delay, { ref: true });
  }

  #expireDue(): void {
    // The timer ran its whole run, whatever now() says (a step either way). Late by now() (a
    // loaded loop, or a step forward), the next run is at least an eighth of a length: the line
    // misses each firing's lateness, and one firing per deadline due (many calls in flight, a
    // fraction of a ms apart) added it up past one length. Never early: it only waits longer.
    let late = false;
    if (this.#ownLine) {
      late = this.#clock.now() - this.#wallAt > this.#armedFor;
      this.#lineAt += this.#armedFor;
    }
    this.#armed = false;
    this.#timer = undefined;
    const now = this.#now();
    // More than `ms` ahead: the time source went back (a deadline is `ms` long on a line that
    // does not). Each is brought within `ms` of now; order is kept (min with one bound).
    if (this.#head !== undefined && this.#head.at - now > this.#ms) {
      const bound = now + this.#ms;
      for (let d: Deadline<S> | undefined = this.#head; d !== undefined; d = d.next) if (d.at > bound) d.at = bound;
    }
    // onExpire never throws: the bus catches its listeners' errors, and an AbortSignal reports its own.
    for (let head = this.#head; head !== undefined && head.at <= now; head = this.#head) {
      this.#unlink(head);
      this.#onExpire(head.subject);
    }
    const head = this.#head;
    if (head !== undefined && !this.#armed) {
      const left = head.at - this.#now();
      // Node's timers count whole milliseconds: round up, so the deadline is never early.
      this.#arm(this.#real ? Math.max(1, Math.ceil(left)) : late ? Math.max(left, this.#ms / 8) : left);
    }
  }
}
