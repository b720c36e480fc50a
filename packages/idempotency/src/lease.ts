import type { Clock, TimerHandle } from '@holdfast/core';
import { StoreUnavailableError } from './errors.js';
import { inProcess, type NowToken, type StoreNow, storeToken } from './memory-store.js';
import type { IdempotencyStore } from './store.js';

/**
 * One live run whose lease is renewed: its key as the store sees it, its token, and what to do
 * when it ends. The keeper links its leases through them (a Set's entry, added and deleted once a
 * run, cost its table a rehash every few runs: about 120 bytes a claimed request): each class
 * declares the links itself, `undefined`, `undefined` and `false` (a base class to extend cost
 * each claimed request a derived construction V8 did not inline, about 180 instructions).
 */
export interface HeldLease {
  /** The key as the store sees it. */
  readonly stored: string;
  /** A number where the store's calls without a promise claimed it (see NowToken). */
  readonly token: NowToken;
  /** When the key was claimed, on the keeper's monotonic line. */
  readonly since: number;
  /** @internal The keeper's links: its neighbours while held. */
  older: HeldLease | undefined;
  newer: HeldLease | undefined;
  /** @internal Whether a keeper renews it now. */
  held: boolean;
  /** `extend` said the token no longer owns the key (taken over, or gone): the run is no longer renewed. */
  lost(): void;
  /**
   * The run held its key for `maxRunMs`: store its verdict (a repeat must not run it again). True
   * when that is settled (stored, or refused: the key is no longer the run's); false to try again
   * at the next tick, the lease renewed meanwhile.
   */
  cap(): Promise<boolean>;
  /** A renewal, or the cap's verdict (`complete`), failed (the store was unreachable): tried again at the next tick. */
  failed(error: unknown, operation: 'extend' | 'complete'): void;
}

/**
 * Keeps the leases of live runs: one unref'd timer per keeper renews every run's lease each
 * `leaseMs / 3` (as Redisson's lock watchdog does), so a run slower than `leaseMs` keeps its key
 * while its process lives, and loses it `leaseMs` after the last renewal once the process is dead
 * or frozen. A renewal that fails is tried again at the next tick; the store's `extend` answering
 * false ends renewal (the key is no longer the run's). Past `maxRunMs` a run is capped (see
 * {@link HeldLease.cap}) instead of renewed. Only for a store that has `extend`.
 */
export class LeaseKeeper {
  // The held leases, oldest first, linked through themselves (see HeldLease).
  #oldest: HeldLease | undefined;
  #newest: HeldLease | undefined;
  #size = 0;
  // The lease a tick visits next: moved on when that one is dropped meanwhile.
  #next: HeldLease | undefined;
  // Renewals (and caps) still waiting for the store, by when they were sent: not sent again
  // until they answer, or until they have been out for a whole tick.
  readonly #busy = new Map<HeldLease, number>();
  #timer: TimerHandle | undefined;
  readonly #interval: number;

  constructor(
    readonly store: IdempotencyStore,
    readonly clock: Clock,
    readonly elapsed: () => number,
    readonly leaseMs: number,
    readonly maxRunMs: number,
    /** Names the keeper's owner in the errors it makes. */
    readonly name: string,
  ) {
    this.#interval = Math.max(1, Math.floor(leaseMs / 3));
  }

  /** Whether `store` can renew leases at all (a custom store without `extend` keeps fixed leases). */
  static renews(store: IdempotencyStore, leaseMs: number, maxRunMs: number): boolean {
    return typeof store.extend === 'function' && maxRunMs > leaseMs;
  }

  /** How many runs are renewed now. */
  get size(): number {
    return this.#size;
  }

