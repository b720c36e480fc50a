import {
  type Bus,
  CallScope,
  type Clock,
  type ExecuteOptions,
  elapsedTime,
  errorLabel,
  bus as globalBus,
  HoldfastConfigError,
  parseOptions,
  realClock,
  shieldBus,
  TimeoutError,
  type TimerHandle,
} from '@holdfast/core';
import type { z } from 'zod';
import { fingerprintOf } from './codec.js';
import {
  IdempotencyAbortedError,
  IdempotencyConflictError,
  IdempotencyMismatchError,
  IdempotencyValueError,
  StoreUnavailableError,
} from './errors.js';
import { type HeldLease, LeaseKeeper, sleep } from './lease.js';
import { idempotentOptionsSchema } from './options.js';
import type { ClaimResult, IdempotencyStore } from './store.js';

/** What the wrapped function is told about its run. */
export interface IdempotentContext {
  /** The idempotency key of this run. */
  readonly key: string;
  /**
   * The fencing token of this run: pass it to a downstream that can reject stale writers.
   * `undefined` when the store failed and `fail-open` let the call run unprotected.
   */
  readonly token: string | undefined;
  /** True when a previous owner's lease ran out and this run took the key over. */
  readonly takeover: boolean;
  /**
   * Aborts when the caller's signal does (with its reason); never, for a caller that gave none.
   * Follow it to stop early, but know what a throw then means: if the function read this signal
   * and throws after the abort, its effect may have happened, so the key is not released: a
   * repeat gets `E_IDEMPOTENCY_ABORTED`, never a second run (unless it called
   * {@link nothingDone}). A value returned is stored as ever.
   */
  readonly signal: AbortSignal;
  /**
   * Says that this run has done nothing: its effect has not begun. Call it before throwing from
   * a step that followed `signal` but changed nothing (a lookup, a quote): a throw after the
   * abort then releases the key, and a repeat runs the function again. Not calling it keeps
   * the `aborted` verdict. It is the function's word: called after the effect began, a repeat
   * runs the effect a second time. It cannot be taken back: called in a step the run goes on
   * from (a retry loop inside the function), it covers the effect that follows too, so call it
   * only where the run throws. It changes nothing else: a repeat during the run still
   * conflicts or waits, and a value returned is stored.
   */
  readonly nothingDone: () => void;
}

/** Options of {@link idempotent}. */
export type IdempotentOptions<I> = Omit<z.input<typeof idempotentOptionsSchema>, 'key' | 'fingerprint'> & {
  /** The idempotency key of an input, e.g. `(msg) => msg.id`. Computed before the function runs. */
  readonly key: (input: I) => string;
  /**
   * What must match for a repeat to be a replay. Computed before the function runs.
   * @default fingerprintOf(input): SHA-256 of the input's canonical JSON
   */
  readonly fingerprint?: (input: I) => string;
};

/**
 * Runs `fn` once per key. A repeat of a completed key returns the stored result; a repeat while
 * the first call runs fails with `E_IDEMPOTENCY_CONFLICT` (or waits, with `wait`); a repeat with a
 * different fingerprint fails with `E_IDEMPOTENCY_MISMATCH`. If `fn` throws, nothing is stored and
 * the key is released, so a retry runs it again; unless it read `ctx.signal` and throws after the
 * caller aborted: it may have stopped half way, so a repeat gets `E_IDEMPOTENCY_ABORTED` (a
 * function that knows it did nothing calls `ctx.nothingDone()` before throwing, and the key is
 * released).
 *
 * @example
 * const charge = idempotent((order: Order) => payments.charge(order), {
 *   store: memoryStore(),
 *   key: (order) => order.id,
 * });
 * await charge(order); // runs
 * await charge(order); // replays the stored result
 */
