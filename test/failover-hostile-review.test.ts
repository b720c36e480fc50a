/**
 * An outside, hostile review of @holdfast/failover. Every test asserts what a user reading the
 * README would expect. Tests that fail name a finding; the comment above each says what a user
 * would see. Time and counts are bounded everywhere; real HTTP servers and the fault proxy from
 * @holdfast/chaos stand in for production where the network matters.
 */

import { spawn } from 'node:child_process';
import { createServer as createNetServer } from 'node:net';
import { join } from 'node:path';
import { faultProxy } from '@holdfast/chaos';
import { createBus, DisposedError, HoldfastError, TimeoutError } from '@holdfast/core';
import { type Endpoint, type FailoverOptions, failover } from '@holdfast/failover';
import { compareRedisTokens, redisRoles } from '@holdfast/failover/ioredis';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { countingServer, hostileHarness, refusedError } from './support/hostile.js';
import { redisAvailable, startRedis, stopAllRedis } from './support/redis.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const noop = () => {};

/** A set on a manual clock and a private bus, without the shared policy registry; disposed after the test. */
function hostileSet<T>(options: Omit<FailoverOptions<T>, 'clock' | 'bus' | 'policies'>, start?: number) {
  const h = hostileHarness(start);
  const api = failover<T>({ clock: h.clock, bus: h.bus, policies: false, ...options });
  cleanups.push(() => api.dispose());
  return { ...h, api };
}

describe('failover, hostile review: secrets', () => {
  // A user configures `endpoints: ['https://svc:PASSWORD@db.internal']` (basic auth in the URL, as
  // many HTTP clients accept). They then see the password in `snapshot()` (served by the dashboard
  // and /health), in every `failover.eject` event (shipped to logs and metrics) and in the message of
  // the TimeoutError the call rejects with. The brief: secrets never reach messages/events/snapshots.
  it('never shows the password of an endpoint URL in snapshots, events or error messages', async () => {
    const secret = 'hunter2-S3CRET';
    const { api, clock, events } = hostileSet({
      endpoints: [`http://svc:${secret}@10.0.0.1:8080`, `http://svc:${secret}@10.0.0.2:8080`],
      timeout: 100,
      retry: { idempotent: true },
      ejection: { consecutiveFailures: 1, baseTime: 1_000 },
    });
    const call = api.execute(() => new Promise<never>(noop)).catch((e: unknown) => e);
    await clock.advance(100);
    await clock.advance(100);
    const error = (await call) as Error;
    expect(error).toBeInstanceOf(TimeoutError);
    expect(error.message).not.toContain(secret);
    expect(JSON.stringify(api.snapshot())).not.toContain(secret);
    expect(events.map((e) => e.type)).toContain('failover.eject');
    expect(JSON.stringify(events)).not.toContain(secret);
  });
});

describe('failover, hostile review: secrets behind a safe name', () => {
  // The careful user names endpoints `{ name: 'orders-1', target: 'https://svc:PASSWORD@…' }` so
  // that names are safe to log. snapshot() still prints `target` whenever it is a string, so the
  // dashboard and /health serve the password anyway. Likely cause:
  // packages/failover/src/failover.ts snapshot(): `target: typeof e.view.target === 'string' ? e.view.target : null`.
  it('a string target with credentials is not shown as it is in snapshot()', () => {
    const secret = 'hunter2-S3CRET';
    const api = failover({
      bus: createBus(),
      policies: false,
      endpoints: [{ name: 'orders-1', target: `https://svc:${secret}@orders-1.internal` }],
    });
    cleanups.push(() => api.dispose());
    expect(JSON.stringify(api.snapshot())).not.toContain(secret);
  });
});

describe('failover, hostile review: roles route reads to a replica the operator took out', () => {
  const roleOf = (e: Endpoint) =>
    e.name === 'p'
      ? { role: 'primary' as const, token: [1, 10] }
      : { role: 'replica' as const, token: [1, 10], lag: 0 };

  /** Three servers (p primary, r1 and r2 replicas); r1 fails one read and is ejected; its ejection runs out. */
  async function ejectedReplicaInProbe(extra: { health?: { check: (e: Endpoint) => unknown } } = {}) {
    const h = hostileHarness();
    const reads: string[] = [];
    let r1Fails = true;
    const db = failover({
      clock: h.clock,
      bus: h.bus,
      policies: false,
      endpoints: ['p', 'r1', 'r2'].map((name) => ({ name, target: name })),
      roles: { check: roleOf, interval: 1_000 },
      ejection: { consecutiveFailures: 1, baseTime: 1_000, maxTime: 1_000 },
      retry: false,
      ...(extra.health === undefined
        ? {}
        : { health: { ...extra.health, interval: 500, jitter: 0, unhealthyAfter: 1, healthyAfter: 1 } }),
    });
    cleanups.push(() => db.dispose());
    await h.clock.advance(0);
    const read = () =>
      db
        .execute(
          (e) => {
            reads.push(e.name);
            if (e.name === 'r1' && r1Fails) throw new Error('read failed');
            return e.name;
          },
          { intent: 'read' },
        )
        .catch(noop);
    for (let i = 0; i < 4 && !h.of('failover.eject').length; i++) await read();
    expect(h.of('failover.eject').map((e) => e.endpoint)).toEqual(['r1']);
    r1Fails = false;
    return { ...h, db, reads, read };
  }

  // A user drains replica r1 for maintenance (`drain('r1')` resolves: nothing in flight) and
  // stops it. Because r1 had been ejected earlier and its ejection time ran out, the next read is
  // still sent to it as a "probe": a read lands on a server the operator took out of service.
  // Likely cause: packages/failover/src/failover.ts #pickByRole, the probe loop
  // (`for (const e of this.#probes) if (!e.probing && this.#readable(e)) return e`) skips neither
  // drained nor unhealthy endpoints, unlike #probeFor.
  it('sends no read to a drained replica, even one whose ejection time is over', async () => {
    const { clock, db, reads, read } = await ejectedReplicaInProbe();
    await db.drain('r1');
    await clock.advance(1_500); // the ejection is over: r1 is waiting for a probe
    expect(db.snapshot().endpoints.find((e) => e.name === 'r1')).toMatchObject({ role: 'drained' });
    reads.length = 0;
    for (let i = 0; i < 6; i++) await read();
    expect(reads).not.toContain('r1');
  });

  // Same path: active health checks say r1 is down (its checks fail), yet once its ejection time is
  // over the next read goes to it anyway.
  it('sends no read to a replica its health checks call unhealthy, even one whose ejection time is over', async () => {
    let r1Healthy = true;
    const { clock, db, reads, read } = await ejectedReplicaInProbe({
      health: { check: (e) => e.name !== 'r1' || r1Healthy },
    });
    r1Healthy = false;
    await clock.advance(1_500);
    expect(db.snapshot().endpoints.find((e) => e.name === 'r1')).toMatchObject({ health: 'unhealthy' });
    reads.length = 0;
    for (let i = 0; i < 6; i++) await read();
    expect(reads).not.toContain('r1');
  });
});

