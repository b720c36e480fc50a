import { createBus, type HoldfastEvent, ManualClock } from '@holdfast/core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis } from '../../../test/support/redis.js';
import { idempotency } from '../src/express.js';
import { problemTypes } from '../src/http/index.js';
import { type IdempotencyStore, idempotent, memoryStore, redisStore } from '../src/index.js';
import { expressFramework, fastifyFramework, type TestApp } from './http-support/apps.js';
import { newKey, send } from './http-support/support.js';
import { connect, disconnectAll, sleep } from './redis.js';

/**
 * A live run slower than its lease (300 ms lease; the run is held until 12 retries, one every
 * 100 ms, have been answered: 1,200 ms at least, however loaded the machine): the run keeps its
 * key, so its effect happens once; the retries conflict, then replay its value.
 */
async function slowRunWithRetries(store: IdempotencyStore) {
  let runs = 0;
  let open!: () => void;
  const held = new Promise<void>((resolve) => {
    open = resolve;
  });
  const job = idempotent(
    async () => {
      runs++;
      await held;
      return 'done';
    },
    { store, key: () => 'slow', leaseMs: 300 },
  );
  const first = job(undefined);
  const answers: string[] = [];
  for (let i = 0; i < 12; i++) {
    await sleep(100);
    answers.push(await job(undefined).then(String, (e: { code: string }) => e.code));
  }
  open();
  expect(await first).toBe('done');
  answers.push(await job(undefined).then(String, (e: { code: string }) => e.code));
  return { runs, answers };
}

