/**
 * Outside review (s36) of redisStore() and idempotent(), against real redis-server processes this
 * file starts itself (test/support/redis.ts: a free loopback port found by binding port 0,
 * `--save '' --appendonly no`), frozen (SIGSTOP/SIGCONT), killed and restarted only by their own
 * PIDs, all stopped in afterAll.
 *
 * One `it` per bug (each fails on the current code), then three attacks that held (labelled HELD).
 */
import type { Socket } from 'node:net';
import { createBus, type HoldfastEvent } from '@holdfast/core';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from '../../../test/support/redis.js';
import { idempotent, redisStore } from '../src/index.js';
import { connect, disconnectAll, sleep } from './redis.js';

let unique = 0;
const prefix = (name: string) => `s36:${name}:${process.pid}:${++unique}:`;

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { open, opened };
}

async function until(check: () => boolean, ms = 3_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('until: condition not met in time');
    await sleep(2);
  }
}

describe.skipIf(!redisAvailable())(
  'review s36: redisStore() + idempotent() on a real Redis',
  { timeout: 10_000 },
  () => {
    let server: RedisServer;
    beforeAll(async () => {
      [server] = (await startRedis(1)) as [RedisServer];
    });
    afterAll(async () => {
      if (server?.running) server.resume();
      disconnectAll();
      await stopAllRedis();
    });

    /**
     * BUG 1: two different idempotent() functions on one store silently share records.
     * What a user sees: `charge` and `ship` both wrapped with the app's one redisStore(), both keyed
     * by the order id (the README's own pattern: `key: (msg) => msg.id`), given the same order object.
     * `ship(order)` never runs: it returns charge's receipt as if it were its tracking result, with
     * an `idempotency.replay` event and no error. One function's stored data is handed to another's
     * caller, and the shipment (an accepted request) is silently dropped.
     * Why a bug: the README promises one run per key per *operation*; nothing says a store must not
     * be shared, `name` reads like a namespace ("source of its events, prefix of its errors"), and
     * AWS Powertools (which the README compares itself with) prefixes the key with the function
     * name by default. The HTTP middleware fingerprints method + URL, so there a reuse is at least a
     * 422; here the default fingerprint is the input alone, so it is an exact match and a replay.
     * Root cause: src/idempotent.ts:298 and :354 pass `key(input)` to the store unqualified (no
     * namespace of the wrapper), and :97 fingerprints the input only.
     * Fix: qualify the stored key with a namespace (default: `name`), and refuse (HoldfastConfigError)
     * a second idempotent() with the same name on the same store object (a WeakMap store -> names);
     * at the least, mix `name` into the default fingerprint so a clash is E_IDEMPOTENCY_MISMATCH,
     * never another function's result.
     */
    it('BUG 1: a second function sharing the store and key runs, and does not get the first function’s result', async () => {
      const store = redisStore({ client: connect(server), prefix: prefix('b1') });
      const bus = createBus();
      const charge = idempotent(async (o: { id: string }) => ({ receipt: `rcpt-${o.id}` }), {
        store,
        key: (o) => o.id,
        name: 'charge',
        namespace: 'charge',
        bus,
      });
      let shipped = 0;
      const shipFn = async (o: { id: string }) => {
        shipped++;
        return { tracking: `trk-${o.id}` };
      };
      // Without a namespace of its own, the second function is refused where it is made.
      expect(() => idempotent(shipFn, { store, key: (o) => o.id, name: 'ship', bus })).toThrow(
        "ship: namespace none given, and this store already serves 'charge' in 'charge': give each function on a shared store a namespace of its own, or they replay each other's results",
      );
      expect(() => idempotent(shipFn, { store, key: (o) => o.id, name: 'ship', namespace: 'charge', bus })).toThrow(
        /namespace 'charge', and this store already serves 'charge' in 'charge'/,
      );
      const ship = idempotent(shipFn, { store, key: (o) => o.id, name: 'ship', namespace: 'ship', bus });
      const order = { id: 'A-1001' };
      expect(await charge(order)).toEqual({ receipt: 'rcpt-A-1001' });
      const shipment = await ship(order);
      expect({ shipment, shipped }).toEqual({ shipment: { tracking: 'trk-A-1001' }, shipped: 1 });
      // Each replays its own.
      expect(await ship(order)).toEqual({ tracking: 'trk-A-1001' });
      expect(await charge(order)).toEqual({ receipt: 'rcpt-A-1001' });
      expect(shipped).toBe(1);
    });

    /**
     * BUG 2: on redisStore(), fingerprints that differ only in a lone surrogate are one fingerprint.
     * What a user sees: with a `fingerprint` function that returns text from the input (a name cut
     * with slice() in the middle of an emoji, a JWT claim, JSON.parse of "\ud83d"), a second caller
     * whose input differs gets the FIRST caller's stored result replayed instead of
     * E_IDEMPOTENCY_MISMATCH. memoryStore() answers mismatch for the very same calls.
     * Why a bug: "no data leak between users"; the stores are said to pass one contract; and the
     * same conflation was already fixed for keys (keyOf) and for the HTTP fingerprint, not here.
     * Root cause: src/redis-store.ts:125 sends `fingerprint` as a JS string, which ioredis encodes as
     * UTF-8 (each lone surrogate -> EF BF BD), and src/redis-scripts.ts:34 compares those bytes.
     * Fix: encode the fingerprint as keyOf does (a well-formed one as UTF-8; otherwise a 0xff byte and
     * its UTF-16LE code units, or its SHA-256), in claim (:125) and in complete's rewrite (:173).
     */
    it('BUG 2: a custom fingerprint differing only in a lone surrogate is a mismatch, not another input’s replay', async () => {
      const store = redisStore({ client: connect(server), prefix: prefix('b2') });
      let runs = 0;
      const greet = idempotent(
        async (o: { id: string; name: string }) => {
          runs++;
          return `statement for ${o.name}`;
        },
        { store, key: (o) => o.id, fingerprint: (o) => o.name, bus: createBus() },
      );
      // Two names cut in the middle of an emoji: different lone high surrogates, different inputs.
      expect(await greet({ id: 'k-1', name: 'Zoë \ud83d' })).toBe('statement for Zoë \ud83d');
      const other = await greet({ id: 'k-1', name: 'Zoë \ud83e' }).then(
        (value) => ({ value }),
        (error: { code?: string }) => ({ code: error.code }),
      );
      expect({ other, runs }).toEqual({ other: { code: 'E_IDEMPOTENCY_MISMATCH' }, runs: 1 });
    });

    /**
     * BUG 3: a completion that meets a short connection blip is tried once, then the effect runs again.
     * What a user sees: the run returns, the connection to Redis drops and takes ~350 ms to be ready
     * again (a failover, a proxy restart; Redis keeps all its data). The completion fails after
     * commandTimeout (idempotency.storeError, operation 'complete'); the caller gets its value; the
     * key stays in progress; `leaseMs` later the retry takes it over and the function runs a SECOND
     * time (idempotency.takeover). Nothing crashed: the owner process was alive throughout.
     * Why a bug: README "Exactly once while nothing crashes"; the brief's "an accepted request is
     * never lost". The HTTP middleware retries its completion for `completeTimeoutMs` (10 s) for
     * exactly this (docs/idempotency.md, "A failover"); idempotent() does not.
     * Root cause: src/idempotent.ts:396 drops the lease (no more renewals) and :403-416 make one
     * `store.complete` attempt, bounded by the store's commandTimeout, then give up. (The same for
     * `#release` at :462: a failed function's key stays blocked for a lease after a blip.)
     * Fix: as src/http/engine.ts #complete does: retry `complete` (and `release`) on
     * StoreUnavailableError with backoff for a `completeTimeoutMs` option, keeping the lease held
     * and renewed by the keeper until the completion is settled.
     */
    it('BUG 3: a completion during a ~350 ms connection blip is not lost: the retry replays, the function ran once', async () => {
      const client = connect(server);
      await client.ping();
      const store = redisStore({ client, commandTimeout: 300, prefix: prefix('b3') });
      const events: string[] = [];
      const bus = createBus();
      bus.on('*', (e: HoldfastEvent) => events.push(e.type));
      let runs = 0;
      const held = gate();
      const work = idempotent(
        async () => {
          runs++;
          if (runs === 1) await held.opened;
          return `result of run ${runs}`;
        },
        { store, key: () => 'job-1', leaseMs: 1_000, wait: { timeout: 4_000, interval: 50 }, bus },
      );
      const first = work({});
      await until(() => runs === 1);
      let back: NodeJS.Timeout | undefined;
      try {
        server.pause(); // unreachable for a moment...
        (client as unknown as { stream: Socket }).stream.destroy(); // ...and the connection drops
        await until(() => client.status !== 'ready');
        back = setTimeout(() => server.resume(), 350); // back after ~350 ms, every record still there
        held.open(); // the run returns now: its completion finds no ready connection
        // The caller waits while the completion is retried (completeTimeoutMs), as the HTTP
        // middleware's response does.
        expect(await first).toBe('result of run 1');
      } finally {
        clearTimeout(back);
        server.resume();
      }
      await client.ping();
      const retry = await work({});
      expect({ retry, runs }).toEqual({ retry: 'result of run 1', runs: 1 });
      expect(events).not.toContain('idempotency.takeover');
    });

    /**
     * BUG 4: a caller that aborts while its claim is unanswered blocks its own immediate retry with
     * E_IDEMPOTENCY_CONFLICT and `retryAfterMs` ≈ leaseMs, though nothing runs.
     * What a user sees: Redis slow or frozen for a moment; `charge(order, { signal })` is aborted
     * (a pipeline timeout of 100 ms); the retry policy calls again at once, on the same instance. The
     * first claim lands and holds the key; the retry's claim lands right behind it on the same
     * connection and is told the key is in progress for another 59,999 ms. A client that honours
     * retryAfterMs (or Retry-After) waits a minute for a run that never happened.
     * Why a bug: README, aborting a call: "before the claim is answered | released when the answer
     * comes | a retry runs fn, once". The store already solves this for its own timeout: it queues
     * the withdrawal right behind the claim (docs: "Until the withdrawal lands... Retry-After: 1").
     * Root cause: src/idempotent.ts:313-317 sends the release only after the claim's reply has come
     * back to the client, so any call queued on the connection meanwhile sees the claim; the
     * store's #withdraw (src/redis-store.ts:467) is used only for a timed-out claim.
     * Fix: let the store follow the caller's signal during a claim (e.g. `claim(key, fp, lease,
     * { signal })`, on abort reject and `#withdraw` at once, queued behind the claim on the same
     * connection); or have the Runner make a new call of a key wait for that key's abandoned claim to
     * be released before claiming.
     */
    it('BUG 4: after an abort during an unanswered claim, the immediate retry runs the function instead of a 60 s conflict', async () => {
      const client = connect(server);
      await client.ping();
      const store = redisStore({ client, commandTimeout: 2_000, prefix: prefix('b4') });
      let runs = 0;
      const charge = idempotent(async () => `charged ${++runs}`, { store, key: () => 'order-4', bus: createBus() });
      let retry: Promise<unknown>;
      try {
        server.pause();
        const aborted = await charge({}, { signal: AbortSignal.timeout(100) }).catch((e: Error) => e.name);
        expect(aborted).toBe('TimeoutError');
        retry = charge({}).catch((e: { code?: string; retryAfterMs?: number }) => ({
          code: e.code,
          retryAfterMs: e.retryAfterMs,
        }));
        await sleep(50);
      } finally {
        server.resume();
      }
      expect({ retry: await retry, runs }).toEqual({ retry: 'charged 1', runs: 1 });
    });

    /**
     * HELD 1 (attack that held): Redis frozen with SIGSTOP during a claim, the reply arriving after
     * the client timed out. The caller gets E_STORE_UNAVAILABLE within commandTimeout; once Redis
     * continues, the late claim is withdrawn right behind it, so the retry is not blocked and runs
     * the function exactly once; another instance then replays it.
     */
    it('HELD 1: a claim answered after its timeout (SIGSTOP) neither blocks the key nor runs the effect twice', async () => {
      const a = connect(server);
      const b = connect(server);
      await Promise.all([a.ping(), b.ping()]);
      const p = prefix('h1');
      let runs = 0;
      const make = (client: Redis) =>
        idempotent(async () => `ran ${++runs}`, {
          store: redisStore({ client, commandTimeout: 300, prefix: p }),
          key: () => 'order-h1',
          bus: createBus(),
        });
      const onA = make(a);
      const onB = make(b);
      let first: unknown;
      const started = Date.now();
      try {
        server.pause();
        first = await onA({}).catch((e: { code?: string }) => e.code);
      } finally {
        server.resume();
      }
      expect(first).toBe('E_STORE_UNAVAILABLE');
      expect(Date.now() - started).toBeLessThan(1_500);
      expect(await onA({})).toBe('ran 1');
      expect(await onB({})).toBe('ran 1');
      expect(runs).toBe(1);
    });

    /**
     * HELD 2 (attack that held): two stores on two clients (two processes' worth) racing one key,
     * with fast-check choosing which store each call goes through, when it starts, how long the
     * function runs and whether it throws (a throw releases the key to a waiter). Over every
     * generated interleaving: never two runs at once, at most one success, and once one succeeded
     * both instances replay it without running again.
     */
    it('HELD 2: two stores racing one key (fast-check interleavings): one run at a time, one success, replays after', async () => {
      const clients = [connect(server), connect(server)];
      await Promise.all(clients.map((c) => c.ping()));
      const p = prefix('h2');
      const stores = clients.map((client) => redisStore({ client, prefix: p, commandTimeout: 2_000 }));
      const call = fc.record({
        via: fc.integer({ min: 0, max: 1 }),
        startMs: fc.integer({ min: 0, max: 12 }),
        runMs: fc.integer({ min: 0, max: 8 }),
        fails: fc.boolean(),
      });
      let round = 0;
      await fc.assert(
        fc.asyncProperty(fc.array(call, { minLength: 2, maxLength: 7 }), async (calls) => {
          const key = `race-${++round}`;
          let running = 0;
          let overlaps = 0;
          let successes = 0;
          let runs = 0;
          const fns = stores.map((store) =>
            idempotent(
              async (c: (typeof calls)[number]) => {
                runs++;
                if (++running > 1) overlaps++;
                await sleep(c.runMs);
                running--;
                if (c.fails) throw new Error('declined');
                successes++;
                return 'done';
              },
              {
                store,
                key: () => key,
                fingerprint: () => 'same',
                wait: { timeout: 1_000, interval: 5 },
                bus: createBus(),
                name: 'race', // one function, a wrapper per round: one name
              },
            ),
          );
          await Promise.all(
            calls.map(async (c) => {
              await sleep(c.startMs);
              return (fns[c.via] as (typeof fns)[0])(c).catch(() => undefined);
            }),
          );
          expect(overlaps).toBe(0);
          expect(successes).toBeLessThanOrEqual(1);
          if (successes === 1) {
            const before = runs;
            const replays = await Promise.all(fns.map((fn) => fn({ via: 0, startMs: 0, runMs: 0, fails: true })));
            expect({ replays, runs }).toEqual({ replays: ['done', 'done'], runs: before });
          }
        }),
        { numRuns: 40, seed: 36 },
      );
    });
  },
);

