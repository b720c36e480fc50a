import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Clock, createBus, realClock, type TimerHandle } from '@holdfast/core';
import express from 'express';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { HOUR, stepWallClock } from '../../../test/support/wall-clock.js';
import { idempotency } from '../src/express.js';
import { idempotency as fastifyIdempotency } from '../src/fastify.js';
import { type IdempotencyStore, idempotent, memoryStore, StoreUnavailableError } from '../src/index.js';
import { closeAll, closers, listenNode } from './http-support/body-apps.js';
import { expectLost, gate, keyedPost, leaveWhile, sendKeyed, settledRetry } from './http-support/leave.js';

// Date.now() steps (stepWallClock) as NTP, a VM resume or a hand-set date step it, while Node's
// timers and performance.now() run on: no lease, TTL, sweep, wait or response-lost timer may
// follow the step. A +1 h step expired every record under an hour's TTL (a retried POST ran its
// effect twice); a -1 h step held a crashed handler's lease, or a caller's wait, for an hour.

afterEach(closeAll);

const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The real clock, counting the timers it set that are still pending (neither fired nor cleared). */
function countingClock() {
  const live = new Set<TimerHandle>();
  let set = 0;
  let fired = 0;
  const clock: Clock = {
    now: () => realClock.now(),
    monotonic: () => (realClock.monotonic as () => number)(),
    setTimeout(callback, ms, options) {
      set++;
      const handle = realClock.setTimeout(
        () => {
          live.delete(handle);
          fired++;
          callback();
        },
        ms,
        options,
      );
      live.add(handle);
      return handle;
    },
    clearTimeout(handle) {
      live.delete(handle);
      realClock.clearTimeout(handle);
    },
  };
  return { clock, live, set: () => set, fired: () => fired };
}

/** Resolves once `done()` holds, checked every 10 ms, at most 300 times. */
async function until(done: () => boolean): Promise<void> {
  for (let turn = 0; turn < 300 && !done(); turn++) await tick(10);
  expect(done()).toBe(true);
}

/** Express: the middleware on POST /orders with `handler` after it, counting its runs. */
async function expressApp(
  handler: express.RequestHandler,
  options: Partial<Parameters<typeof idempotency>[0]> & { store?: IdempotencyStore } = {},
) {
  const store = options.store ?? memoryStore();
  const app = express();
  app.use(idempotency({ scope: 'global', bus: createBus(), ...options, store }));
  const ran = { count: 0 };
  app.post('/orders', (req, res, next) => {
    ran.count++;
    handler(req, res, next);
  });
  return { port: await listenNode(createServer(app)), ran };
}

/** Fastify: the plugin and the routes `setup` adds. */
async function fastifyApp(setup: (app: FastifyInstance, ran: { count: number }) => void, leaseMs = 60_000) {
  const app = Fastify();
  closers.push(() => app.close());
  await app.register(fastifyIdempotency, {
    store: memoryStore(),
    scope: 'global',
    bus: createBus(),
    leaseMs,
    maxRunMs: leaseMs,
    ttlMs: 60_000,
  });
  const ran = { count: 0 };
  setup(app, ran);
  await app.listen({ port: 0, host: '127.0.0.1' });
  return { port: (app.server.address() as AddressInfo).port, ran };
}

const retry = (port: number) => sendKeyed(`http://127.0.0.1:${port}/orders`);

