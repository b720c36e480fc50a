import type { AddressInfo } from 'node:net';
import { type Clock, createBus, ManualClock } from '@holdfast/core';
import express from 'express';
import Fastify from 'fastify';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { HOUR, stepWallClock } from '../../../test/support/wall-clock.js';
import { idempotency as expressIdempotency } from '../src/express.js';
import { idempotency as fastifyIdempotency } from '../src/fastify.js';
import { type IdempotencyStore, idempotent, memoryStore } from '../src/index.js';
import { IN_PROCESS } from '../src/memory-store.js';
import { send, settableClock } from './http-support/support.js';

// Review of 5ae09ced: memoryStore() records keep createdAt/completedAt as ms since the store was
// made (`#epoch + created`), and the HTTP engine asks the store (StoreNow v7 `createdAt()`) for
// the date of a record it got from the store's calls without a promise. What a user sees must be
// what the store's clock read, exactly (store.ts: "epoch ms, the store's clock"), whatever that
// clock is, and whichever path (claim, replay event of idempotent(), Express, Fastify, Fastify's
// early replay) hands it out.

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(closers.splice(0).map((close) => close()));
});

const EPOCH = 1_765_000_000_000;
const BODY = '{"amount":4200}';

/** Claims and completes `key`; the readings of the store's clock at each, and the record handed out after. */
async function dated(store: IdempotencyStore, clock: Clock, key: string, between: () => unknown) {
  const claimedAt = clock.now();
  const claim = await store.claim(key, 'f', 60_000);
  if (claim.status !== 'claimed') throw new Error(claim.status);
  await between();
  const completedAt = clock.now();
  await store.complete(key, claim.token, { kind: 'value', value: 1 }, 60_000);
  const replay = await store.claim(key, 'f', 60_000);
  if (replay.status !== 'completed') throw new Error(replay.status);
  return { claimedAt, completedAt, record: replay.record };
}