describe('a live run keeps its key past leaseMs (memoryStore)', () => {
  it('leaseMs 300, a 1,200 ms run, retries every 100 ms: it runs once; retries conflict, then replay', async () => {
    const { runs, answers } = await slowRunWithRetries(memoryStore());
    expect(runs).toBe(1);
    expect(new Set(answers.slice(0, -1))).toEqual(new Set(['E_IDEMPOTENCY_CONFLICT']));
    expect(answers.at(-1)).toBe('done');
  });

  it('past maxRunMs (default 10 min, a manual clock): aborted is stored and ctx.signal aborts; a retry is not run', async () => {
    const clock = new ManualClock(1_000);
    const store = memoryStore({ clock });
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('*', (e) => events.push(e));
    let runs = 0;
    let release!: () => void;
    const job = idempotent(
      (_: undefined, ctx) =>
        new Promise<string>((resolve, reject) => {
          if (++runs > 1) return resolve('ran again');
          ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason));
          release = () => resolve('late');
        }),
      { store, key: () => 'hung', leaseMs: 300, clock, bus },
    );
    const first = job(undefined).catch((e: { code: string }) => e.code);
    const retries: string[] = [];
    // Ten minutes and a bit, with a retry every 10 s.
    for (let t = 0; t <= 600_000; t += 10_000) {
      await clock.advance(10_000);
      retries.push(await job(undefined).then(String, (e: { code: string }) => e.code));
    }
    release();
    expect(await first).toBe('E_TIMEOUT');
    expect(runs).toBe(1);
    expect(retries.slice(0, 59)).toEqual(Array(59).fill('E_IDEMPOTENCY_CONFLICT'));
    expect(retries.at(-1)).toBe('E_IDEMPOTENCY_ABORTED');
    expect(await job(undefined).catch((e: { code: string }) => e.code)).toBe('E_IDEMPOTENCY_ABORTED');
    expect(events.filter((e) => e.type === 'idempotency.leaseLost')).toMatchObject([
      { key: 'hung', reason: 'maxRunMs' },
    ]);
    expect(events.some((e) => e.type === 'idempotency.takeover')).toBe(false);
  });

  it('a renewal the store never answers is failed at the next tick and sent again: the run keeps its key (a manual clock)', async () => {
    const clock = new ManualClock(1_000);
    const inner = memoryStore({ clock });
    let extends_ = 0;
    const store: IdempotencyStore = {
      claim: (...a) => inner.claim(...a),
      complete: (...a) => inner.complete(...a),
      release: (...a) => inner.release(...a),
      // The first renewal is lost (its answer never comes); the others are answered.
      extend: (...a) => (++extends_ === 1 ? new Promise<boolean>(() => {}) : inner.extend(...a)),
    };
    const bus = createBus();
    const errors: unknown[] = [];
    bus.on('idempotency.storeError', (e) => errors.push({ operation: e.operation, code: e.code }));
    let runs = 0;
    let release!: () => void;
    const job = idempotent(
      () =>
        new Promise<string>((resolve) => {
          if (++runs > 1) return resolve('ran again');
          release = () => resolve('done');
        }),
      { store, key: () => 'k', leaseMs: 300, clock, bus },
    );
    const first = job(undefined);
    const retries: string[] = [];
    for (let t = 0; t < 1_500; t += 50) {
      await clock.advance(50);
      retries.push(await job(undefined).then(String, (e: { code: string }) => e.code));
    }
    release();
    expect(await first).toBe('done');
    expect(runs).toBe(1);
    expect(new Set(retries)).toEqual(new Set(['E_IDEMPOTENCY_CONFLICT']));
    expect(errors).toEqual([{ operation: 'extend', code: 'E_STORE_UNAVAILABLE' }]);
  });

  for (const framework of [expressFramework, fastifyFramework]) {
    it(`${framework.name}: a handler past maxRunMs (default, a manual clock): response-lost is stored, a retry gets it, not a second run`, async () => {
      const clock = new ManualClock(1_000);
      const app = await framework.start({ store: memoryStore({ clock }), leaseMs: 300, clock });
      try {
        const key = newKey();
        const first = send(`${app.url}/slow`, { key, body: { a: 1 } });
        while (app.gate.entered === 0) await sleep(5);
        const statuses: (number | string)[] = [];
        for (let t = 0; t <= 600_000; t += 10_000) {
          await clock.advance(10_000);
          // A retry that runs the handler again waits at its gate: 'ran'.
          const retry = send(`${app.url}/slow`, { key, body: { a: 1 } });
          statuses.push(await Promise.race([retry.then((r) => r.status), sleep(500).then(() => 'ran')]));
          if (statuses.at(-1) === 'ran') break;
        }
        app.gate.open();
        expect((await first).status).toBe(200);
        const replay = await send(`${app.url}/slow`, { key, body: { a: 1 } });
        expect([app.calls.get('slow'), statuses.slice(0, 59)]).toEqual([1, Array(59).fill(409)]);
        expect([statuses.at(-1), replay.status, (replay.json() as { type: string }).type]).toEqual([
          500,
          500,
          problemTypes.responseLost,
        ]);
      } finally {
        app.gate.open();
        await app.close();
      }
    });
  }

  it('maxRunMs is checked: a clear error names it', () => {
    expect(() => idempotent(async () => 1, { store: memoryStore(), key: () => 'k', maxRunMs: -1 as number })).toThrow(
      /maxRunMs/,
    );
  });

  it('idempotent(): a renewal that fails is told as storeError extend with failOpen (the run goes on), as the middleware tells it', async () => {
    const inner = memoryStore();
    const store: IdempotencyStore = {
      claim: (...a) => inner.claim(...a),
      complete: (...a) => inner.complete(...a),
      release: (...a) => inner.release(...a),
      extend: async () => {
        throw Object.assign(new Error('store gone'), { code: 'E_STORE_UNAVAILABLE' });
      },
    };
    const bus = createBus();
    const seen: unknown[] = [];
    bus.on('idempotency.storeError', (e) => seen.push({ operation: e.operation, failOpen: e.failOpen }));
    const run = idempotent(async () => sleep(200).then(() => 'done'), { store, bus, key: () => 'k', leaseMs: 60 });
    expect(await run(1)).toBe('done');
    expect(seen.length).toBeGreaterThan(0);
    expect(new Set(seen.map((e) => JSON.stringify(e)))).toEqual(
      new Set([JSON.stringify({ operation: 'extend', failOpen: true })]),
    );
  });

  it('maxRunMs is not a timer: 30 days is taken, in idempotent() and the middleware', () => {
    const month = 30 * 86_400_000;
    expect(() => idempotent(async () => 1, { store: memoryStore(), key: () => 'k', maxRunMs: month })).not.toThrow();
    expect(() => idempotency({ store: memoryStore(), scope: 'global', maxRunMs: month })).not.toThrow();
    expect(() => idempotent(async () => 1, { store: memoryStore(), key: () => 'k', maxRunMs: 2e15 })).toThrow(
      /maxRunMs/,
    );
  });
});