describe('memoryStore() through idempotent(): wall-clock steps, real clock', () => {
  it('a completed key under a 60 s TTL still replays after the wall clock steps forward an hour: the function ran once', async () => {
    const store = memoryStore();
    let runs = 0;
    const charge = idempotent(async (_id: string) => ++runs, {
      store,
      key: (id) => id,
      ttlMs: 60_000,
      bus: createBus(),
    });
    expect(await charge('order-1')).toBe(1);
    stepWallClock(HOUR);
    expect(await charge('order-1')).toBe(1);
    expect(runs).toBe(1);
    store.dispose();
  });

  it('a running call keeps its 60 s lease across a step forward of an hour: the duplicate gets a conflict, not a takeover', async () => {
    const store = memoryStore();
    const running = gate();
    const done = gate();
    let runs = 0;
    const charge = idempotent(
      async (_id: string, ctx) => {
        runs++;
        if (ctx.takeover) return runs;
        running.open();
        await done.opened;
        return runs;
      },
      { store, key: (id) => id, bus: createBus() },
    );
    const first = charge('order-1');
    await running.opened;
    stepWallClock(HOUR);
    await expect(charge('order-1')).rejects.toMatchObject({ code: 'E_IDEMPOTENCY_CONFLICT' });
    done.open();
    expect(await first).toBe(1);
    expect(runs).toBe(1);
    store.dispose();
  });

  it('a hung call with a 100 ms lease is taken over after its lease, not an hour later, across a step back of an hour', async () => {
    const store = memoryStore();
    const takeovers: boolean[] = [];
    const charge = idempotent(
      async (_id: string, ctx) => {
        takeovers.push(ctx.takeover);
        if (!ctx.takeover) await new Promise(() => {}); // hangs, as a crashed handler's claim does
        return 'charged';
      },
      // maxRunMs = leaseMs: no renewal, as a crashed handler's claim has none.
      { store, key: (id) => id, leaseMs: 100, maxRunMs: 100, bus: createBus() },
    );
    void charge('order-1');
    await until(() => takeovers.length === 1);
    stepWallClock(-HOUR);
    let answer: unknown;
    for (let turn = 0; turn < 100 && answer === undefined; turn++) {
      answer = await charge('order-1').catch((error: { code?: string }) => {
        if (error.code !== 'E_IDEMPOTENCY_CONFLICT') throw error;
        return undefined;
      });
      if (answer === undefined) await tick(20);
    }
    expect(answer).toBe('charged');
    expect(takeovers).toEqual([false, true]);
    store.dispose();
  });

  it('the sweep keeps a record under a 60 s TTL after a step forward of an hour', async () => {
    const timers = countingClock();
    const store = memoryStore({ sweepInterval: 10, clock: timers.clock });
    const claim = await store.claim('k', 'f', 60_000);
    if (claim.status !== 'claimed') throw new Error(claim.status);
    await store.complete('k', claim.token, { kind: 'value', value: 1 }, 60_000);
    stepWallClock(HOUR);
    const swept = timers.fired();
    await until(() => timers.fired() >= swept + 3);
    expect(store.size).toBe(1);
    store.dispose();
  });

  it('the sweep drops a record whose 50 ms TTL ran out after a step back of an hour (not an hour later)', async () => {
    const store = memoryStore({ sweepInterval: 10 });
    const claim = await store.claim('k', 'f', 60_000);
    if (claim.status !== 'claimed') throw new Error(claim.status);
    await store.complete('k', claim.token, { kind: 'value', value: 1 }, 50);
    stepWallClock(-HOUR);
    await until(() => store.size === 0);
    store.dispose();
  });

  it("a record's times stay epoch ms: when it was made, and when it is forgotten on today's wall clock", async () => {
    const store = memoryStore();
    const before = Date.now();
    const claim = await store.claim('k', 'f', 60_000);
    if (claim.status !== 'claimed') throw new Error(claim.status);
    await store.complete('k', claim.token, { kind: 'value', value: 1 }, 60_000);
    const after = Date.now();
    stepWallClock(HOUR);
    const replay = await store.claim('k', 'f', 60_000);
    if (replay.status !== 'completed') throw new Error(replay.status);
    const { createdAt, completedAt, expiresAt } = replay.record;
    expect(createdAt).toBeGreaterThanOrEqual(before);
    expect(completedAt).toBeLessThanOrEqual(after);
    expect(createdAt).toBeLessThanOrEqual(completedAt);
    // Forgotten within its TTL from now, on the wall clock as it reads now.
    expect(expiresAt).toBeGreaterThan(Date.now());
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + 60_000);
    store.dispose();
  });
});

describe('memoryStore() under the HTTP middleware: wall-clock steps, real clock', () => {
  it('express: a stored 201 under a 60 s TTL replays after the wall clock steps forward an hour: the handler ran once', async () => {
    const { port, ran } = await expressApp((_req, res) => void res.status(201).send('made'), { ttlMs: 60_000 });
    expect(await retry(port)).toMatchObject({ status: 201, replayed: null, body: 'made' });
    stepWallClock(HOUR);
    expect(await retry(port)).toMatchObject({ status: 201, replayed: 'true', body: 'made' });
    expect(ran.count).toBe(1);
  });

  it('fastify: a stored 201 under a 60 s TTL replays after the wall clock steps forward an hour: the handler ran once', async () => {
    const { port, ran } = await fastifyApp((app, ran) => {
      app.post('/orders', async (_request, reply) => {
        ran.count++;
        return reply.code(201).type('text/plain').send('made');
      });
    });
    expect(await retry(port)).toMatchObject({ status: 201, replayed: null, body: 'made' });
    stepWallClock(HOUR);
    expect(await retry(port)).toMatchObject({ status: 201, replayed: 'true', body: 'made' });
    expect(ran.count).toBe(1);
  });

  it('express: a request in flight keeps its 60 s lease across a step forward of an hour: the retry gets 409, then the replay', async () => {
    const running = gate();
    const done = gate();
    const { port, ran } = await expressApp(async (_req, res) => {
      if (ran.count > 1) return void res.status(201).send('made again');
      running.open();
      await done.opened;
      res.status(201).send('made');
    });
    const first = retry(port);
    await running.opened;
    stepWallClock(HOUR);
    expect((await retry(port)).status).toBe(409);
    done.open();
    expect((await first).status).toBe(201);
    expect(await retry(port)).toMatchObject({ status: 201, replayed: 'true' });
    expect(ran.count).toBe(1);
  });
});

