/**
 * Outside review (s36c) of commits 56890f11 and 3bff225b (namespace + share(), completion
 * retries with the lease kept, #leave / the per-store `abandoned` map, `refused`).
 *
 * One `it` per bug (each fails on the current code), then attacks that held (labelled HELD).
 */
import { ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import {
  IdempotencyConflictError,
  type IdempotencyStore,
  idempotent,
  memoryStore,
  StoreUnavailableError,
} from '../src/index.js';

const settledWithin = <T>(p: Promise<T>, ms: number): Promise<{ settled: boolean; value?: unknown }> =>
  Promise.race([
    p.then(
      (value) => ({ settled: true, value }),
      (value: unknown) => ({ settled: true, value }),
    ),
    new Promise<{ settled: boolean }>((resolve) => setTimeout(() => resolve({ settled: false }), ms)),
  ]);

describe('review s36c: idempotent()', { timeout: 10_000 }, () => {
  /**
   * BUG 1: one claim whose reply never comes, abandoned by its caller, blocks every later call
   * for that key in the process forever, even after the store answers again; `wait.timeout`
   * does not bound it, and a call without a signal never settles.
   *
   * Symptom: caller A aborts while its claim is unanswered (a custom store's lost reply, a
   * hung connection that later reconnects). Caller B (no signal) and caller C
   * (`wait: { timeout: 50 }`) never settle: no value, no E_IDEMPOTENCY_CONFLICT, though the
   * store answers their claims at once. Before 56890f11 they reached the store and got an answer.
   * Root cause: src/idempotent.ts:365-366 (`const leaving = this.#leaving.get(stored); if
   * (leaving !== undefined) await leaving;`): the wait is unbounded, not raced with the wait's
   * deadline, leaseMs or the caller's scope; #leave (src/idempotent.ts:434-444) only removes the
   * entry when the abandoned claim (and its release) settle, which may be never.
   * Fix: bound the wait: race `leaving` with a timer of min(leaseMs, what is left of
   * wait.timeout) (the abandoned claim's lease has ended by then anyway), then claim as usual
   * (conflict/inProgress rules apply); or drop the map entry after leaseMs.
   */
  it('BUG 1: an abandoned claim that never answers hangs every later call for the key', async () => {
    const inner = memoryStore();
    let claims = 0;
    const store: IdempotencyStore = {
      onStoreError: 'fail-closed',
      claim: (...a) => (++claims === 1 ? new Promise(() => {}) : inner.claim(...a)),
      release: (...a) => inner.release(...a),
      complete: (...a) => inner.complete(...a),
    };
    try {
      let runs = 0;
      const fn = idempotent(
        async () => {
          runs++;
          return 'ok';
        },
        { store, key: () => 'k', leaseMs: 200, name: 's36c-hang' },
      );
      const ac = new AbortController();
      const a = fn(1, { signal: ac.signal }).catch((e: unknown) => e);
      await new Promise((r) => setTimeout(r, 10));
      ac.abort(new Error('client left'));
      await a;
      const waiting = idempotent(async () => 'w', {
        store,
        key: () => 'k',
        leaseMs: 200,
        name: 's36c-hang',
        wait: { timeout: 50, interval: 10 },
      });
      const [b, c] = await Promise.all([settledWithin(fn(1), 1_500), settledWithin(waiting(1), 1_500)]);
      expect({ b: b.settled, c: c.settled }).toEqual({ b: true, c: true });
      expect(runs).toBeLessThanOrEqual(1);
    } finally {
      inner.dispose();
    }
  });

  /**
   * BUG 2: the `aborted` verdict's completion retries run with the lease already dropped: a
   * store blip while it is stored lets a repeat take the key over and run the function a second
   * time, the exact double run the verdict exists to prevent.
   *
   * Symptom: the function reads ctx.signal, its caller aborts, it throws part way (its effect
   * may have happened). Storing `aborted` fails (a failover); #persist retries it for
   * completeTimeoutMs, but nothing renews the lease meanwhile. leaseMs later a repeat claims
   * with takeover and runs the function again (runs === 2). The value path keeps the lease for
   * exactly this reason (comment at src/idempotent.ts:494-495; HELD 1 below).
   * Root cause: src/idempotent.ts:474-480 (`this.#settled(lease)` before `await
   * this.#abort(...)` in #run's catch; also :487-489 for a capped value), with #abort retrying
   * via #persist (src/idempotent.ts:565-577).
   * Fix: keep the lease held (mark it returned/settling so cap() does not fire) while #abort's
   * #persist retries, and call #settled(lease) after #abort, as the value path does.
   */
  it('BUG 2: storing `aborted` through a blip drops the lease and a repeat runs the function again', async () => {
    const clock = new ManualClock(1_000_000);
    const inner = memoryStore({ clock });
    let down = false;
    const store: IdempotencyStore = {
      onStoreError: 'fail-closed',
      claim: (...a) => inner.claim(...a),
      release: (...a) => inner.release(...a),
      extend: (...a) => inner.extend(...a),
      complete: (key, ...rest) =>
        down
          ? Promise.reject(new StoreUnavailableError('flaky', 'complete', key, 'failover in progress'))
          : inner.complete(key, ...rest),
    };
    try {
      let runs = 0;
      const fn = idempotent(
        async (_: number, ctx) => {
          runs++;
          if (runs > 1) return 'second run';
          await new Promise((_r, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)));
          return 'never';
        },
        { store, key: () => 'k', leaseMs: 300, maxRunMs: 60_000, completeTimeoutMs: 5_000, clock, name: 's36c-abort' },
      );
      const ac = new AbortController();
      const first = fn(1, { signal: ac.signal }).catch((e: unknown) => e);
      await clock.advance(10);
      down = true; // the store blips just as the verdict is to be stored
      ac.abort(new Error('client left'));
      await first;
      for (let i = 0; i < 10; i++) await clock.advance(100); // 1 s: past leaseMs, within completeTimeoutMs
      const repeat = fn(1).catch((e: unknown) => e);
      await clock.advance(10);
      const runsAtRepeat = runs;
      down = false;
      await clock.advance(5_000);
      // Today: the repeat took the key over and ran the function again ('second run').
      expect({ repeat: await repeat, runs: runsAtRepeat }).toEqual({
        repeat: expect.any(IdempotencyConflictError),
        runs: 1,
      });
    } finally {
      inner.dispose();
    }
  });

  /**
   * HELD 1: the value path keeps its lease through completion retries: a repeat during a blip
   * longer than leaseMs conflicts, and after the store is back it replays; one run.
   */
  it('HELD 1: a value stored through a blip longer than leaseMs: repeat conflicts, then replays', async () => {
    const clock = new ManualClock(1_000_000);
    const inner = memoryStore({ clock });
    let down = false;
    const store: IdempotencyStore = {
      onStoreError: 'fail-closed',
      claim: (...a) => inner.claim(...a),
      release: (...a) => inner.release(...a),
      extend: (...a) => inner.extend(...a),
      complete: (key, ...rest) =>
        down
          ? Promise.reject(new StoreUnavailableError('flaky', 'complete', key, 'failover in progress'))
          : inner.complete(key, ...rest),
    };
    try {
      let runs = 0;
      const fn = idempotent(
        async () => {
          runs++;
          down = true;
          return `run ${runs}`;
        },
        { store, key: () => 'k', leaseMs: 300, maxRunMs: 60_000, completeTimeoutMs: 5_000, clock, name: 's36c-value' },
      );
      const ac = new AbortController();
      const first = fn(1, { signal: ac.signal });
      await clock.advance(10);
      ac.abort(new Error('client left')); // aborted during the retries: the value in hand is returned
      expect(await first).toBe('run 1');
      for (let i = 0; i < 10; i++) await clock.advance(100);
      await expect(fn(1)).rejects.toBeInstanceOf(IdempotencyConflictError);
      down = false;
      await clock.advance(2_000);
      expect(await fn(1)).toBe('run 1');
      expect(runs).toBe(1);
    } finally {
      inner.dispose();
    }
  });
  /**
   * HELD 2: share() on a frozen custom store: a second, named function without a namespace is
   * refused, and the message names the first one as unnamed; the same fn object wrapped again
   * unnamed is allowed.
   */
  it('HELD 2: share() refuses a second function on a frozen store and names the first as unnamed', () => {
    const inner = memoryStore();
    const store: IdempotencyStore = Object.freeze({
      onStoreError: 'fail-closed' as const,
      claim: (...a: Parameters<IdempotencyStore['claim']>) => inner.claim(...a),
      release: (...a: Parameters<IdempotencyStore['release']>) => inner.release(...a),
      complete: (...a: Parameters<IdempotencyStore['complete']>) => inner.complete(...a),
    });
    try {
      const charge = async () => 'receipt';
      idempotent(charge, { store, key: () => 'k' });
      expect(() => idempotent(charge, { store, key: () => 'k' })).not.toThrow();
      expect(() => idempotent(async () => 'ship', { store, key: () => 'k', name: 'ship' })).toThrow(
        /already serves an unnamed function without one/,
      );
    } finally {
      inner.dispose();
    }
  });
});
