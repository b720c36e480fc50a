import {
  attemptOf,
  CallScope,
  DisposedError,
  type ExecuteOptions,
  invokeIn,
  type Operation,
  type Policy,
  parseOptions,
  type Snapshottable,
  type TimerHandle,
} from '@holdfast/core';
import { BulkheadRejectedError } from './errors.js';
import { type BulkheadOptions, bulkheadOptionsSchema } from './options.js';
import { type Common, commonOf, list } from './shared.js';

/** What a bulkhead's `snapshot()` returns. */
export type BulkheadSnapshot = {
  /** The bulkhead's name. */
  readonly name: string;
  /** Calls that may run at once. */
  readonly maxConcurrent: number;
  /** Calls that may wait for a slot. */
  readonly maxQueue: number;
  /** Calls running now. */
  readonly running: number;
  /** Calls waiting for a slot now. */
  readonly queued: number;
  /** Calls refused since the bulkhead was made (full, or a queue timeout). */
  readonly rejected: number;
  /** `warn` while calls wait in the queue, else `pass`. */
  readonly status: 'pass' | 'warn';
};

/** A bulkhead: a `Policy` with a snapshot. */
export interface Bulkhead extends Policy, Snapshottable<BulkheadSnapshot> {
  /** Calls running now. */
  readonly running: number;
  /** Calls waiting for a slot now. */
  readonly queued: number;
}

/**
 * At most `maxConcurrent` calls at once; up to `maxQueue` more wait, first come first served,
 * for at most `queueTimeout`. Others are refused at once with `BulkheadRejectedError`
 * (`E_BULKHEAD_FULL`). A caller that aborts while queued leaves the queue at once.
 *
 * @example
 * const reports = bulkhead({ maxConcurrent: 4, maxQueue: 20, queueTimeout: 2_000 });
 * const pdf = await reports.execute(({ signal }) => render(order, signal));
 */
export function bulkhead(options: BulkheadOptions): Bulkhead {
  const o = parseOptions('bulkhead', bulkheadOptionsSchema, options);
  const b = new SlotBulkhead(commonOf(o), o.maxConcurrent, o.maxQueue, o.queueTimeout);
  b.unregister = list('bulkhead', o.name, b, o.policies);
  return b;
}

/** One queued call: a node of a doubly linked list, so leaving the queue costs O(1). */
interface Waiter {
  prev: Waiter | undefined;
  next: Waiter | undefined;
  readonly admit: () => void;
  /** Ends the call with `error` and detaches its scope. */
  readonly refuse: (error: unknown) => void;
  timer: TimerHandle | undefined;
  stopAbort: (() => void) | undefined;
}

class SlotBulkhead implements Bulkhead {
  readonly name: string;
  #running = 0;
  #queued = 0;
  #rejected = 0;
  #head: Waiter | undefined;
  #tail: Waiter | undefined;
  #disposed = false;
  /** Takes the bulkhead off the registry it listed itself in. */
  unregister: () => void = () => {};

  constructor(
    readonly common: Common,
    readonly maxConcurrent: number,
    readonly maxQueue: number,
    readonly queueTimeout: number | undefined,
  ) {
    this.name = common.name;
  }

  get running(): number {
    return this.#running;
  }

  get queued(): number {
    return this.#queued;
  }

  execute<T>(fn: Operation<T>, options?: ExecuteOptions): Promise<T> {
    // A free slot and no signal (none given, no outer scope): nothing can abort the call. Kept
    // small so that it inlines; everything else takes #admit.
    if (this.#running < this.maxConcurrent && !this.#disposed && !(options instanceof CallScope)) {
      if (!CallScope.abortable(options)) {
        this.#running++;
        // Not `new CallScope(options)`: a signal getter read again may give a signal then, which
        // this path would follow and never leave.
        return this.#runFree(fn, new CallScope(undefined, attemptOf(options)));
      }
    }
    return this.#admit(fn, options);
  }