export function idempotent<I, R>(
  fn: (input: I, ctx: IdempotentContext) => R | PromiseLike<R>,
  options: IdempotentOptions<I>,
): (input: I, options?: ExecuteOptions) => Promise<Awaited<R>> {
  if (typeof fn !== 'function') throw new TypeError('idempotent: the first argument must be the function to run');
  const o = parseOptions('idempotent', idempotentOptionsSchema, options);
  share(o.store, o.namespace, options.name, fn);
  const runner = new Runner<I, Awaited<R>>(
    fn as (input: I, ctx: IdempotentContext) => Awaited<R> | PromiseLike<Awaited<R>>,
    o.store,
    options.key,
    options.fingerprint ?? fingerprintOf,
    o.leaseMs,
    o.maxRunMs,
    o.ttlMs,
    o.wait,
    o.name,
    shieldBus(o.bus ?? globalBus, o.name),
    o.clock ?? realClock,
    o.namespace === undefined ? '' : `${o.namespace}:`,
    o.completeTimeoutMs,
  );
  return (input, callOptions) => runner.call(input, callOptions);
}

/** Per store, the claims abandoned by callers before their answer came (see Runner#leaving). */
const abandoned = new WeakMap<object, Map<string, Promise<void>>>();

/** Per store, the function each namespace ('' for none) serves: its name, or the function itself if unnamed. */
const served = new WeakMap<object, Map<string, { readonly id: unknown; readonly name: string }>>();

/**
 * Refuses two functions on a store unless each has a namespace of its own: keyed alike (`charge`
 * and `ship`, both by the order id), they shared their records, and `ship(order)` returned
 * charge's receipt without running. (None beside one: a key of its own may read
 * `charge:A-1001`.) A function is its `name`; one without is itself (two unnamed ones are two
 * functions). One name wrapped again (instances of a service in one process, a wrapper made per
 * request, a module loaded twice) is one function, and shares its records by design.
 */
function share(store: object, namespace: string | undefined, name: string | undefined, fn: unknown): void {
  let functions = served.get(store);
  if (functions === undefined) served.set(store, (functions = new Map()));
  const ns = namespace ?? '';
  const id = name ?? fn;
  for (const [other, them] of functions) {
    if (them.id === id || (other !== ns && other !== '' && ns !== '')) continue;
    const who = (n: string | undefined) => (n === undefined ? 'an unnamed function' : `'${n}'`);
    throw new HoldfastConfigError(name ?? 'idempotent', [
      {
        path: 'namespace',
        message: `${ns === '' ? 'none given' : `'${ns}'`}, and this store already serves ${who(them.name)}${other === '' ? ' without one' : ` in '${other}'`}: give each function on a shared store a namespace of its own, or they replay each other's results (one function wrapped again: give it one name)`,
      },
    ]);
  }
  functions.set(ns, { id, name: name as string });
}

/** One call that can be aborted: its scope, and its result once in hand (then an abort returns it). */
interface Caller<R> {
  readonly scope: CallScope;
  result: { readonly value: R } | undefined;
}

/**
 * `signal` as an own, enumerable getter: a spread copy of the context (`{ ...ctx }`) carries it,
 * as the type says. Still made only when read: an AbortController per call costs more than the
 * rest of the context.
 */
const SIGNAL: PropertyDescriptor = {
  get(this: RunContext): AbortSignal {
    return RunContext.signalOf(this);
  },
  enumerable: true,
};

/** What the function is given; its signal is made only if read, and reading it is remembered. */
class RunContext implements IdempotentContext {
  declare readonly signal: AbortSignal;
  // Its own closure, not a method: it works destructured (`({ nothingDone }) => ...`) and copied.
  readonly nothingDone: () => void;
  // The caller's scope, or the run's lease (whose scope is made only when its signal is read).
  readonly #caller: { readonly signal: AbortSignal } | undefined;
  #own: AbortController | undefined;
  #followed = false;
  #nothingDone = false;