describe.skipIf(!redisAvailable())(
  'a live run keeps its key past leaseMs (redisStore, real Redis)',
  { timeout: 30_000 },
  () => {
    let server: RedisServer;
    const apps: TestApp[] = [];
    beforeAll(async () => {
      [server] = (await startRedis(1)) as [RedisServer];
    });
    afterEach(async () => {
      server.resume();
      for (const app of apps.splice(0)) {
        app.gate.open();
        await app.close();
      }
    });
    afterAll(async () => {
      disconnectAll();
      await server?.stop();
    });

    it('idempotent(): leaseMs 300, a 1,200 ms run, retries every 100 ms: it runs once', async () => {
      const { runs, answers } = await slowRunWithRetries(redisStore({ client: connect(server), prefix: 'lr1:' }));
      expect(runs).toBe(1);
      expect(new Set(answers.slice(0, -1))).toEqual(new Set(['E_IDEMPOTENCY_CONFLICT']));
      expect(answers.at(-1)).toBe('done');
    });

    it('Redis frozen for less than a lease during the run: renewal resumes, the run keeps its key', async () => {
      const store = redisStore({ client: connect(server), prefix: 'lr2:', commandTimeout: 150 });
      const bus = createBus();
      const events: string[] = [];
      bus.on('*', (e) => events.push(e.type));
      let runs = 0;
      let open!: () => void;
      const held = new Promise<void>((resolve) => {
        open = resolve;
      });
      const job = idempotent(
        async () => {
          runs++;
          await held; // until the retries below are answered: 1,350 ms at least
          return 'done';
        },
        { store, key: () => 'frozen', leaseMs: 600, bus },
      );
      const first = job(undefined);
      await sleep(300);
      server.pause();
      await sleep(250);
      server.resume();
      const during: string[] = [];
      for (let i = 0; i < 8; i++) {
        await sleep(100);
        during.push(await job(undefined).then(String, (e: { code: string }) => e.code));
      }
      open();
      expect(await first).toBe('done');
      expect(runs).toBe(1);
      expect(new Set(during)).toEqual(new Set(['E_IDEMPOTENCY_CONFLICT']));
      expect(events).not.toContain('idempotency.takeover');
    });

    it('extend is fenced: it never renews, nor brings back, a key completed, released or taken over', async () => {
      const client = connect(server);
      const store = redisStore({ client, prefix: 'lr3:' });
      const a = await store.claim('done', 'f', 1_000);
      if (a.status !== 'claimed') throw new Error('not claimed');
      expect(await store.extend('done', a.token, 5_000)).toBe(true);
      expect(await client.pttl(store.keyOf('done'))).toBeGreaterThan(9_000);
      await store.complete('done', a.token, { kind: 'value', value: 1 }, 2_000);
      expect(await store.extend('done', a.token, 60_000)).toBe(false);
      expect(await client.pttl(store.keyOf('done'))).toBeLessThanOrEqual(2_000);
      const b = await store.claim('gone', 'f', 1_000);
      if (b.status !== 'claimed') throw new Error('not claimed');
      await store.release('gone', b.token);
      expect(await store.extend('gone', b.token, 60_000)).toBe(false);
      expect(await client.exists(store.keyOf('gone'))).toBe(0);
      const c = await store.claim('taken', 'f', 300);
      if (c.status !== 'claimed') throw new Error('not claimed');
      await sleep(350);
      // Taken over (or, on a machine slow enough to pass two leases, claimed afresh): another owner's.
      const d = await store.claim('taken', 'f', 1_000);
      expect(d.status).toBe('claimed');
      expect(await store.extend('taken', c.token, 60_000)).toBe(false);
      expect(d.status === 'claimed' && (await store.extend('taken', d.token, 60_000))).toBe(true);
    });

    it('expiries leave Lua as integers (redis/redis#13113): a 1e12 ms lease sets PTTL 2e12, a 1e15 ms ttl PTTL 1e15', async () => {
      const client = connect(server);
      const store = redisStore({ client, prefix: 'lr4:' });
      const claim = await store.claim('long', 'f', 1e12);
      if (claim.status !== 'claimed') throw new Error('not claimed');
      const pttl = await client.pttl(store.keyOf('long'));
      expect(Math.abs(pttl - 2e12)).toBeLessThan(10_000);
      expect(await store.extend('long', claim.token, 1e12)).toBe(true);
      expect(await client.hget(store.keyOf('long'), 'l')).toMatch(/^\d+$/);
      await store.complete('long', claim.token, { kind: 'value', value: 1 }, 1e15);
      expect(Math.abs((await client.pttl(store.keyOf('long'))) - 1e15)).toBeLessThan(10_000);
      expect(await client.hget(store.keyOf('long'), 'x')).toMatch(/^\d+$/);
    });

    for (const framework of [expressFramework, fastifyFramework]) {
      it(`${framework.name}: a handler held through 10 retries 100 ms apart (over 3 leases of 300 ms): the handler runs once`, async () => {
        const store = redisStore({ client: connect(server), prefix: `lr-${framework.name}:` });
        const app = await framework.start({ store, leaseMs: 300 });
        apps.push(app);
        const key = newKey();
        const first = send(`${app.url}/slow`, { key, body: { a: 1 } });
        const statuses: number[] = [];
        // The gate opens after the retries, not on a timer: on a loaded machine the retries outlasted a 1.2 s timer.
        for (let i = 0; i < 10; i++) {
          await sleep(100);
          statuses.push((await send(`${app.url}/slow`, { key, body: { a: 1 } })).status);
        }
        app.gate.open();
        expect((await first).status).toBe(200);
        const replay = await send(`${app.url}/slow`, { key, body: { a: 1 } });
        expect([app.calls.get('slow'), replay.json()]).toEqual([1, { n: 1 }]);
        expect(statuses).toEqual(Array(10).fill(409));
      });
    }
  },
);