describe.skipIf(!redisAvailable())('review s36: a password in the Redis URL', { timeout: 10_000 }, () => {
  const SECRET = 'hunter2-S3CRET-s36';
  let server: RedisServer;
  beforeAll(async () => {
    [server] = (await startRedis(1)) as [RedisServer];
    const admin = new Redis(server.port, '127.0.0.1');
    await admin.config('SET', 'requirepass', SECRET);
    admin.disconnect();
  });
  afterAll(async () => {
    if (server?.running) server.resume();
    disconnectAll();
    await stopAllRedis();
  });

  /** Everything reachable from an error: own properties, causes included, as a logger would dump it. */
  function dump(value: unknown, seen = new Set<unknown>()): string {
    if (typeof value !== 'object' || value === null) return String(value);
    if (seen.has(value)) return '';
    seen.add(value);
    return Object.getOwnPropertyNames(value)
      .map((k) => `${k}=${dump((value as Record<string, unknown>)[k], seen)}`)
      .join(';');
  }

  /**
   * HELD 3 (attack that held): the password of a `redis://user:pass@host` URL reaches neither the
   * errors (message, stack, cause chain) nor the events, whether Redis is frozen, the password is
   * wrong, or the server is dead.
   */
  it('HELD 3: no error or event carries the URL’s password (frozen, wrong password, server killed)', async () => {
    const events: HoldfastEvent[] = [];
    const bus = createBus();
    bus.on('*', (e) => events.push(e));
    const open = (password: string) => {
      const client = new Redis(`redis://default:${password}@127.0.0.1:${server.port}`, { maxRetriesPerRequest: 1 });
      client.on('error', () => {});
      return client;
    };
    const good = open(SECRET);
    const bad = open(`wrong-${SECRET}`);
    try {
      await good.ping();
      const call = (client: Redis) =>
        idempotent(async () => 'ok', {
          store: redisStore({ client, commandTimeout: 300, prefix: prefix('h3') }),
          key: () => 'k',
          bus,
        })({}).catch((e: unknown) => e);
      const seen: unknown[] = [];
      try {
        server.pause();
        seen.push(await call(good));
      } finally {
        server.resume();
      }
      seen.push(await call(bad));
      await server.kill();
      seen.push(await call(good));
      expect(seen.map((e) => (e as { code?: string }).code)).toEqual([
        'E_STORE_UNAVAILABLE',
        'E_STORE_UNAVAILABLE',
        'E_STORE_UNAVAILABLE',
      ]);
      const text = [...seen.map((e) => dump(e)), JSON.stringify(events)].join('\n');
      expect(text).not.toContain('S3CRET');
    } finally {
      good.disconnect();
      bad.disconnect();
    }
  });
});