  constructor(
    readonly key: string,
    readonly token: string | undefined,
    readonly takeover: boolean,
    caller: { readonly signal: AbortSignal } | undefined,
  ) {
    this.#caller = caller;
    Object.defineProperty(this, 'signal', SIGNAL);
    this.nothingDone = () => {
      this.#nothingDone = true;
    };
  }

  /** The run's signal, made on first read; the read is remembered. */
  static signalOf(ctx: RunContext): AbortSignal {
    ctx.#followed = true;
    if (ctx.#caller !== undefined) return ctx.#caller.signal;
    ctx.#own ??= new AbortController();
    return ctx.#own.signal;
  }

  /**
   * What `JSON.stringify` writes (a logger's `{ ctx }`): the fields, not `signal`. Reading the
   * getter counts as following the signal: a logged context would turn a plain failure after the
   * abort into the `aborted` verdict, and make an AbortController for a call that had none.
   */
  toJSON(): { key: string; token: string | undefined; takeover: boolean } {
    return { key: this.key, token: this.token, takeover: this.takeover };
  }

  /**
   * Whether a throw after the abort may have left the effect half done: the function read
   * `signal` (it may have stopped part way) and did not say it had done nothing.
   */
  static mayHaveActed(ctx: RunContext): boolean {
    return ctx.#followed && !ctx.#nothingDone;
  }
}

/**
 * A run's lease as the keeper renews it, and the scope its signal follows: made only when the
 * signal is read or the run is capped. A run that ends before the first tick (most do) makes no
 * scope and no closure: one object with the keeper's calls as methods.
 */
class RunLease implements HeldLease {
  older: HeldLease | undefined = undefined;
  newer: HeldLease | undefined = undefined;
  held = false;
  /** It ran past `maxRunMs`: its verdict is `aborted`. */
  capped = false;
  /** Its function returned: renewed until its value is stored, never capped. */
  returned = false;
  #scope: CallScope | undefined;
  #caller: CallScope | undefined;

  constructor(
    readonly runner: Runner<unknown, unknown>,
    readonly stored: string,
    readonly token: string,
    readonly since: number,
    caller: CallScope | undefined,
  ) {
    this.#caller = caller;
  }

  /** Aborts with its caller's signal, or at the cap. */
  get signal(): AbortSignal {
    return this.#scopeNow().signal;
  }

  #scopeNow(): CallScope {
    this.#scope ??= new CallScope(this.#caller);
    return this.#scope;
  }