describe('failover, hostile review: avoid', () => {
  // Passing edge: `avoid` as a hedge uses it. Reads avoid the named replica, then fall to the
  // primary when every replica is avoided; avoiding everything is NoHealthyEndpointError, not a
  // call on an avoided endpoint; writes ignore it (the primary is the only place); unknown names
  // change nothing; a retry never lands on an avoided endpoint.
  it('reads honour avoid down to the primary; writes ignore it; retries never land on an avoided endpoint', async () => {
    const { api: db, clock } = hostileSet({
      endpoints: ['p', 'r1', 'r2'].map((name) => ({ name, target: name })),
      roles: {
        check: (e) =>
          e.name === 'p' ? { role: 'primary', token: [1, 1] } : { role: 'replica', token: [1, 1], lag: 0 },
      },
      retry: { idempotent: true, maxAttempts: 3, budget: false },
    });
    await clock.advance(0);
    const read = (avoid: string[]) => db.execute((e) => e.name, { intent: 'read', avoid });
    for (let i = 0; i < 4; i++) expect(await read(['r1'])).toBe('r2');
    expect(await read(['r1', 'r2'])).toBe('p');
    expect(await read(['nope', 'r2'])).toBe('r1');
    await expect(read(['p', 'r1', 'r2'])).rejects.toMatchObject({ code: 'E_NO_HEALTHY_ENDPOINT' });
    expect(await db.execute((e) => e.name, { avoid: ['p'] })).toBe('p');
    const tried: string[] = [];
    const failing = await db
      .execute(
        (e) => {
          tried.push(e.name);
          throw new Error('read failed');
        },
        { intent: 'read', avoid: ['r2'] },
      )
      .catch((e: Error) => e.message);
    expect(failing).toBe('read failed');
    expect(tried).toEqual(['r1', 'p']);
  });
});

describe('failover, hostile review: operator calls and dispose', () => {
  // `drain()` is typed `Promise<void>` and documented as resolving later, so users write
  // `api.drain(name).catch(log)`. With a mistyped name it throws synchronously (a RangeError,
  // not a HoldfastError), escaping the `.catch` and, in an HTTP admin handler, becoming a 500.
  // Likely cause: packages/failover/src/failover.ts drain() calls #find() outside a promise.
  it('drain() of an unknown endpoint rejects its promise instead of throwing synchronously', async () => {
    const api = failover({ endpoints: ['a', 'b'], bus: createBus(), policies: false });
    cleanups.push(() => api.dispose());
    let thrown: unknown;
    let result: Promise<void> | undefined;
    try {
      result = api.drain('nope');
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeUndefined();
    await expect(result).rejects.toBeInstanceOf(HoldfastError);
  });

  // A service shuts down: `db.dispose()` then ends its pools, as the README's sample does. A read
  // that was waiting for the role checks' first answers (a node slow to answer at start-up) is
  // not refused: once dispose() wakes it, it runs on an endpoint anyway, on a pool being ended.
  // Likely cause: execute() checks #disposed only before awaiting roles.whenReady()
  // (packages/failover/src/failover.ts, execute), and RoleDiscovery.stop() wakes the waiters.
  it('a call waiting for the first role checks rejects with DisposedError when the set is disposed, and runs nothing', async () => {
    const { clock, bus } = hostileHarness();
    let ran = 0;
    const db = failover({
      clock,
      bus,
      policies: false,
      endpoints: [
        { name: 'a', target: 'a' },
        { name: 'b', target: 'b' },
      ],
      roles: {
        // a answers at once, b never does: the set is not ready for up to `wait`.
        check: (e) => (e.name === 'a' ? { role: 'replica', token: [1, 1], lag: 0 } : new Promise(noop)),
        timeout: 1_000,
        wait: 5_000,
      },
    });
    const call = db
      .execute(
        () => {
          ran++;
          return 'ran';
        },
        { intent: 'read' },
      )
      .catch((e: unknown) => e);
    await clock.advance(10);
    db.dispose();
    const outcome = await call;
    expect(ran).toBe(0);
    expect(outcome).toBeInstanceOf(DisposedError);
  });

  // Same shutdown, another path: a call in flight fails (connection refused) just after
  // dispose(); the set starts a new try on the other endpoint after it was disposed, on a pool
  // the application is already ending. Likely cause: the retry loop in execute() never looks at
  // #disposed again (packages/failover/src/failover.ts, execute).
  it('starts no new try on another endpoint after dispose()', async () => {
    const api = failover({ endpoints: ['a', 'b'], bus: createBus(), policies: false });
    const tries: string[] = [];
    let release = noop;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const call = api
      .execute(async (e) => {
        tries.push(e.name);
        if (tries.length === 1) {
          await gate;
          throw refusedError();
        }
        return e.name;
      })
      .catch((e: unknown) => e);
    await new Promise((r) => setImmediate(r));
    api.dispose();
    release();
    const outcome = await call;
    expect(tries).toEqual(['a']);
    expect(outcome).toBeInstanceOf(Error);
  });

  // Passing edge: drain while calls are in flight resolves only when they settle; every endpoint
  // drained rejects calls at once instead of hanging; undrain brings traffic back.
  it('drain waits for calls in flight; all drained fails fast; undrain takes calls again', async () => {
    const { api, clock } = hostileSet({ endpoints: ['a', 'b'] });
    const release: (() => void)[] = [];
    const inFlight = [0, 1, 2, 3].map(() =>
      api.execute((e) => new Promise<string>((resolve) => release.push(() => resolve(e.name)))),
    );
    let drained = false;
    const drainA = api.drain('a').then(() => {
      drained = true;
    });
    await clock.advance(0);
    expect(drained).toBe(false);
    expect(api.snapshot().endpoints.map((e) => e.inFlight)).toEqual([2, 2]);
    const drainB = api.drain('b');
    const refused = await api.execute(() => 'x').catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: 'E_NO_HEALTHY_ENDPOINT' });
    for (const r of release) r();
    await Promise.all(inFlight);
    await Promise.all([drainA, drainB]);
    expect(drained).toBe(true);
    api.undrain('a');
    expect(await api.execute((e) => e.name)).toBe('a');
  });
});

