/**
 * Outside review (s36b) of commit 56890f11 (namespace + share(), completion retries, #leaving,
 * wireFingerprint, the eviction check). Real redis-server processes are started by this file
 * (test/support/redis.ts, free loopback ports) and stopped in afterAll, by their own handles.
 *
 * One `it` per bug (each fails on the current code), then attacks that held (labelled HELD).
 */
import { createBus, type HoldfastEvent } from '@holdfast/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from '../../../test/support/redis.js';
import { problemTypes } from '../src/http/index.js';
import {
  IdempotencyAbortedError,
  type IdempotencyStore,
  idempotent,
  memoryStore,
  redisStore,
  StoreUnavailableError,
} from '../src/index.js';
import { expressFramework, fastifyFramework, type TestApp } from './http-support/apps.js';
import { newKey, send } from './http-support/support.js';
import { connect, disconnectAll, sleep } from './redis.js';

let unique = 0;
const prefix = (name: string) => `s36b:${name}:${process.pid}:${++unique}:`;

describe('review s36b: idempotent() on memoryStore', { timeout: 10_000 }, () => {
  /**
   * BUG 1: two different functions on one store, neither given a `name`, are still not refused
   * and still replay each other's results: the exact bug the commit set out to fix.
   *
   * What a user sees: `charge` and `ship` wrapped as the README's first examples wrap functions
   * (no `name`: it is documented only as "source of its events, prefix of its errors"), on the
   * app's one store, both keyed by the order id. No HoldfastConfigError is thrown; `ship(order)`
   * never runs and returns charge's receipt.
   * Why a bug: the refusal compares `name`s, and both default to 'idempotent', so the check
   * treats two unrelated functions as "one name wrapped again". The commonest setup (no name)
   * is the one left unprotected; the README's promise ("a store given to functions of different
   * names refuses the second one") reads as a guard, but only users who already name every
   * function get it.
   * Root cause: src/idempotent.ts:128 (`if (otherName === name || ...) continue;`) with the
   * default name from options.ts (`name: nameOption.default('idempotent')`).
   * Fix: treat the default name as "unnamed": refuse a second unnamed idempotent() with a
   * different `fn` on a store (compare `fn`, or `fn.toString()` to let a module loaded twice
   * pass), or require `name` or `namespace` once a store is shared.
   */
  it('BUG 1: two unnamed functions on one store are not refused and ship() replays charge()', async () => {
    const store = memoryStore();
    try {
      let shipped = 0;
      const charge = idempotent(async (order: { id: string }) => ({ receipt: `r-${order.id}` }), {
        store,
        key: (order) => order.id,
      });
      let ship: ((order: { id: string }) => Promise<unknown>) | undefined;
      let refused: unknown;
      try {
        ship = idempotent(
          async (order: { id: string }) => {
            shipped++;
            return { tracking: `t-${order.id}` };
          },
          { store, key: (order) => order.id },
        );
      } catch (error) {
        refused = error;
      }
      if (refused === undefined && ship !== undefined) {
        await charge({ id: 'A-1' });
        const result = await ship({ id: 'A-1' });
        // What happens today: ship is handed charge's receipt, and the shipment never runs.
        expect({ result, shipped }).toEqual({ result: { tracking: 't-A-1' }, shipped: 1 });
      }
      expect(refused).toMatchObject({ name: 'HoldfastConfigError' });
    } finally {
      store.dispose();
    }
  });

  /**
   * BUG 2: a value returned well before `maxRunMs` is replaced by the `aborted` verdict when
   * storing it is retried (the new completion retries) past `maxRunMs`.
   *
   * What a user sees: the function returns its value in time (here at once; maxRunMs 400 ms);
   * the store blips while the value is stored (a Redis failover of ~0.8 s). The caller gets the
   * value, but every repeat of the key gets E_IDEMPOTENCY_ABORTED ("the run may have stopped
   * half way") for the whole ttl, and `ctx.signal` aborts with E_TIMEOUT after the function
   * returned. A client that retries (its response was lost) can never get its result.
   * Why a bug: maxRunMs is documented as the longest a *run* may keep its key ("a value the run
   * returns later is not stored"); this run returned before it. The commit keeps the lease in the
   * keeper while #persist retries, so the keeper's cap fires during the retries and wins the race
   * to the store when it comes back (it ticks every leaseMs/3; #persist backs off 100..1000 ms).
   * Root cause: src/idempotent.ts:476-493 (#run keeps the lease held through #persist) with
   * RunLease.cap (src/idempotent.ts:251-265) storing `aborted` for a lease whose run has a value.
   * Fix: once fn has returned, mark the lease so cap() does not apply (renew only; or have cap()
   * store the value in hand instead of `aborted`), or drop the cap from the keeper before #persist.
   */
  it('BUG 2: a value returned before maxRunMs is stored as `aborted` when its completion is retried past the cap', async () => {
    const inner = memoryStore();
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
        async (n: number) => {
          runs++;
          down = true; // the store blips just as the value is to be stored
          setTimeout(() => {
            down = false;
          }, 1_050);
          return { n };
        },
        { store, key: () => 'k', leaseMs: 300, maxRunMs: 400, name: 's36b-cap' },
      );
      expect(await fn(1)).toEqual({ n: 1 });
      // The function returned at t=0, far inside maxRunMs: a repeat must replay its value.
      let repeat: unknown;
      try {
        repeat = await fn(1);
      } catch (error) {
        repeat = error;
      }
      expect(repeat).not.toBeInstanceOf(IdempotencyAbortedError);
      expect(repeat).toEqual({ n: 1 });
      expect(runs).toBe(1);
    } finally {
      inner.dispose();
    }
  });

  /**
   * HELD 1: #leaving under hostile orders. Two callers abort on one key while their claims are
   * unanswered (a slow store), one claim fails, one is granted; a third call (no signal) neither
   * hangs nor conflicts, runs once, and a fourth replays.
   */
  it('HELD 1: two aborted callers on one key, one claim failing: the next call runs once, no hang', async () => {
    const inner = memoryStore();
    let claims = 0;
    const store: IdempotencyStore = {
      onStoreError: 'fail-closed',
      claim: async (...a) => {
        const n = ++claims;
        await sleep(100);
        if (n === 2) throw new StoreUnavailableError('slow', 'claim', a[0], 'blip');
        return inner.claim(...a);
      },
      release: (...a) => inner.release(...a),
      complete: (...a) => inner.complete(...a),
      extend: (...a) => inner.extend(...a),
    };
    try {
      let runs = 0;
      const fn = idempotent(
        async () => {
          runs++;
          return 'ok';
        },
        { store, key: () => 'k', name: 's36b-leave' },
      );
      const a = fn(1, { signal: AbortSignal.timeout(20) }).catch((e: unknown) => e);
      const b = fn(1, { signal: AbortSignal.timeout(30) }).catch((e: unknown) => e);
      await sleep(40);
      const started = Date.now();
      expect(await fn(1)).toBe('ok');
      expect(Date.now() - started).toBeLessThan(2_000);
      expect(await fn(1)).toBe('ok');
      expect(runs).toBe(1);
      await a;
      await b;
    } finally {
      inner.dispose();
    }
  });
});