describe('idempotent() wait: wall-clock steps, real clock', () => {
  it('a caller waiting up to 5 s gets the replay when the wall clock steps forward an hour while it waits, not a conflict', async () => {
    const timers = countingClock();
    const store = memoryStore();
    const done = gate();
    let runs = 0;
    const charge = idempotent(
      async (_id: string) => {
        runs++;
        await done.opened;
        return 'charged';
      },
      { store, key: (id) => id, wait: { timeout: 5_000, interval: 10 }, clock: timers.clock, bus: createBus() },
    );
    const first = charge('order-1');
    const second = charge('order-1');
    await until(() => timers.set() > 0); // the second is waiting
    stepWallClock(HOUR);
    await tick(30);
    done.open();
    expect(await first).toBe('charged');
    expect(await second).toBe('charged');
    expect(runs).toBe(1);
    store.dispose();
  });

  it('a caller waiting up to 200 ms gets its conflict then when the wall clock steps back an hour while it waits, not an hour later', async () => {
    const timers = countingClock();
    const store = memoryStore();
    const stop = new AbortController();
    const charge = idempotent(async (_id: string) => new Promise<string>(() => {}), {
      store,
      key: (id) => id,
      wait: { timeout: 200, interval: 10 },
      clock: timers.clock,
      bus: createBus(),
    });
    void charge('order-1');
    const second = charge('order-1', { signal: stop.signal }).then(
      () => 'ran',
      (error: { code?: string }) => error.code,
    );
    await until(() => timers.set() > 0);
    stepWallClock(-HOUR);
    const answer = await Promise.race([second, tick(2_000).then(() => 'still waiting after 2 s')]);
    stop.abort();
    expect(answer).toBe('E_IDEMPOTENCY_CONFLICT');
    store.dispose();
  });
});

/** A store in another process whose completions fail with E_STORE_UNAVAILABLE `failures` times (then reach `inner`). */
function failingStore(failures: number, onFailure: () => void) {
  const inner = memoryStore();
  let completes = 0;
  const store: IdempotencyStore = {
    claim: (key, fingerprint, leaseMs) => inner.claim(key, fingerprint, leaseMs),
    complete: async (key, token, outcome, ttlMs) => {
      if (++completes <= failures) {
        onFailure();
        throw new StoreUnavailableError('failing', 'complete', key, 'a failover');
      }
      return inner.complete(key, token, outcome, ttlMs);
    },
    release: (key, token) => inner.release(key, token),
  };
  return { store, completes: () => completes };
}

describe('HTTP middleware waits and completion retries: wall-clock steps, real clock', () => {
  it('express wait: a retry waiting up to 5 s gets the replay when the wall clock steps forward an hour while it waits, not a 409', async () => {
    const timers = countingClock();
    const running = gate();
    const done = gate();
    const { port, ran } = await expressApp(
      async (_req, res) => {
        running.open();
        await done.opened;
        res.status(201).send('made');
      },
      { wait: { timeout: 5_000, interval: 10 }, clock: timers.clock },
    );
    const first = retry(port);
    await running.opened;
    const second = retry(port);
    await until(() => timers.set() > 0); // the second is waiting
    stepWallClock(HOUR);
    await tick(30);
    done.open();
    expect((await first).status).toBe(201);
    expect(await second).toMatchObject({ status: 201, replayed: 'true', body: 'made' });
    expect(ran.count).toBe(1);
  });

  it('express wait: a retry waiting up to 200 ms gets its 409 then when the wall clock steps back an hour while it waits', async () => {
    const timers = countingClock();
    const running = gate();
    const { port, ran } = await expressApp(
      () => {
        running.open(); // never answers
      },
      { wait: { timeout: 200, interval: 10 }, clock: timers.clock },
    );
    void retry(port).catch(() => {});
    await running.opened;
    const second = retry(port).catch((error: Error) => error.name);
    await until(() => timers.set() > 0);
    stepWallClock(-HOUR);
    expect(await second).toMatchObject({ status: 409 });
    expect(ran.count).toBe(1);
  });

  it('express: a completion that fails twice is still retried when the wall clock steps forward an hour: the retry gets the replay', async () => {
    let stepped = false;
    const { store, completes } = failingStore(2, () => {
      if (!stepped) stepWallClock(HOUR);
      stepped = true;
    });
    const { port, ran } = await expressApp((_req, res) => void res.status(201).send('made'), { store });
    expect((await retry(port)).status).toBe(201);
    expect(completes()).toBe(3);
    expect(await retry(port)).toMatchObject({ status: 201, replayed: 'true' });
    expect(ran.count).toBe(1);
  });

  it('express: completions failing for good are given up after completeTimeoutMs (300 ms), not an hour, when the wall clock steps back an hour', async () => {
    let stepped = false;
    const { store, completes } = failingStore(Number.POSITIVE_INFINITY, () => {
      if (!stepped) stepWallClock(-HOUR);
      stepped = true;
    });
    const { port } = await expressApp((_req, res) => void res.status(201).send('made'), {
      store,
      completeTimeoutMs: 300,
    });
    // Bounded (3 s): the response waits for its completion.
    expect((await retry(port)).status).toBe(201);
    expect(completes()).toBeLessThanOrEqual(5);
  });
});