describe.skipIf(!redisAvailable())('review s36: a Redis that evicts (maxmemory-policy)', { timeout: 10_000 }, () => {
  let server: RedisServer;
  beforeAll(async () => {
    [server] = (await startRedis(1, ['--maxmemory', '4mb', '--maxmemory-policy', 'volatile-ttl'])) as [RedisServer];
  });
  afterAll(async () => {
    disconnectAll();
    await stopAllRedis();
  });

  /**
   * BUG 5: on a Redis that evicts keys with a TTL, a RUNNING claim is evicted first, silently,
   * and a duplicate runs beside its owner.
   * What a user sees: the store shares a Redis used as a cache too (`maxmemory` with a volatile-*
   * or allkeys-* policy; managed caches ship volatile-lru). Under memory pressure the in-progress
   * record (TTL two leases, the shortest around: under volatile-ttl the very first victim) is
   * evicted while its owner runs; a retry on another instance claims the key and charges again,
   * concurrently. No event, no error, no warning; the owner's completion then rewrites the record.
   * Why a bug: README "At most one run at a time ... exactly one gets the claim"; its "store that
   * forgets" list names a restart without persistence and a full memoryStore(), never eviction,
   * and nothing in the README or docs mentions maxmemory-policy.
   * Root cause: src/redis-store.ts never checks the server's eviction policy; every record carries
   * a TTL (src/redis-scripts.ts:49, PEXPIRE 2*lease), which makes all of them evictable under any
   * volatile-* policy, in-progress ones soonest.
   * Fix: on a new connection read `INFO memory` (maxmemory_policy; CONFIG may be disabled on
   * managed Redis) and, unless it is `noeviction`, refuse claims with E_STORE_UNAVAILABLE naming
   * the policy (or require an explicit `allowEviction: true`), and document it under "A store that
   * forgets" / "Persistence is Redis's".
   */
  it('BUG 5: a running claim is not evicted from under its owner: the duplicate does not run beside it', async () => {
    const [a, b, lazy] = [connect(server), connect(server), connect(server)];
    const p = prefix('b5');
    let runs = 0;
    const charge = async () => {
      runs++;
      return 'charged';
    };
    // Refused by default, with the policy named, on a connecting client and on a ready one.
    for (const client of [a, b]) {
      const onIt = idempotent(charge, {
        store: redisStore({ client, prefix: p }),
        key: () => 'order-5',
        bus: createBus(),
      });
      const error = await onIt({}).then(
        () => undefined,
        (e: { code?: string; message?: string }) => e,
      );
      expect(error?.code).toBe('E_STORE_UNAVAILABLE');
      expect(error?.message).toMatch(/maxmemory-policy volatile-ttl, maxmemory 4194304.*allowEviction: true/);
      await client.ping();
    }
    expect(runs).toBe(0);
    expect(await lazy.exists(redisStore({ client: lazy, prefix: p }).keyOf('order-5'))).toBe(0);
    // Asked for, the risk is the user's: claims go.
    const allowed = idempotent(charge, {
      store: redisStore({ client: b, prefix: p, allowEviction: true }),
      key: () => 'order-5',
      bus: createBus(),
    });
    expect(await allowed({})).toBe('charged');
    expect(runs).toBe(1);
  });
});