  /** Renews `lease` until {@link drop}ped, lost or capped. */
  hold(lease: HeldLease): void {
    if (lease.held) return;
    lease.held = true;
    lease.older = this.#newest;
    if (this.#newest === undefined) this.#oldest = lease;
    else this.#newest.newer = lease;
    this.#newest = lease;
    this.#size++;
    this.#schedule();
  }

  /**
   * The run settled (completed, released, aborted, lost): its lease is no longer renewed. The
   * timer is left to find nothing and stop: a fast run starts and clears no timer of its own.
   */
  drop(lease: HeldLease): void {
    if (!lease.held) return;
    if (lease === this.#next) this.#next = lease.newer;
    const { older, newer } = lease;
    if (older === undefined) this.#oldest = newer;
    else older.newer = newer;
    if (newer === undefined) this.#newest = older;
    else newer.older = older;
    // Unlinked: a dropped lease keeps no other alive.
    lease.older = undefined;
    lease.newer = undefined;
    lease.held = false;
    this.#size--;
  }

  #schedule(): void {
    if (this.#timer !== undefined) return;
    this.#timer = this.clock.setTimeout(() => this.#tick(), this.#interval);
  }

  #tick(): void {
    this.#timer = undefined;
    const now = this.elapsed();
    // A store that answers in this process (memoryStore(), its methods its own) renews at once:
    // no promise per run and tick, nothing to wait for. Asked at each tick: a spy patched on the
    // store since is called as any store's.
    const sync = inProcess(this.store);
    // Visited oldest first; one dropped meanwhile is not visited, one held meanwhile may be.
    for (let lease = this.#oldest; lease !== undefined; lease = this.#next) {
      this.#next = lease.newer;
      if (sync !== undefined && now - lease.since < this.maxRunMs && !this.#busy.has(lease)) {
        this.#renewNow(sync, lease);
        continue;
      }
      const sent = this.#busy.get(lease);
      if (sent !== undefined) {
        if (now - sent < this.#interval) continue;
        // Out for a whole tick (a store that never answers): failed, and sent again. Waiting on
        // it stopped every renewal, and the cap, for good: the key went to a retry. Sent at the
        // cap, what is out is its verdict (its renewal is waited for a tick at most).
        const operation = sent - lease.since >= this.maxRunMs ? 'complete' : 'extend';
        const reason = `no answer within ${this.#interval} ms`;
        lease.failed(new StoreUnavailableError(this.name, operation, lease.stored, reason), operation);
      }
      this.#busy.set(lease, now);
      const done = () => {
        if (this.#busy.get(lease) === now) this.#busy.delete(lease);
      };
      if (now - lease.since >= this.maxRunMs) this.#cap(lease).then(done, done);
      else this.#renew(lease).then(done, done);
    }
    this.#next = undefined;
    if (this.#size > 0) this.#schedule();
  }

  #renewNow(sync: StoreNow, lease: HeldLease): void {
    let owned: boolean;
    try {
      owned = sync.extend(lease.stored, lease.token, this.leaseMs);
    } catch (error) {
      lease.failed(error, 'extend');
      return;
    }
    if (owned) return;
    this.drop(lease);
    lease.lost();
  }

  async #renew(lease: HeldLease): Promise<void> {
    const extend = this.store.extend as NonNullable<IdempotencyStore['extend']>;
    let owned: boolean;
    try {
      owned = await extend.call(this.store, lease.stored, storeToken(lease.token), this.leaseMs);
    } catch (error) {
      if (lease.held) lease.failed(error, 'extend');
      return;
    }
    // Settled while the renewal was out: its end, not the renewal's answer, says what happened.
    if (owned || !lease.held) return;
    this.drop(lease);
    lease.lost();
  }

  async #cap(lease: HeldLease): Promise<void> {
    // Renewed first: the lease may not end while the verdict is being stored. A renewal the store
    // does not answer within a tick is not waited for: the verdict is stored all the same.
    let timer: TimerHandle | undefined;
    await Promise.race([
      this.#renew(lease),
      new Promise<void>((resolve) => {
        timer = this.clock.setTimeout(resolve, this.#interval);
      }),
    ]);
    this.clock.clearTimeout(timer as TimerHandle);
    if (!lease.held) return;
    let settled: boolean;
    try {
      settled = await lease.cap();
    } catch {
      settled = false;
    }
    if (settled) this.drop(lease);
  }
}

/** Waits `ms` on `clock`; `ref`: the wait keeps the process alive (a result still to store). */
export function sleep(clock: Clock, ms: number, ref?: boolean): Promise<void> {
  return new Promise((resolve) => clock.setTimeout(resolve, ms, ref ? { ref } : undefined));
}