describe('failover, hostile review: a probe that never settles', () => {
  // With the defaults (no `timeout`), an ejected endpoint's probe goes to a server that froze; the
  // probe never settles. The server recovers a minute later, but the endpoint stays in `probe`
  // for good: `probing` is never cleared, so no later call is ever its probe and it never comes
  // back (the snapshot shows ejection: 'probe' forever). Expected: a probe outstanding longer than
  // the ejection it follows is given up (ejected again), so another call can prove the endpoint.
  // Likely cause: packages/failover/src/failover.ts #try sets `e.probing = true` and only #record,
  // on settlement, clears it; #probeFor skips endpoints with `probing` set.
  it('an endpoint whose probe hung is tried again once the server recovers', async () => {
    const { api, clock } = hostileSet({
      endpoints: ['a', 'b', 'c'],
      retry: false,
      ejection: { consecutiveFailures: 1, baseTime: 1_000, maxTime: 4_000 },
    });
    let state: 'failing' | 'frozen' | 'fine' = 'failing';
    const seen: string[] = [];
    const call = () =>
      api
        .execute((e) => {
          seen.push(e.name);
          if (e.name !== 'a' || state === 'fine') return e.name;
          return state === 'failing' ? Promise.reject(new Error('boom')) : new Promise<string>(noop);
        })
        .catch(noop);
    await call(); // a fails: ejected
    state = 'frozen';
    await clock.advance(1_000);
    void call(); // the probe: hangs
    await clock.advance(60_000);
    state = 'fine';
    seen.length = 0;
    for (let i = 0; i < 30; i++) {
      await call();
      await clock.advance(1_000);
    }
    expect(seen).toContain('a');
  });
});

describe('failover, hostile review: a drained endpoint holds the ejection slot', () => {
  // a breaks and is ejected; the operator drains it for repair (days, perhaps). While it is
  // drained its ejection runs out into `probe` and stays there (drained endpoints get no probe),
  // so it keeps the one ejection maxShare allows. Then b dies: b is never ejected, and every
  // other call fails on it until a is undrained. Expected: an endpoint that takes no traffic
  // because the operator drained it does not use up the ejection budget of the ones that do.
  // Likely cause: packages/failover/src/failover.ts #tryEject counts every endpoint with
  // `ejection !== 'none'`, drained or not.
  it('b is ejected when it dies, though a drained endpoint was ejected before', async () => {
    const { api, clock, of } = hostileSet({
      endpoints: ['a', 'b', 'c'],
      retry: false,
      ejection: { consecutiveFailures: 2, baseTime: 1_000, maxTime: 1_000, maxShare: 0.5 },
    });
    const dead = new Set(['a']);
    let failed = 0;
    const call = () =>
      api
        .execute((e) => {
          if (dead.has(e.name)) throw new Error(`${e.name} is down`);
          return e.name;
        })
        .catch(() => {
          failed++;
        });
    for (let i = 0; i < 6; i++) await call();
    expect(of('failover.eject').map((e) => e.endpoint)).toEqual(['a']);
    await api.drain('a');
    await clock.advance(5_000);
    dead.add('b');
    failed = 0;
    for (let i = 0; i < 30; i++) await call();
    expect(of('failover.eject').map((e) => e.endpoint)).toEqual(['a', 'b']);
    expect(failed).toBeLessThanOrEqual(2);
  });
});