describe('HTTP middleware: the response-lost timer of a run whose client left', () => {
  it('express: a handler that never answers once its client left gets the response-lost problem at its 400 ms lease end across a step back of an hour: no second run', async () => {
    const running = gate();
    const { port, ran } = await expressApp(
      (req, res) => {
        if (ran.count > 1) return void res.status(201).send('ran again');
        stepWallClock(-HOUR);
        running.open();
        req.once('close', () => {}); // the charge was made; nobody to answer
      },
      { leaseMs: 400, maxRunMs: 400 }, // a fixed lease, as on a store without extend
    );
    await leaveWhile(port, keyedPost('/orders'), running.opened);
    expectLost(await settledRetry(port));
    expect(ran.count).toBe(1);
  });

  it('fastify: an async handler whose promise never settles once its client left gets the response-lost problem at its 400 ms lease end across a step back of an hour: no second run', async () => {
    const running = gate();
    const { port, ran } = await fastifyApp((app, ran) => {
      app.post('/orders', async (_request, reply) => {
        if (++ran.count > 1) return reply.code(201).send('ran again');
        stepWallClock(-HOUR);
        running.open();
        await new Promise(() => {});
      });
    }, 400);
    await leaveWhile(port, keyedPost('/orders'), running.opened);
    expectLost(await settledRetry(port));
    expect(ran.count).toBe(1);
  });

  it('express: a response its client left, then ended by the handler, is stored whole across a step forward of an hour (not the response-lost problem at once)', async () => {
    const wrote = gate();
    const more = gate();
    const { port, ran } = await expressApp(async (_req, res) => {
      res.status(201).type('text/plain');
      res.write('part one, ');
      stepWallClock(HOUR);
      wrote.open();
      await more.opened;
      res.end('part two');
    });
    await leaveWhile(
      port,
      keyedPost('/orders'),
      wrote.opened.then(() => tick(20)),
    );
    await tick(20);
    more.open();
    expect(await settledRetry(port)).toMatchObject({ status: 201, replayed: 'true', body: 'part one, part two' });
    expect(ran.count).toBe(1);
  });
  it('express: is cleared when the handler ends the response first (it held the run for the 60 s lease)', async () => {
    const timers = countingClock();
    const wrote = gate();
    const more = gate();
    const { port, ran } = await expressApp(
      async (_req, res) => {
        res.status(201).type('text/plain');
        res.write('part one, ');
        wrote.open();
        await more.opened;
        res.end('part two');
      },
      // No lease renewal: only the response-lost timer is counted.
      { clock: timers.clock, maxRunMs: 60_000 },
    );
    await leaveWhile(
      port,
      keyedPost('/orders'),
      wrote.opened.then(() => tick(20)),
    );
    await until(() => timers.set() === 1); // the response-lost timer
    more.open();
    expect(await settledRetry(port)).toMatchObject({ status: 201, replayed: 'true', body: 'part one, part two' });
    expect(ran.count).toBe(1);
    expect(timers.live.size).toBe(0);
  });

  it('fastify: is cleared when the hijacked handler ends the response first', async () => {
    const timers = countingClock();
    const wrote = gate();
    const more = gate();
    const app = Fastify();
    closers.push(() => app.close());
    await app.register(fastifyIdempotency, {
      store: memoryStore(),
      scope: 'global',
      bus: createBus(),
      clock: timers.clock,
      maxRunMs: 60_000, // no lease renewal: only the response-lost timer is counted
    });
    let ran = 0;
    app.post('/orders', async (_request, reply) => {
      ran++;
      reply.hijack();
      reply.raw.writeHead(201, { 'content-type': 'text/plain' });
      reply.raw.write('part one, ');
      wrote.open();
      await more.opened;
      reply.raw.end('part two');
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as AddressInfo).port;
    await leaveWhile(
      port,
      keyedPost('/orders'),
      wrote.opened.then(() => tick(20)),
    );
    await until(() => timers.set() === 1);
    more.open();
    expect(await settledRetry(port)).toMatchObject({ status: 201, replayed: 'true', body: 'part one, part two' });
    expect(ran).toBe(1);
    expect(timers.live.size).toBe(0);
  });
});