  /** The run settled: its scope follows its caller no longer (one made later follows nothing, as a released one). */
  release(): void {
    if (this.#scope !== undefined) this.#scope.release();
    else if (this.#caller?.aborted === false) this.#caller = undefined;
  }

  lost(): void {
    this.runner.leaseLost(this.stored, 'notOwner');
  }

  async cap(): Promise<boolean> {
    // Returned within maxRunMs, its value being stored (retried through a store's blip): that is
    // its verdict, not `aborted`. Renewed meanwhile (the keeper renews a lease it caps).
    if (this.returned) return false;
    const { runner } = this;
    if (!this.capped) runner.leaseLost(this.stored, 'maxRunMs');
    this.capped = true;
    // Stored before the signal aborts: the run may stop at once, and then no repeat may run it.
    let stored: boolean;
    try {
      stored = await runner.store.complete(this.stored, this.token, { kind: 'aborted' }, runner.ttlMs);
    } catch (error) {
      this.failed(error, 'complete'); // tried again at the next tick
      return false;
    }
    if (stored) this.#scopeNow().abort(new TimeoutError(runner.name, runner.maxRunMs));
    return true;
  }

  failed(error: unknown, operation: 'extend' | 'complete'): void {
    this.runner.storeError(this.stored, operation, error, true);
  }
}

class Runner<I, R> {
  // Waits are measured on it: a step of the wall clock neither ends one at once nor adds an hour to it.
  readonly #elapsed: () => number;
  // Renews the leases of this function's live runs; none for a store without `extend`.
  readonly #keeper: LeaseKeeper | undefined;
  // Per stored key, a claim whose caller left before its answer came: released when it comes.
  // A new call for the key waits for that, or it reached the store first and found its own
  // caller's abandoned claim in progress (E_IDEMPOTENCY_CONFLICT for a lease). One per store:
  // a retry may come through another wrapper of the function (one made per request).
  readonly #leaving: Map<string, Promise<void>>;

  constructor(
    readonly fn: (input: I, ctx: IdempotentContext) => R | PromiseLike<R>,
    readonly store: IdempotencyStore,
    readonly keyOf: (input: I) => string,
    readonly fingerprintOf: (input: I) => string,
    readonly leaseMs: number,
    readonly maxRunMs: number,
    readonly ttlMs: number,
    readonly wait: { readonly timeout: number; readonly interval: number } | undefined,
    readonly name: string,
    readonly bus: Bus,
    readonly clock: Clock,
    // `namespace:`, or '' for none: what comes before each key in the store.
    readonly prefix: string,
    readonly completeTimeoutMs: number,
  ) {
    this.#elapsed = elapsedTime(clock);
    let leaving = abandoned.get(store);
    if (leaving === undefined) abandoned.set(store, (leaving = new Map()));
    this.#leaving = leaving;
    if (LeaseKeeper.renews(store, leaseMs, maxRunMs)) {
      this.#keeper = new LeaseKeeper(store, clock, this.#elapsed, leaseMs, maxRunMs, name);
    }
  }

  /**
   * Runs the call, and releases its caller at once when `signal` aborts, whatever step it is in
   * (a store's command cannot be called back): the call goes on without it, its result stored.
   */
  call(input: I, options: ExecuteOptions | undefined): Promise<R> {
    // A pipeline's context is linked to as it is: reading its `signal` made an AbortController
    // per call, aborted or not.
    if (!CallScope.abortable(options)) return this.#call(input, undefined);
    // Followed through a scope, as every policy follows a caller's signal: a shutdown signal
    // shared by more than 10 waiting calls would have Node warn of a leak where there is none.
    const caller: Caller<R> = { scope: new CallScope(options), result: undefined };
    const call = this.#call(input, caller);
    return new Promise((resolve, reject) => {
      // A result already in hand is returned: an abort after it rejected a call that succeeded.
      caller.scope.onAbort((reason) => (caller.result ? resolve(caller.result.value) : reject(reason)));
      call.then(
        (value) => {
          caller.scope.release();
          resolve(value);
        },
        (error: unknown) => {
          caller.scope.release();
          reject(error);
        },
      );
    });
  }

  async #call(input: I, caller: Caller<R> | undefined): Promise<R> {
    // Key and fingerprint are fixed now, from the input as it arrived: whatever fn does to its
    // input later cannot change which record it completes.
    const key = this.keyOf(input);
    if (typeof key !== 'string' || key === '') {
      throw new IdempotencyValueError('key', `key(input) must return a non-empty string (got ${String(key)})`);
    }
    const fingerprint = this.fingerprintOf(input);
    if (typeof fingerprint !== 'string') {
      throw new IdempotencyValueError(
        'fingerprint',
        `fingerprint(input) must return a string (got ${typeof fingerprint})`,
      );
    }
    const deadline = this.wait === undefined ? undefined : this.#elapsed() + this.wait.timeout;
    const scope = caller?.scope;
    const stored = this.prefix + key;
    for (;;) {
      const leaving = this.#leaving.get(stored);
      // For a lease at most: a claim whose answer never comes (a lost reply) held every later call
      // of its key for good; past a lease, what it claimed is free anyway.
      if (leaving !== undefined) await this.#atMost(leaving, this.leaseMs);
      if (scope?.aborted) throw scope.reason;
      let claim: ClaimResult | undefined;
      if (scope === undefined) claim = await this.#claim(stored, fingerprint);
      else {
        // Left before the answer came: a claim it grants is released, and new calls for the key
        // wait until it is (#leave). The check below runs in the same step as the answer's, so
        // no abort comes between the hook's end and it.
        const claiming = this.#claim(stored, fingerprint);
        const stop = scope.onAbort((reason) => this.#leave(stored, claiming, reason));
        try {
          claim = await claiming;
        } finally {
          stop();
        }
        if (scope.aborted) throw scope.reason;
      }
      if (claim === undefined) {
        return this.#hold(caller, await this.fn(input, new RunContext(key, undefined, false, scope)));
      }
      switch (claim.status) {
        case 'claimed':
          return this.#run(input, key, stored, claim.token, claim.takeover, caller);
        case 'completed': {
          if (this.bus.wants('idempotency.replay')) {
            this.bus.emit(this.#base('idempotency.replay', { key, createdAt: claim.record.createdAt }));
          }
          const { outcome } = claim.record;
          if (outcome.kind === 'aborted') throw new IdempotencyAbortedError(this.name, key);
          // A key completed by the HTTP middleware replays its response object.
          return this.#hold(caller, (outcome.kind === 'value' ? outcome.value : outcome) as R);
        }
        case 'mismatch':
          if (this.bus.wants('idempotency.mismatch')) this.bus.emit(this.#base('idempotency.mismatch', { key }));
          throw new IdempotencyMismatchError(this.name, key);
        case 'inProgress': {
          const left = deadline === undefined ? 0 : deadline - this.#elapsed();
          if (left <= 0) {
            if (this.bus.wants('idempotency.conflict')) {
              this.bus.emit(this.#base('idempotency.conflict', { key, waited: deadline !== undefined }));
            }
            throw new IdempotencyConflictError(this.name, key, claim.retryAfterMs);
          }
          await this.#sleep(Math.min(left, this.wait?.interval ?? left), caller);
        }
      }
    }
  }

  /** Claims the key; `undefined` means the store failed and `fail-open` says run anyway. */
  async #claim(key: string, fingerprint: string): Promise<ClaimResult | undefined> {
    try {
      return await this.store.claim(key, fingerprint, this.leaseMs);
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
      // A store that refuses to claim (it would break the guarantee) is no outage to run through.
      const failOpen = this.store.onStoreError === 'fail-open' && !error.refused;
      this.storeError(key, 'claim', error, failOpen);
      if (failOpen) return undefined;
      throw error;
    }
  }

  /**
   * Its caller left while the claim was unanswered: a claim the answer grants is released, and
   * new calls for the key wait until it is. Sent after the answer, the release came behind the
   * caller's own retry, which found the abandoned claim in progress (a conflict for a lease).
   */
  #leave(stored: string, claiming: Promise<ClaimResult | undefined>, reason: unknown): void {
    const left: Promise<void> = claiming.then(
      (claim) => (claim?.status === 'claimed' ? this.#release(stored, claim.token, reason) : undefined),
      () => undefined,
    );
    this.#leaving.set(stored, left);
    void left.then(() => {
      if (this.#leaving.get(stored) === left) this.#leaving.delete(stored);
    });
  }

  /** `promise`, or `ms` later, whichever comes first. */
  async #atMost(promise: Promise<void>, ms: number): Promise<void> {
    let timer: TimerHandle | undefined;
    await Promise.race([
      promise,
      new Promise<void>((resolve) => {
        timer = this.clock.setTimeout(resolve, ms, { ref: true });
      }),
    ]);
    this.clock.clearTimeout(timer as TimerHandle);
  }

  /** The result is in hand: from now on, an abort of `caller` returns it. */
  #hold(caller: Caller<R> | undefined, value: R): R {
    if (caller !== undefined) caller.result = { value };
    return value;
  }

  async #run(
    input: I,
    key: string,
    stored: string,
    token: string,
    takeover: boolean,
    caller: Caller<R> | undefined,
  ): Promise<R> {
    if (this.bus.wants('idempotency.claim')) this.bus.emit(this.#base('idempotency.claim', { key, takeover }));
    if (takeover && this.bus.wants('idempotency.takeover')) {
      this.bus.emit(this.#base('idempotency.takeover', { key }));
    }
    // A listener of those events may have aborted the caller: then nobody runs it, as after a late claim.
    if (caller?.scope.aborted) {
      await this.#release(stored, token, caller.scope.reason);
      throw caller.scope.reason;
    }
    const lease = this.#keeper === undefined ? undefined : this.#lease(stored, token, caller);
    const ctx = new RunContext(key, token, takeover, lease ?? caller?.scope);
    let value: R;
    try {
      value = await this.fn(input, ctx);
    } catch (error) {
      // Held past maxRunMs: its verdict is `aborted`, whatever it did since. Or it followed the
      // abort and stopped part way: its effect may have happened, so a retry must not run it
      // again. A function that never read the signal failed on its own; one that said it had done
      // nothing (ctx.nothingDone()) has its word taken. The verdict is stored with the lease
      // still renewed (and no cap): dropped first, a store's blip while it was retried let a
      // repeat take the key over and run the function a second time.
      if (lease?.capped || (caller?.scope.aborted && RunContext.mayHaveActed(ctx))) {
        if (lease !== undefined) lease.returned = true;
        await this.#abort(stored, token);
        this.#settled(lease);
      } else {
        this.#settled(lease);
        await this.#release(stored, token, error);
      }
      throw error;
    }
    this.#hold(caller, value);
    if (lease !== undefined) lease.returned = true;
    if (lease?.capped) {
      // Its value came after the cap stored `aborted`: a repeat gets that, not this value.
      await this.#abort(stored, token);
      this.#settled(lease);
      return value;
    }
    let done: boolean;
    try {
      // Its lease is still renewed while this is retried: a blip of the store while storing
      // would otherwise let a repeat take the key over and run the function a second time.
      // Tried once at once (no closure, no frame of #persist's on every call); retried only after
      // a store failure.
      try {
        done = await this.store.complete(stored, token, { kind: 'value', value }, this.ttlMs);
      } catch (first) {
        done = await this.#persist(
          stored,
          'complete',
          true,
          () => this.store.complete(stored, token, { kind: 'value', value }, this.ttlMs),
          Promise.reject(first),
        );
      }
    } catch (error) {
      this.#settled(lease);
      if (error instanceof IdempotencyValueError) {
        // Nothing can be replayed: fail like fn did, so the caller finds out at once.
        await this.#release(stored, token, error);
        throw error;
      }
      // fn ran and its effect happened: the caller gets its result. The record stays in
      // progress until its lease ends, so no duplicate runs before then.
      return value;
    }
    this.#settled(lease);
    if (!done && this.bus.wants('idempotency.staleCompletion')) {
      this.bus.emit(this.#base('idempotency.staleCompletion', { key }));
    }
    return value;
  }

  /**
   * Runs a store command, retrying a store failure (a failover, a lost reply) for up to
   * `completeTimeoutMs`: safe to resend, each is fenced by the run's token. Each failure is
   * reported; the last one is thrown.
   */
  async #persist<T>(
    stored: string,
    operation: 'complete',
    failOpen: boolean,
    command: () => Promise<T>,
    first?: Promise<T>,
  ): Promise<T> {
    // Counted from the first failure; `first`: the caller's own first try.
    let deadline: number | undefined;
    for (let attempt = 0; ; attempt++) {
      try {
        return await (first ?? command());
      } catch (error) {
        first = undefined;
        if (error instanceof IdempotencyValueError) throw error;
        this.storeError(stored, operation, error, failOpen);
        deadline ??= this.#elapsed() + this.completeTimeoutMs;
        const left = deadline - this.#elapsed();
        if (!(error instanceof StoreUnavailableError) || left <= 0) throw error;
        await sleep(this.clock, Math.min(100 * 2 ** attempt, 1_000, left), true);
      }
    }
  }

  /**
   * Renews the run's lease while it runs. Its signal aborts at `maxRunMs` (after `aborted` is
   * stored for the key) or when its caller aborts.
   */
  #lease(stored: string, token: string, caller: Caller<R> | undefined): RunLease {
    const lease = new RunLease(this as Runner<unknown, unknown>, stored, token, this.#elapsed(), caller?.scope);
    (this.#keeper as LeaseKeeper).hold(lease);
    return lease;
  }

  #settled(lease: RunLease | undefined): void {
    if (lease === undefined) return;
    (this.#keeper as LeaseKeeper).drop(lease);
    lease.release();
  }

  /** @internal Told by a run's lease (see {@link RunLease}). */
  leaseLost(stored: string, reason: 'notOwner' | 'maxRunMs'): void {
    if (this.bus.wants('idempotency.leaseLost')) {
      this.bus.emit(this.#base('idempotency.leaseLost', { key: stored.slice(this.prefix.length), reason }));
    }
  }

  /**
   * Stores `aborted` for the key: a repeat gets E_IDEMPOTENCY_ABORTED, never a second run. If the
   * store fails past `completeTimeoutMs`, the key stays claimed until its lease ends. Reported,
   * never thrown.
   */
  async #abort(stored: string, token: string): Promise<void> {
    const key = stored.slice(this.prefix.length);
    try {
      if (
        !(await this.#persist(stored, 'complete', false, () =>
          this.store.complete(stored, token, { kind: 'aborted' }, this.ttlMs),
        ))
      ) {
        if (this.bus.wants('idempotency.staleCompletion'))
          this.bus.emit(this.#base('idempotency.staleCompletion', { key }));
        return;
      }
      if (this.bus.wants('idempotency.lost')) this.bus.emit(this.#base('idempotency.lost', { key, sent: undefined }));
    } catch {
      // Reported by #persist.
    }
  }

  /**
   * Releases the key after a failure, so a retry runs. Tried once: its caller is waiting to hear
   * of the failure, and a release lost leaves the key in progress until its lease ends (a
   * conflict, never a second run). A store error here is reported, not thrown.
   */
  async #release(stored: string, token: string, cause: unknown): Promise<void> {
    try {
      const released = await this.store.release(stored, token);
      if (released && this.bus.wants('idempotency.release')) {
        this.bus.emit(
          this.#base('idempotency.release', { key: stored.slice(this.prefix.length), code: errorLabel(cause) }),
        );
      }
    } catch (error) {
      this.storeError(stored, 'release', error, false);
    }
  }

  /** @internal Reports a store failure (a lease's renewal too). */
  storeError(
    stored: string,
    operation: 'claim' | 'complete' | 'release' | 'extend',
    error: unknown,
    failOpen: boolean,
  ): void {
    if (this.bus.wants('idempotency.storeError')) {
      const key = stored.slice(this.prefix.length);
      this.bus.emit(this.#base('idempotency.storeError', { key, operation, code: errorLabel(error), failOpen }));
    }
  }

  // Object.assign, not a spread: on Node 20, V8 gives an object spread into a literal with more
  // properties a map of its own, about 1 µs and a collector's burden per event.
  #base<K extends string, F extends object>(
    type: K,
    fields: F,
  ): { readonly type: K; readonly source: string; readonly time: number } & F {
    return Object.assign({ type, source: this.name, time: this.clock.now() } as const, fields);
  }

  #sleep(ms: number, caller: Caller<R> | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = this.clock.setTimeout(
        () => {
          stop?.();
          resolve();
        },
        ms,
        { ref: true },
      );
      const stop = caller?.scope.onAbort((reason) => {
        this.clock.clearTimeout(timer);
        reject(reason);
      });
    });
  }
}