describe('failover, hostile review: flapping', () => {
  // Passing edge: active-passive, the primary's health flaps (5 s up, 5 s down) for two minutes.
  // Traffic fails over once and never fails back while it flaps; once it is stable through the
  // hold-down, traffic fails back once. No call ever goes to a standby while the primary is
  // active and available.
  it('a flapping primary gets traffic back only after it is stable through the hold-down', async () => {
    let up = true;
    const { api, clock, of } = hostileSet({
      mode: 'active-passive',
      endpoints: [
        { name: 'primary', target: 0, priority: 0 },
        { name: 'standby', target: 1, priority: 1 },
      ],
      holdDown: 30_000,
      health: {
        check: (e) => e.name !== 'primary' || up,
        interval: 1_000,
        jitter: 0,
        healthyAfter: 1,
        unhealthyAfter: 1,
      },
    });
    for (let t = 0; t < 120; t++) {
      up = Math.floor(t / 5) % 2 === 0;
      await clock.advance(1_000);
    }
    up = true;
    const flapping = of('failover.switch').map((e) => `${e.reason}:${e.to}`);
    expect(flapping).toEqual(['failover:standby']);
    await clock.advance(32_000);
    expect(of('failover.switch').map((e) => `${e.reason}:${e.to}`)).toEqual(['failover:standby', 'failback:primary']);
    expect(await api.execute((e) => e.name)).toBe('primary');
  });
});

describe('failover, hostile review: clocks and limits', () => {
  // The real clock is Date.now(): an NTP step backwards is an ordinary event. After one, an
  // endpoint restored long ago is treated as if it had been ejected thousands of times in a row:
  // its next ejection lasts `maxTime` (5 minutes by default) instead of `baseTime`, and the snapshot
  // shows `ejections: 3602`. Likely cause: packages/failover/src/ejection.ts remainingEjections()
  // floors a negative (now - restoredAt) and subtracts it, adding ejections.
  it('a clock that steps backwards does not lengthen the next ejection', async () => {
    const { api, clock, of } = hostileSet(
      {
        endpoints: ['a', 'b', 'c'],
        retry: false,
        ejection: { consecutiveFailures: 1, baseTime: 1_000, maxTime: 64_000 },
      },
      10_000_000,
    );
    let aFails = true;
    const call = () =>
      api
        .execute((e) => {
          if (e.name === 'a' && aFails) throw new Error('boom');
          return e.name;
        })
        .catch(noop);
    await call(); // round-robin starts at a: ejected for 1 s
    expect(of('failover.eject')).toHaveLength(1);
    await clock.advance(1_000);
    aFails = false;
    await call(); // the probe passes: restored
    expect(of('failover.restore')).toHaveLength(1);
    await clock.advance(-3_600_000); // NTP steps the wall clock back an hour
    aFails = true;
    for (let i = 0; i < 3 && of('failover.eject').length < 2; i++) await call();
    const second = of('failover.eject')[1];
    expect(second).toBeDefined();
    expect(second?.ejections).toBeLessThanOrEqual(2);
    expect((second?.until ?? 0) - (second?.time ?? 0)).toBeLessThanOrEqual(2_000);
  });

  // The schema accepts any finite positive weight. Two endpoints of equal weight at the top of
  // that range should share traffic evenly, as README promises ("each endpoint gets exactly its
  // weight"); the running sums overflow to Infinity and NaN and one endpoint takes ~all calls.
  // Likely cause: packages/failover/src/balancer.ts smoothWeightedRoundRobin() sums weights
  // without normalising; options.ts accepts weights whose sum overflows.
  //
  // Corrected after the fix (finding 16): weights are now validated to at most 1,000,000 (shares are
  // relative; larger ones overflowed the sums), so Number.MAX_VALUE is no longer in the accepted range
  // and is refused with a HoldfastConfigError naming the path. The top of the range is 1,000,000; the
  // assertion on the split is unchanged.
  it('round-robin shares traffic by weight even for weights at the top of the accepted range', async () => {
    expect(() =>
      failover({
        bus: createBus(),
        policies: false,
        endpoints: [{ name: 'a', target: 'a', weight: Number.MAX_VALUE }],
      }),
    ).toThrow(/endpoints\.0\.weight/);
    const big = 1_000_000;
    const api = failover({
      bus: createBus(),
      policies: false,
      endpoints: [
        { name: 'a', target: 'a', weight: big },
        { name: 'b', target: 'b', weight: big },
      ],
    });
    cleanups.push(() => api.dispose());
    const counts: Record<string, number> = { a: 0, b: 0 };
    for (let i = 0; i < 100; i++) {
      const name = await api.execute((e) => e.name);
      counts[name] = (counts[name] ?? 0) + 1;
    }
    expect(counts).toEqual({ a: 50, b: 50 });
  });
});

describe('failover, hostile review: fencing', () => {
  // Two Sentinel failovers while the old master m1 was partitioned away with clients still writing
  // to it: m2 was promoted from m1, then m3 from m2. m1 rejoins, still a master, with more offset
  // than m3 (it took writes alone). Nothing relates m1's history to m3's (m3's replid2 is m2's
  // id), so comparing their offsets says nothing, yet the higher offset wins: every write goes
  // to the stale m1 until Sentinel demotes it, and is then lost when m1 resyncs from m3.
  // Expected: masters whose histories cannot be ordered tie (both fenced: a write to the wrong
  // one is lost, as the README says of ties). Likely cause: packages/failover/src/ioredis.ts
  // compareRedisTokens() falls back to offsets across unrelated replication ids.
  it('does not let a stale Redis master outrank a master two promotions newer by offset alone', () => {
    const id = (c: string) => c.repeat(40);
    const none = '0'.repeat(40);
    const m1 = [id('a'), none, 9_000] as const; // the old master, took 3,000 bytes of writes alone
    const m3 = [id('c'), id('b'), 7_000] as const; // promoted from m2 (id b), itself promoted from m1
    expect(compareRedisTokens(m1, m3)).toBeLessThanOrEqual(0);
  });
});