describe('memoryStore record dates are the clock readings, exactly', () => {
  // Red on 5ae09ced: `#epoch + (reading - #epoch)` rounds a fractional reading once the reading
  // is less than half the store's epoch (or of the other sign): the difference is then a double
  // larger than the reading, with fewer bits left for its fraction.
  it('a ManualClock stepped back from the present to a fractional time near 0', async () => {
    const clock = new ManualClock(EPOCH);
    const store = memoryStore({ clock });
    await clock.advance(-EPOCH);
    await clock.advance(0.1);
    const { claimedAt, completedAt, record } = await dated(store, clock, 'a', () => clock.advance(0.25));
    expect([record.createdAt, record.completedAt]).toEqual([claimedAt, completedAt]);
    store.dispose();
  });

  it('a user clock (no monotonic()) made at a negative time, read at a positive fractional one', async () => {
    const wall = settableClock(-EPOCH);
    const store = memoryStore({ clock: wall.clock });
    wall.set(EPOCH + 0.7);
    const { claimedAt, completedAt, record } = await dated(store, wall.clock, 'a', () => wall.set(EPOCH + 1.3));
    expect([record.createdAt, record.completedAt]).toEqual([claimedAt, completedAt]);
    store.dispose();
  });

  it('a huge ManualClock (past 2^53 ms) and a fraction', async () => {
    const clock = new ManualClock(2 ** 60);
    const store = memoryStore({ clock });
    await clock.advance(123.456 - 2 ** 60);
    const { claimedAt, completedAt, record } = await dated(store, clock, 'a', () => clock.advance(1));
    expect([record.createdAt, record.completedAt]).toEqual([claimedAt, completedAt]);
    store.dispose();
  });

  it('the replay event of the Fastify early replay, on a clock stepped back to a fraction', async () => {
    const wall = settableClock(EPOCH);
    const store = memoryStore({ clock: wall.clock });
    const bus = createBus();
    const replays: (number | undefined)[] = [];
    bus.on('idempotency.replay', (event) => replays.push(event.createdAt));
    const app = Fastify();
    closers.push(() => app.close());
    await app.register(fastifyIdempotency, { store, scope: 'global', bus });
    let runs = 0;
    app.post('/orders', async (_request, reply) => reply.code(201).send({ id: ++runs }));
    await app.listen({ port: 0, host: '127.0.0.1' });
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/orders`;
    const send = async () => {
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': 'k' },
        body: BODY,
      });
      await response.text();
      return response.status;
    };
    wall.set(1234.5678);
    expect(await send()).toBe(201);
    wall.set(99_999.5);
    expect(await send()).toBe(201);
    expect(runs).toBe(1);
    expect(replays).toEqual([1234.5678]);
    store.dispose();
  });
});

describe('what held (pinned here: no test covered these before)', () => {
  it('vitest fake timers: setSystemTime before and after the store is made, fractional advances', async () => {
    vi.useFakeTimers({ now: EPOCH });
    const early = memoryStore();
    vi.setSystemTime(0);
    const late = memoryStore();
    vi.setSystemTime(new Date('2100-01-01T00:00:00.000Z').getTime() + 0.25);
    for (const store of [early, late]) {
      const { claimedAt, completedAt, record } = await dated(store, { now: () => Date.now() } as Clock, 'a', () =>
        vi.advanceTimersByTime(0.5),
      );
      expect([record.createdAt, record.completedAt]).toEqual([claimedAt, completedAt]);
      vi.setSystemTime(new Date('2100-01-01T00:00:00.000Z').getTime() + 2 ** 31 + 0.25);
      store.dispose();
    }
  });

  it('a takeover keeps the first claim date; completedAt is the completion (ManualClock, fractions)', async () => {
    const clock = new ManualClock(EPOCH + 0.125);
    const store = memoryStore({ clock });
    await clock.advance(2 ** 31);
    const first = await store.claim('k', 'f', 1_000);
    if (first.status !== 'claimed') throw new Error(first.status);
    await clock.advance(1_500.5);
    const second = await store.claim('k', 'f', 1_000);
    expect(second).toMatchObject({ status: 'claimed', takeover: true });
    if (second.status !== 'claimed') throw new Error(second.status);
    await clock.advance(0.25);
    await store.complete('k', second.token, { kind: 'value', value: 1 }, 60_000);
    const replay = await store.claim('k', 'f', 1_000);
    if (replay.status !== 'completed') throw new Error(replay.status);
    expect([replay.record.createdAt, replay.record.completedAt]).toEqual([
      EPOCH + 0.125 + 2 ** 31,
      EPOCH + 0.125 + 2 ** 31 + 1_500.75,
    ]);
    store.dispose();
  });

  it("idempotent()'s replay event: the first call's date, 2^31 ms and more after the store was made", async () => {
    const clock = new ManualClock(EPOCH + 0.5);
    const store = memoryStore({ clock });
    const bus = createBus();
    const replays: (number | undefined)[] = [];
    bus.on('idempotency.replay', (event) => replays.push(event.createdAt));
    const charge = idempotent(async (n: number) => n * 2, { store, bus, key: () => 'order-1' });
    await clock.advance(3e9 + 0.25);
    expect(await charge(21)).toBe(42);
    await clock.advance(5);
    expect(await charge(21)).toBe(42);
    expect(replays).toEqual([EPOCH + 3e9 + 0.75]);
    store.dispose();
  });

  for (const framework of ['express', 'fastify'] as const) {
    for (const step of [30 * 24 * HOUR, -30 * 24 * HOUR]) {
      it(`${framework}, realClock, the wall clock stepped ${step > 0 ? 'forward' : 'back'} 30 days after the store was made: the event's createdAt is Date.now() at the first request`, async () => {
        const store = memoryStore();
        closers.push(async () => store.dispose());
        const bus = createBus();
        const replays: (number | undefined)[] = [];
        bus.on('idempotency.replay', (event) => replays.push(event.createdAt));
        const url = await serve(framework, { store, bus });
        stepWallClock(step);
        const before = Date.now();
        expect(await post(url, 'k')).toBe(201);
        const after = Date.now();
        stepWallClock(-step / 2);
        expect(await post(url, 'k')).toBe(201);
        expect(replays).toHaveLength(1);
        expect(replays[0]).toBeGreaterThanOrEqual(before);
        expect(replays[0]).toBeLessThanOrEqual(after);
      });
    }
  }

  // The engine reads the date of a record its store's calls handed out from `#now`, set once
  // from `store`: a record can be "shared" only when it came from those same calls.
  it("fastify: a route's own config.idempotency store dates its own replays (early and after parsing)", async () => {
    const a = settableClock(EPOCH);
    const b = settableClock(-7_000_000_000.5);
    const storeA = memoryStore({ clock: a.clock });
    const storeB = memoryStore({ clock: b.clock });
    const bus = createBus();
    const replays: [string, number | undefined][] = [];
    bus.on('idempotency.replay', (event) => replays.push([event.key, event.createdAt]));
    const app = Fastify();
    closers.push(() => app.close());
    await app.register(fastifyIdempotency, { store: storeA, scope: 'global', bus });
    app.post('/a', async (_request, reply) => reply.code(201).send({ a: 1 }));
    app.post('/b', { config: { idempotency: { store: storeB } } }, async (_request, reply) =>
      reply.code(201).send({ b: 1 }),
    );
    await app.listen({ port: 0, host: '127.0.0.1' });
    const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    a.set(EPOCH + 1_000.25);
    b.set(-6_000_000_000.75);
    expect(await post(`${base}/a`, 'ka')).toBe(201);
    expect(await post(`${base}/b`, 'kb')).toBe(201);
    a.set(EPOCH + 9_000);
    b.set(-6_000_000_000.75 + 9_000);
    expect(await post(`${base}/b`, 'kb')).toBe(201);
    expect(await post(`${base}/a`, 'ka')).toBe(201);
    const injected = await app.inject({
      method: 'POST',
      url: '/b',
      headers: { 'content-type': 'application/json', 'idempotency-key': 'kb' },
      payload: BODY,
    });
    expect(injected.headers['idempotent-replayed']).toBe('true');
    expect(replays).toEqual([
      ['kb', -6_000_000_000.75],
      ['ka', EPOCH + 1_000.25],
      ['kb', -6_000_000_000.75],
    ]);
    storeA.dispose();
    storeB.dispose();
  });

  it('a spy patched on the store after the middleware was made: the replay event still has the date', async () => {
    for (const framework of ['express', 'fastify'] as const) {
      const wall = settableClock(EPOCH);
      const store = memoryStore({ clock: wall.clock });
      const bus = createBus();
      const replays: (number | undefined)[] = [];
      bus.on('idempotency.replay', (event) => replays.push(event.createdAt));
      const url = await serve(framework, { store, bus });
      wall.set(EPOCH + 3e9 + 0.5);
      expect(await post(url, 'k')).toBe(201);
      const spy = vi.spyOn(store, 'claim');
      wall.set(EPOCH + 3e9 + 1_000);
      expect(await post(url, 'k')).toBe(201);
      expect(spy).toHaveBeenCalled();
      spy.mockRestore();
      expect(await post(url, 'k')).toBe(201);
      expect([framework, replays]).toEqual([framework, [EPOCH + 3e9 + 0.5, EPOCH + 3e9 + 0.5]]);
      store.dispose();
    }
  });

  it('a store object that offers only the v6 calls (an older copy): general path, the event has the date', async () => {
    const wall = settableClock(EPOCH);
    const inner = memoryStore({ clock: wall.clock });
    // As an older copy's store looks to this one's middleware: branded in-process, its calls under v6.
    const older: IdempotencyStore = {
      claim: (...args) => inner.claim(...args),
      complete: (...args) => inner.complete(...args),
      release: (...args) => inner.release(...args),
      extend: (...args) => inner.extend(...args),
    };
    Object.defineProperty(older, IN_PROCESS, { value: older });
    Object.defineProperty(older, Symbol.for('holdfast.idempotency.memoryStore.now.v6'), {
      value: {
        serves: () => true,
        claim: () => {
          throw new Error('a v6 call was used');
        },
        completed: () => {
          throw new Error('a v6 call was used');
        },
      },
    });
    for (const framework of ['express', 'fastify'] as const) {
      const bus = createBus();
      const replays: (number | undefined)[] = [];
      bus.on('idempotency.replay', (event) => replays.push(event.createdAt));
      const url = await serve(framework, { store: older, bus });
      wall.set(EPOCH + 2 ** 31 + 0.5);
      expect(await post(url, `k-${framework}`)).toBe(201);
      wall.set(EPOCH + 2 ** 31 + 1_000);
      expect(await post(url, `k-${framework}`)).toBe(201);
      expect([framework, replays]).toEqual([framework, [EPOCH + 2 ** 31 + 0.5]]);
    }
    inner.dispose();
  });
});

async function serve(
  framework: 'express' | 'fastify',
  options: { store: IdempotencyStore; bus: ReturnType<typeof createBus> },
): Promise<string> {
  if (framework === 'fastify') {
    const app = Fastify();
    closers.push(() => app.close());
    await app.register(fastifyIdempotency, { ...options, scope: 'global' });
    app.post('/orders', async (_request, reply) => reply.code(201).send({ ok: true }));
    await app.listen({ port: 0, host: '127.0.0.1' });
    return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/orders`;
  }
  const app = express();
  app.use(expressIdempotency({ ...options, scope: 'global' }));
  app.use(express.json());
  app.post('/orders', (_req, res) => {
    res.status(201).json({ ok: true });
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  closers.push(() => new Promise((resolve) => server.close(resolve)));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/orders`;
}

/** The status of a POST of BODY under `key` (send() of http-support). */
async function post(url: string, key: string): Promise<number> {
  return (await send(url, { key, raw: BODY, contentType: 'application/json' })).status;
}