  #admit<T>(fn: Operation<T>, options: ExecuteOptions | undefined): Promise<T> {
    if (this.#disposed) return Promise.reject(new DisposedError(this.name));
    // Inside a pipeline, the outer policy's scope is our context as it is: nothing to allocate.
    const owned = !(options instanceof CallScope);
    const scope = owned ? new CallScope(options) : options;
    if (scope.aborted) {
      if (owned) scope.release();
      return Promise.reject(scope.reason);
    }
    if (this.#running < this.maxConcurrent) {
      this.#running++;
      return this.#run(fn, scope, owned);
    }
    if (this.#queued >= this.maxQueue) {
      if (owned) scope.release();
      return Promise.reject(this.#refuse('full'));
    }
    return new Promise<void>((admit, refuse) => this.#enqueue(scope, owned, admit, refuse)).then(() =>
      this.#run(fn, scope, owned),
    );
  }

  async #run<T>(fn: Operation<T>, scope: CallScope, owned: boolean): Promise<T> {
    try {
      return await invokeIn(fn, scope);
    } finally {
      if (owned) scope.release();
      this.#handOver();
    }
  }

  /**
   * A call given a free slot and no signal: nothing can abort its scope, so there is no abort
   * rule to keep and nothing to detach from; only the slot to give back. Not an async function:
   * one `then` with handlers bound once per bulkhead costs less than an async frame per call.
   */
  #runFree<T>(fn: Operation<T>, scope: CallScope): Promise<T> {
    let result: T | PromiseLike<T>;
    try {
      result = fn(scope);
    } catch (error) {
      this.#handOver();
      return Promise.reject(error);
    }
    return Promise.resolve(result).then(this.#freed, this.#freedAfterError);
  }

  /** The free path's call settled with a value: its slot goes back, the value stands. */
  readonly #freed = <T>(value: T): T => {
    this.#handOver();
    return value;
  };

  /** The free path's call failed: its slot goes back, the error stands. */
  readonly #freedAfterError = (error: unknown): never => {
    this.#handOver();
    throw error;
  };

  /** A finished call's slot goes to the first in the queue, else back to the pool. */
  #handOver(): void {
    const first = this.#head;
    if (first === undefined) {
      this.#running--;
      return;
    }
    this.#unlink(first);
    first.admit();
  }

  #enqueue(scope: CallScope, owned: boolean, admit: () => void, reject: (error: unknown) => void): void {
    // Every way out of the queue but a slot (a timeout, an abort, dispose()) ends the call here:
    // its scope leaves the caller's signal, or the signal keeps a listener for each such call.
    const refuse = (error: unknown) => {
      if (owned) scope.release();
      reject(error);
    };
    const waiter: Waiter = { prev: this.#tail, next: undefined, admit, refuse, timer: undefined, stopAbort: undefined };
    if (this.#tail) this.#tail.next = waiter;
    else this.#head = waiter;
    this.#tail = waiter;
    this.#queued++;
    if (this.queueTimeout !== undefined) {
      waiter.timer = this.common.clock.setTimeout(() => {
        waiter.timer = undefined;
        this.#unlink(waiter);
        refuse(this.#refuse('queueTimeout'));
      }, this.queueTimeout);
    }
    waiter.stopAbort = scope.onAbort((reason) => {
      this.#unlink(waiter);
      refuse(reason);
    });
  }

  #unlink(waiter: Waiter): void {
    if (waiter.timer !== undefined) this.common.clock.clearTimeout(waiter.timer);
    waiter.timer = undefined;
    waiter.stopAbort?.();
    waiter.stopAbort = undefined;
    if (waiter.prev) waiter.prev.next = waiter.next;
    else this.#head = waiter.next;
    if (waiter.next) waiter.next.prev = waiter.prev;
    else this.#tail = waiter.prev;
    waiter.prev = undefined;
    waiter.next = undefined;
    this.#queued--;
  }

  #refuse(reason: 'full' | 'queueTimeout'): BulkheadRejectedError {
    this.#rejected++;
    const { bus, clock } = this.common;
    if (bus.wants('bulkhead.reject')) {
      bus.emit({
        type: 'bulkhead.reject',
        source: this.name,
        time: clock.now(),
        reason,
        running: this.#running,
        queued: this.#queued,
        code: 'E_BULKHEAD_FULL',
      });
    }
    return new BulkheadRejectedError(this.name, reason, this.maxConcurrent, this.maxQueue);
  }

  snapshot(): BulkheadSnapshot {
    return {
      name: this.name,
      maxConcurrent: this.maxConcurrent,
      maxQueue: this.maxQueue,
      running: this.#running,
      queued: this.#queued,
      rejected: this.#rejected,
      status: this.#queued > 0 ? 'warn' : 'pass',
    };
  }

  /** Refuses every queued call (`DisposedError`) and later ones; running calls finish. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.unregister();
    const error = new DisposedError(this.name);
    for (let w = this.#head; w !== undefined; w = this.#head) {
      this.#unlink(w);
      w.refuse(error);
    }
  }
}