describe.skipIf(!redisAvailable())('failover, hostile review: fencing on real Redis servers', () => {
  // The same as the token test above, on three real redis-servers. m1 is the master, m2 and m3
  // replicate it. m2 is promoted while m1 still runs and takes writes (a partition: m1's clients
  // keep writing); the set rightly fences m1. m3 follows m2. Then m2 dies and m3 is promoted: the
  // set now moves every write BACK to m1, the stale master it had fenced, because m1's offset is
  // higher. Those writes are lost when m1 is made a replica of m3. Likely cause:
  // packages/failover/src/ioredis.ts compareRedisTokens() (offsets compared across unrelated
  // replication ids), and the set forgetting that it had fenced m1 for good.
  it('after a second promotion, writes never go back to the master fenced after the first', async () => {
    // A replica's full sync starts at once, not after the 5 s a diskless master waits for more:
    // the test waits for each link to be up, and nothing in it depends on when that happens.
    const [s1, s2, s3] = await startRedis(3, ['--save', '', '--appendonly', 'no', '--repl-diskless-sync-delay', '0']);
    if (s1 === undefined || s2 === undefined || s3 === undefined) throw new Error('no redis');
    cleanups.push(() => stopAllRedis());
    const client = (port: number) => {
      const c = new Redis({
        host: '127.0.0.1',
        port,
        maxRetriesPerRequest: 0,
        enableOfflineQueue: false,
        lazyConnect: true,
      });
      c.on('error', noop);
      cleanups.push(() => c.disconnect());
      return c;
    };
    const [m1, m2, m3] = [client(s1.port), client(s2.port), client(s3.port)];
    await Promise.all([m1.connect(), m2.connect(), m3.connect()]);
    const linkUp = async (c: Redis) => (await c.info('replication')).includes('master_link_status:up');
    const until = async (what: () => Promise<boolean> | boolean) => {
      const deadline = Date.now() + 10_000;
      while (!(await what())) {
        if (Date.now() > deadline) throw new Error('condition not met within 10 s');
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await m2.replicaof('127.0.0.1', s1.port);
    await m3.replicaof('127.0.0.1', s1.port);
    await until(async () => (await linkUp(m2)) && (await linkUp(m3)));
    for (let i = 0; i < 50; i++) await m1.set(`before:${i}`, 'x');
    // Streaming, not only linked: after a diskless sync a Redis 7 master starts the stream at the
    // replica's first acknowledgement (up to 1 s later). A replica promoted before any byte of it
    // came looks like a copy loaded from an RDB (redisRoles' documented gap), not a promotion.
    await until(async () => (await m2.exists('before:49')) === 1 && (await m3.exists('before:49')) === 1);
    const bus = createBus();
    const db = failover({
      bus,
      policies: false,
      endpoints: [
        { name: 'm1', target: m1 },
        { name: 'm2', target: m2 },
        { name: 'm3', target: m3 },
      ],
      roles: redisRoles({ interval: 100, timeout: 300 }),
    });
    cleanups.push(() => db.dispose());
    await until(() => db.snapshot().primary === 'm1');
    // A partition: m2 is promoted; m1 keeps running and its own clients keep writing to it.
    await m2.replicaof('NO', 'ONE');
    await m3.replicaof('127.0.0.1', s2.port);
    await until(() => db.snapshot().primary === 'm2');
    for (let i = 0; i < 500; i++) await m1.set(`stale:${i}`, 'y'.repeat(100)); // m1 now far ahead in offset
    await until(async () => linkUp(m3));
    // m2 dies; m3 is promoted.
    await s2.kill();
    await m3.replicaof('NO', 'ONE');
    await until(() => db.snapshot().endpoints.find((e) => e.name === 'm3')?.discovered !== 'replica');
    await new Promise((r) => setTimeout(r, 500)); // five role rounds
    expect(db.snapshot().primary).toBe('m3');
    expect(await db.execute((e) => e.name)).toBe('m3');
  });
});

describe.skipIf(!redisAvailable())('failover, hostile review: maxLag on a real Redis replica that never synced', () => {
  // A replica restarts empty (no persistence) while its master is unreachable. Redis reports
  // `master_link_status:down` and `master_link_down_since_seconds:-1` (never connected). The user
  // set `roles.maxLag: 1_000` to keep reads fresh, yet every read goes to the empty replica and
  // returns nothing (null for every key): its lag is "unknown", and unknown passes any bound.
  // Likely cause: packages/failover/src/ioredis.ts redisRole() drops the lag when the link is down
  // and down_since is -1, and packages/failover/src/failover.ts #readable() treats
  // `e.lag === undefined` as within maxLag.
  it('with maxLag, reads skip a replica whose link is down and lag unknown', async () => {
    const [s1, s2] = await startRedis(2, ['--save', '', '--appendonly', 'no']);
    if (s1 === undefined || s2 === undefined) throw new Error('no redis');
    cleanups.push(() => stopAllRedis());
    const client = (port: number) => {
      const c = new Redis({
        host: '127.0.0.1',
        port,
        maxRetriesPerRequest: 0,
        enableOfflineQueue: false,
        lazyConnect: true,
      });
      c.on('error', noop);
      cleanups.push(() => c.disconnect());
      return c;
    };
    const [master, empty] = [client(s1.port), client(s2.port)];
    await Promise.all([master.connect(), empty.connect()]);
    await master.set('cart:42', 'kettle');
    // Its master is on a port where nothing listens: it never syncs.
    const dead = await new Promise<number>((resolve) => {
      const probe = createNetServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as { port: number };
        probe.close(() => resolve(port));
      });
    });
    await empty.replicaof('127.0.0.1', dead);
    const db = failover({
      bus: createBus(),
      policies: false,
      endpoints: [
        { name: 'master', target: master },
        { name: 'empty-replica', target: empty },
      ],
      roles: redisRoles({ interval: 100, timeout: 300, maxLag: 1_000 }),
    });
    cleanups.push(() => db.dispose());
    const deadline = Date.now() + 5_000;
    while (db.snapshot().endpoints.some((e) => e.discovered === 'unknown') && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const answers: (string | null)[] = [];
    for (let i = 0; i < 10; i++) answers.push(await db.execute((e) => e.target.get('cart:42'), { intent: 'read' }));
    expect(answers).toEqual(Array(10).fill('kettle'));
  });
});

describe('failover, hostile review: real servers behind the fault proxy', () => {
  // Passing edge: a lost reply (the server executed the POST, the answer never came back) is a
  // timeout; a non-idempotent call is not repeated on the other endpoint, so the order is placed
  // once, not twice.
  it('a lost reply to a non-idempotent call is not sent again elsewhere: executed once', async () => {
    const [a, b] = await Promise.all([countingServer('a'), countingServer('b')]);
    const [pa, pb] = await Promise.all([
      faultProxy({ target: { port: a.port }, bus: createBus() }),
      faultProxy({ target: { port: b.port }, bus: createBus() }),
    ]);
    cleanups.push(
      () => a.close(),
      () => b.close(),
      () => pa.close(),
      () => pb.close(),
    );
    pa.add({ type: 'drop', chunks: 1 });
    const api = failover({ endpoints: [pa.url, pb.url], timeout: 500, bus: createBus(), policies: false });
    cleanups.push(() => api.dispose());
    const outcome = await api
      .execute(async (e, { signal }) => (await fetch(`${e.target}/orders`, { method: 'POST', signal })).text())
      .catch((e: unknown) => e);
    expect(outcome).toBeInstanceOf(TimeoutError);
    expect(a.executed + b.executed).toBe(1);
  });

  // Passing edge: a frozen server (every byte held) behind endpoint a; idempotent GETs time out
  // there and move to b; a is ejected after two timeouts; every call succeeds.
  it('a frozen endpoint costs timeouts, not failed calls, and is ejected', async () => {
    const [a, b] = await Promise.all([countingServer('a'), countingServer('b')]);
    const [pa, pb] = await Promise.all([
      faultProxy({ target: { port: a.port }, bus: createBus() }),
      faultProxy({ target: { port: b.port }, bus: createBus() }),
    ]);
    cleanups.push(
      () => a.close(),
      () => b.close(),
      () => pa.close(),
      () => pb.close(),
    );
    const bus = createBus();
    const ejected: string[] = [];
    bus.on('failover.eject', (e) => ejected.push(e.endpoint));
    const api = failover({
      endpoints: [
        { name: 'a', target: pa.url },
        { name: 'b', target: pb.url },
      ],
      // Loose enough for b to answer on a loaded machine: at 150 ms, 10 of 10 calls failed there
      // (b's answers too came late). A frozen a times out whatever the value.
      timeout: 500,
      retry: { idempotent: true },
      ejection: { consecutiveFailures: 2, baseTime: 10_000 },
      bus,
      policies: false,
    });
    cleanups.push(() => api.dispose());
    await (await fetch(`${pb.url}/`)).text(); // b's connection open, as in a running service
    pa.freeze();
    const answers: string[] = [];
    for (let i = 0; i < 10; i++) {
      answers.push(
        await api
          .execute(async (e, { signal }) => (await fetch(`${e.target}/`, { signal })).text())
          .catch(() => 'failed'),
      );
    }
    expect(answers).toEqual(Array(10).fill('b'));
    expect(ejected).toEqual(['a']);
  });

  // Passing edge: both endpoints dead (connections refused and reset), then back. Calls fail
  // while they are down, never hang, and succeed again within a bounded time after.
  it('all endpoints down then back: calls fail fast, then recover within 3 s', async () => {
    const [a, b] = await Promise.all([countingServer('a'), countingServer('b')]);
    const [pa, pb] = await Promise.all([
      faultProxy({ target: { port: a.port }, bus: createBus() }),
      faultProxy({ target: { port: b.port }, bus: createBus() }),
    ]);
    cleanups.push(
      () => a.close(),
      () => b.close(),
      () => pa.close(),
      () => pb.close(),
    );
    const api = failover({
      endpoints: [pa.url, pb.url],
      timeout: 500,
      retry: { idempotent: true },
      ejection: { consecutiveFailures: 2, baseTime: 300, maxTime: 600 },
      bus: createBus(),
      policies: false,
    });
    cleanups.push(() => api.dispose());
    const get = () =>
      api
        .execute(async (e, { signal }) => (await fetch(`${e.target}/`, { signal })).text())
        .then(
          () => true,
          () => false,
        );
    await Promise.all([pa.kill(), pb.kill()]);
    const down: boolean[] = [];
    const started = Date.now();
    for (let i = 0; i < 10; i++) down.push(await get());
    expect(down.filter(Boolean)).toHaveLength(0);
    expect(Date.now() - started).toBeLessThan(5_000);
    await Promise.all([pa.restore(), pb.restore()]);
    const deadline = Date.now() + 3_000;
    let okInARow = 0;
    while (Date.now() < deadline && okInARow < 10) {
      okInARow = (await get()) ? okInARow + 1 : 0;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(okInARow).toBe(10);
  });
});

describe('failover, hostile review: checks and listeners that misbehave', () => {
  // Passing edge: a health check that throws synchronously and one that hangs and ignores its
  // signal both mark their endpoint unhealthy; calls keep flowing to the healthy one.
  it('health checks that throw synchronously or hang make endpoints unhealthy, nothing else', async () => {
    const { api, clock, of } = hostileSet({
      panicThreshold: 0,
      endpoints: ['a', 'b', 'c'],
      health: {
        check: (e) => {
          if (e.name === 'a') throw new Error('sync throw');
          if (e.name === 'b') return new Promise(noop);
          return true;
        },
        interval: 1_000,
        timeout: 100,
        jitter: 0,
        unhealthyAfter: 2,
      },
    });
    await clock.advance(3_000);
    expect(of('health.change').map((e) => [e.endpoint, e.healthy])).toEqual([
      ['a', false],
      ['b', false],
    ]);
    const names = new Set<string>();
    for (let i = 0; i < 5; i++) names.add(await api.execute((e) => e.name));
    expect([...names]).toEqual(['c']);
  });

  // Passing edge: listeners that throw on every event never break the call they observe.
  it('a listener that throws on every event breaks no call', async () => {
    const bus = createBus({ onListenerError: noop });
    bus.on('*', () => {
      throw new Error('listener bug');
    });
    const api = failover({
      bus,
      policies: false,
      endpoints: ['a', 'b'],
      ejection: { consecutiveFailures: 1, baseTime: 1_000 },
    });
    cleanups.push(() => api.dispose());
    const answers: string[] = [];
    for (let i = 0; i < 4; i++) {
      answers.push(
        await api.execute((e) => {
          if (e.name === 'a') throw refusedError();
          return e.name;
        }),
      );
    }
    expect(answers).toEqual(['b', 'b', 'b', 'b']);
  });
});

describe('failover, hostile review: timers', () => {
  // A user sets a very long health interval (23 days, inside the accepted range) to all but turn
  // checks off. With the default jitter the next wait exceeds Node's timer limit, Node clamps it to
  // 1 ms (TimeoutOverflowWarning), and the check runs ~1,000 times a second against every
  // endpoint: a self-inflicted flood. Likely cause: packages/failover/src/health.ts #nextDelay()
  // adds up to `jitter` x interval on top of an interval capped at 2^31-1 ms, and nothing caps the sum.
  it('a health interval at the top of its range never turns into a 1 ms loop', async () => {
    let checks = 0;
    const draws = [0];
    const api = failover({
      bus: createBus(),
      policies: false,
      endpoints: ['a'],
      random: () => draws.shift() ?? 0.99,
      health: {
        check: () => {
          checks++;
          return true;
        },
        interval: 2_100_000_000,
      },
    });
    cleanups.push(() => api.dispose());
    await new Promise((r) => setTimeout(r, 300));
    expect(checks).toBe(1);
  });

  // Passing edge: a script that builds a set with health checks, role discovery, ejection, timeouts
  // and an anomaly watch acting on it, makes calls (one times out, one fails) and returns without
  // dispose() exits on its own.
  it('nothing holds the process open, disposed or not', async () => {
    const { code, stdout } = await script('hostile-exit.ts');
    expect(stdout.trim()).toBe('done');
    expect(code).toBe(0); // exited on its own within 10 s of its work: null when killed
  }, 100_000);
});

/**
 * Runs a support script as a user's process: node with tsx, which compiles the sources first.
 * That start took 19 s on a loaded machine (3 busy loops on 2 cores), against a 20 s kill from
 * the spawn: killed mid-start, the script failed (exit null). A process held open is caught from
 * its first line of output on: killed if it has not exited `exitWithinMs` later. One that never
 * prints (a call that never settles) is killed at `printWithinMs`.
 */
function script(
  name: string,
  args: string[] = [],
  { printWithinMs = 80_000, exitWithinMs = 10_000 } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      ['--conditions=@holdfast/source', '--import', 'tsx', join(import.meta.dirname, 'support', name), ...args],
      { cwd: import.meta.dirname, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    let limit = setTimeout(() => child.kill('SIGKILL'), printWithinMs);
    child.stdout.on('data', (chunk: Buffer) => {
      if (stdout === '') {
        clearTimeout(limit);
        limit = setTimeout(() => child.kill('SIGKILL'), exitWithinMs);
      }
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('close', (code) => {
      clearTimeout(limit);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('failover, hostile review: an isFailure that throws', () => {
  const run = (mode: 'timeout' | 'none') => script('hostile-isfailure.ts', [mode]);

  // The README's `isFailure(error)` is where users write `(err) => err.response.status >= 500`, as
  // for an HTTP client. A refused connection has no `response`: with `timeout` set, the TypeError
  // escapes as an UNHANDLED REJECTION and the process crashes (exit 1), and the call itself would
  // never have settled (its timer and abort listener are already gone). `roles.classify` is
  // guarded for exactly this; `isFailure` is not. Likely cause: packages/failover/src/failover.ts
  // #try, the rejection handler of the timed path (`settle(... this.#judge(e, error))`) throws,
  // and #counts() calls `isFailure` unguarded.
  it('with a per-try timeout, a throwing isFailure neither crashes the process nor hangs the call', async () => {
    const { code, stdout, stderr } = await run('timeout');
    expect(stderr).not.toMatch(/TypeError/);
    expect(code).toBe(0);
    expect(stdout.trim()).toBe('rejected: connect ECONNREFUSED 10.0.0.1:443');
  }, 100_000);

  // Without a timeout the call settles, but with the isFailure's TypeError instead of the real
  // ECONNREFUSED, and the refused call (safe to retry by default) is not retried on b.
  it('without a timeout, a throwing isFailure still gives the real error, after the retry', async () => {
    const { code, stdout } = await run('none');
    expect(code).toBe(0);
    expect(stdout.trim()).toBe('rejected: connect ECONNREFUSED 10.0.0.1:443');
  }, 100_000);
});

describe('failover, hostile review: a roles.compare that throws', () => {
  // Split brain: two servers claim primary and the user's `compare` throws on one token (a server
  // that reports none: `(a, b) => a[0] - b[0]`). The TypeError escapes from the role check's
  // promise as an UNHANDLED REJECTION: the process crashes, at the exact moment (two primaries)
  // fencing exists for. Expected: a throwing compare is a tie (both fenced, E_NO_PRIMARY), as
  // `classify` and `check` are guarded. Likely cause: packages/failover/src/failover.ts
  // #electPrimary() calls `this.#compare` unguarded, from RoleDiscovery's `void this.#run(...)`.
  it('does not crash the process; the write is refused or goes to the one primary with a token', async () => {
    const { code, stdout } = await script('hostile-compare.ts');
    expect(code).toBe(0);
    expect(stdout.trim()).toMatch(/^(wrote to a|rejected: E_NO_PRIMARY)$/);
  }, 100_000);
});

describe('failover, hostile review: consistent hashing as the README promises', () => {
  // Passing edge, a property: draining one endpoint moves only the keys it held; undraining it
  // brings every key back where it was.
  it("drain moves only the drained endpoint's keys, and undrain brings them all back", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 2, max: 8 }),
        fc.uniqueArray(fc.string({ minLength: 1, maxLength: 12 }), { minLength: 20, maxLength: 60 }),
        fc.nat(),
        async (n, keys, which) => {
          const names = Array.from({ length: n }, (_, i) => `e${i}`);
          const api = failover({
            bus: createBus(),
            policies: false,
            balancer: 'consistent-hash',
            panicThreshold: 0,
            endpoints: names,
          });
          try {
            const where = async () => {
              const out = new Map<string, string>();
              for (const key of keys) out.set(key, await api.execute((e) => e.name, { key }));
              return out;
            };
            const before = await where();
            const gone = names[which % n] as string;
            await api.drain(gone);
            const during = await where();
            for (const key of keys) {
              if (before.get(key) !== gone && during.get(key) !== before.get(key)) return false;
              if (during.get(key) === gone) return false;
            }
            api.undrain(gone);
            const after = await where();
            return keys.every((key) => after.get(key) === before.get(key));
          } finally {
            api.dispose();
          }
        },
      ),
      { numRuns: 60, seed: 77 },
    );
  });
});

describe('failover, hostile review: no retry storm in a total outage', () => {
  // Passing edge: every endpoint refuses connections (retryable by default) for 10 s at 100
  // calls a second: the default budget keeps the load at about 1.2 attempts per call, as the
  // README promises, not maxAttempts per call.
  it('a total outage costs at most about 1.2 attempts per call', async () => {
    const { api, clock } = hostileSet({
      endpoints: ['a', 'b', 'c', 'd'],
      retry: { maxAttempts: 4 },
      ejection: false,
    });
    let attempts = 0;
    let calls = 0;
    for (let second = 0; second < 10; second++) {
      for (let i = 0; i < 100; i++) {
        calls++;
        await api
          .execute(() => {
            attempts++;
            throw refusedError();
          })
          .catch(noop);
        await clock.advance(10);
      }
    }
    expect(calls).toBe(1_000);
    expect(attempts / calls).toBeLessThanOrEqual(1.25);
  });
});

describe('failover, hostile review: a property of the state machine', () => {
  // Any sequence of calls that pass or fail, time passing, drains and undrains: no call ever
  // reaches a drained endpoint, the ejected share never exceeds maxShare (one always allowed),
  // in-flight counts return to zero.
  it('never calls a drained endpoint and never ejects more than maxShare', async () => {
    type Op =
      | { kind: 'call'; fails: readonly boolean[] }
      | { kind: 'advance'; ms: number }
      | { kind: 'drain'; i: number }
      | { kind: 'undrain'; i: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ kind: fc.constant('call' as const), fails: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }) }),
      fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 3_000 }) }),
      fc.record({ kind: fc.constant('drain' as const), i: fc.integer({ min: 0, max: 3 }) }),
      fc.record({ kind: fc.constant('undrain' as const), i: fc.integer({ min: 0, max: 3 }) }),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(op, { maxLength: 60 }),
        fc.constantFrom('round-robin', 'least-connections', 'consistent-hash', 'p2c-ewma') as fc.Arbitrary<
          'round-robin' | 'least-connections' | 'consistent-hash' | 'p2c-ewma'
        >,
        fc.constantFrom('active-active', 'active-passive') as fc.Arbitrary<'active-active' | 'active-passive'>,
        async (ops, balancer, mode) => {
          const { clock, bus } = hostileHarness();
          const names = ['a', 'b', 'c', 'd'];
          const api = failover({
            clock,
            bus,
            policies: false,
            mode,
            balancer,
            endpoints: names.map((name, i) => ({ name, target: i, priority: i })),
            ejection: { consecutiveFailures: 2, baseTime: 500, maxTime: 2_000, maxShare: 0.5 },
            retry: { idempotent: true, maxAttempts: 3, budget: false },
            holdDown: 1_000,
          });
          const drained = new Set<string>();
          try {
            for (const o of ops) {
              if (o.kind === 'call') {
                await api
                  .execute(
                    (e) => {
                      if (drained.has(e.name)) throw new Error(`call reached drained ${e.name}`);
                      if (o.fails[e.target as number]) throw new Error('fail');
                      return e.name;
                    },
                    { key: 'k' },
                  )
                  .catch((e: Error) => {
                    if (e.message.startsWith('call reached')) throw e;
                  });
              } else if (o.kind === 'advance') await clock.advance(o.ms);
              else if (o.kind === 'drain') {
                drained.add(names[o.i] as string);
                void api.drain(names[o.i] as string);
              } else {
                drained.delete(names[o.i] as string);
                api.undrain(names[o.i] as string);
              }
              const snap = api.snapshot();
              const ejected = snap.endpoints.filter((e) => e.ejection !== 'none').length;
              if (ejected > 2) throw new Error(`${ejected} of 4 ejected with maxShare 0.5`);
              if (snap.endpoints.some((e) => e.inFlight !== 0)) throw new Error('a call left in flight');
            }
          } finally {
            api.dispose();
          }
        },
      ),
      { numRuns: 150, seed: 20_261_202 },
    );
  });
});