describe.skipIf(!redisAvailable())(
  'review s36b: redisStore() eviction check and fingerprints',
  { timeout: 10_000 },
  () => {
    let evicting: RedisServer;
    let plain: RedisServer;
    const apps: TestApp[] = [];
    beforeAll(async () => {
      [evicting] = (await startRedis(1, ['--maxmemory', '64mb', '--maxmemory-policy', 'volatile-lru'])) as [
        RedisServer,
      ];
      [plain] = (await startRedis(1)) as [RedisServer];
    });
    afterAll(async () => {
      for (const app of apps.splice(0)) {
        app.gate.open();
        await app.close();
      }
      disconnectAll();
      await stopAllRedis();
    });

    /**
     * BUG 3: with `onStoreError: 'fail-open'`, the eviction refusal switches idempotency off for
     * every call: each repeat runs the function again.
     *
     * What a user sees: a service on a managed Redis (ElastiCache ships maxmemory set and
     * `volatile-lru`) with fail-open upgrades; nothing fails, but from now on every retry charges
     * again (only `idempotency.storeError` events, one per call). Before the commit, the same Redis
     * ran each key once except when a running claim was evicted under memory pressure.
     * Why a bug: the refusal exists to prevent duplicate runs (an evicted claim), yet it is thrown
     * as a transient StoreUnavailableError, which fail-open answers by running unprotected: the
     * guard against a rare duplicate makes every repeat a duplicate, for as long as the policy is
     * set. A configuration refusal is not an outage.
     * Root cause: src/redis-store.ts:284-287 (rejects with #unavailable, a StoreUnavailableError)
     * and src/idempotent.ts:403-409 (#claim runs fn for any StoreUnavailableError under fail-open).
     * Fix: refuse with an error fail-open does not cover (a HoldfastConfigError, or a
     * StoreUnavailableError flagged `config`/`permanent` that #claim and the HTTP engine rethrow
     * whatever onStoreError says), or throw at redisStore() creation/first use.
     */
    it('BUG 3: fail-open on an evicting Redis runs every repeat again', async () => {
      const bus = createBus();
      const events: HoldfastEvent[] = [];
      bus.on('*', (e: HoldfastEvent) => events.push(e));
      const store = redisStore({ client: connect(evicting), prefix: prefix('b3'), onStoreError: 'fail-open' });
      let charged = 0;
      const charge = idempotent(
        async (order: { id: string }) => {
          charged++;
          return { receipt: `r-${order.id}` };
        },
        { store, key: (o) => o.id, name: 's36b-b3', bus },
      );
      // The refusal is no outage: fail-open does not run the function unprotected for it.
      for (let i = 0; i < 3; i++) {
        await expect(charge({ id: 'A-1' })).rejects.toMatchObject({ code: 'E_STORE_UNAVAILABLE', refused: true });
      }
      const errors = events.filter((e) => e.type === 'idempotency.storeError');
      expect(errors).toHaveLength(3);
      expect(errors.every((e) => (e as { failOpen?: boolean }).failOpen === false)).toBe(true);
      expect(charged).toBe(0);
    });

    /**
     * BUG 4: the new "wait for an abandoned claim's release" (#leaving) is kept per wrapper, so it
     * does not apply when the retry goes through another wrapper of the same function on the same
     * store, which the README calls "one function [that] shares its records" (instances of one
     * service in a process, a wrapper built per request).
     *
     * What a user sees: a client times out while its claim is unanswered (Redis slow for 100 ms)
     * and retries at once; the retry is served by a second wrapper (a request-scoped service) and
     * gets E_IDEMPOTENCY_CONFLICT for a key nobody is running: the abandoned claim is released only
     * after the retry's claim was answered. The same retry through the first wrapper runs.
     * Why a bug: the commit's fix for this exact conflict depends on which in-process wrapper object
     * serves the retry, while share() declares such wrappers one function.
     * Root cause: src/idempotent.ts:280 (`readonly #leaving = new Map()` on the Runner), consulted in
     * #call (src/idempotent.ts:350-351).
     * Fix: keep the leaving map per store object (a WeakMap<store, Map<storedKey, Promise>>, as
     * `served` is), so every wrapper on the store waits for the release.
     */
    it('BUG 4: a retry through a second wrapper of the same function conflicts with its own abandoned claim', async () => {
      const client = connect(plain);
      await client.ping();
      const store = redisStore({ client, prefix: prefix('b4') });
      let runs = 0;
      const make = () =>
        idempotent(
          async () => {
            runs++;
            return 'done';
          },
          { store, key: () => 'order-1', name: 's36b-b4' },
        );
      const first = make();
      const second = make(); // the same service, another instance (or a wrapper built per request)
      plain.pause();
      try {
        const left = first(1, { signal: AbortSignal.timeout(30) }).catch((e: unknown) => e);
        await sleep(60);
        expect(await left).toMatchObject({ name: 'TimeoutError' });
        const retry = second(1).catch((e: unknown) => e);
        await sleep(20);
        plain.resume();
        const got = await retry;
        expect(got).toBe('done');
        expect(runs).toBe(1);
      } finally {
        plain.resume();
      }
    });

    /**
     * HELD 2: Express and Fastify on an evicting Redis (fail-closed) answer a clear 503
     * idempotency-store-unavailable problem, not a 500, and never run the handler.
     */
    it('HELD 2: Express and Fastify answer 503 store-unavailable on an evicting Redis', async () => {
      for (const framework of [expressFramework, fastifyFramework]) {
        const app = await framework.start({ store: redisStore({ client: connect(evicting), prefix: prefix('h2') }) });
        apps.push(app);
        const res = await send(`${app.url}/orders`, { key: newKey(), body: { amount: 1 } });
        expect(res.status).toBe(503);
        expect(res.json()).toMatchObject({ type: problemTypes.storeUnavailable });
        expect(app.calls.get('orders')).toBeUndefined();
      }
    });

    /**
     * HELD 3: a record completed with a fingerprint that is not well-formed UTF-16 replays on a
     * repeat (a fresh store object too: nothing depends on #pending), its record's fingerprint reads
     * back exactly, another lone surrogate is a mismatch, and the same key through a namespace
     * with a colon-laden key does not collide with an un-namespaced `ns:key`.
     */
    it('HELD 3: lone-surrogate fingerprints replay and mismatch correctly on Redis', async () => {
      const p = prefix('h3');
      const bad = `name-\ud83d`;
      const other = `name-\ud83e`;
      let runs = 0;
      const make = () =>
        idempotent(
          async (s: string) => {
            runs++;
            return { s: s.length };
          },
          {
            store: redisStore({ client: connect(plain), prefix: p }),
            key: () => 'k',
            fingerprint: (s) => s,
            name: 's36b-h3',
          },
        );
      expect(await make()(bad)).toEqual({ s: 6 });
      expect(await make()(bad)).toEqual({ s: 6 });
      expect(runs).toBe(1);
      await expect(make()(other)).rejects.toMatchObject({ code: 'E_IDEMPOTENCY_MISMATCH' });
      const claim = await redisStore({ client: connect(plain), prefix: p }).claim('k', bad, 1_000);
      expect(claim.status).toBe('completed');
      if (claim.status === 'completed') expect(claim.record.fingerprint).toBe(bad);
    });
  },
);
