import { randomUUID } from 'node:crypto';
import { ManualClock } from '@holdfast/core';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { redisAvailable } from '../../../test/support/redis.js';
import { idempotency as expressIdempotency } from '../src/express.js';
import { idempotency as fastifyIdempotency } from '../src/fastify.js';
import { problemTypes } from '../src/http/index.js';
import { type IdempotencyStore, idempotent, memoryStore, type RedisClient, redisStore } from '../src/index.js';
import { extendScript } from '../src/redis-scripts.js';
import { expressFramework, fastifyFramework } from './http-support/apps.js';
import { newKey, send } from './http-support/support.js';
import { connect, sleep, useRedisServer } from './redis.js';

/** A store that forwards to a memory store, with `extend` (or another member) replaced by `bad`. */
function storeWith(member: keyof IdempotencyStore, bad: unknown): IdempotencyStore {
  const inner = memoryStore();
  return {
    claim: (...a) => inner.claim(...a),
    complete: (...a) => inner.complete(...a),
    release: (...a) => inner.release(...a),
    extend: (...a) => inner.extend(...a),
    [member]: bad,
  } as IdempotencyStore;
}

describe('a store whose members are not what they claim is refused when the wrapper is made', () => {
  const makers: [string, (store: IdempotencyStore) => Promise<void>][] = [
    [
      'idempotent',
      async (store) => {
        idempotent(async () => 1, { store, key: () => 'k' });
      },
    ],
    [
      'express',
      async (store) => {
        expressIdempotency({ store, scope: 'global' });
      },
    ],
    [
      'fastify',
      async (store) => {
        const app = Fastify();
        try {
          await app.register(fastifyIdempotency, { store, scope: 'global' }).ready();
        } finally {
          await app.close();
        }
      },
    ],
  ];
  for (const [name, make] of makers) {
    it(`${name}: extend: 5 (present, not a function) names store.extend; renewing nothing silently is not an option`, async () => {
      await expect(make(storeWith('extend', 5))).rejects.toThrow(/store\.extend must be a function.*\(got 5\)/);
    });
    it(`${name}: a missing or bad claim, complete or release names that method; a bad onStoreError names it`, async () => {
      await expect(make(storeWith('claim', undefined))).rejects.toThrow(
        /store\.claim must be a function \(got undefined\)/,
      );
      await expect(make(storeWith('complete', 'x'))).rejects.toThrow(/store\.complete must be a function \(got "x"\)/);
      await expect(make(storeWith('release', null))).rejects.toThrow(/store\.release must be a function \(got null\)/);
      await expect(make(storeWith('onStoreError', 'open'))).rejects.toThrow(/store\.onStoreError must be/);
    });
    it(`${name}: a store without extend (fixed leases) is taken`, async () => {
      await expect(make(storeWith('extend', undefined))).resolves.toBeUndefined();
    });
  }
});

describe('the HTTP cap at maxRunMs is tried again while its store fails', () => {
  for (const framework of [expressFramework, fastifyFramework]) {
    it(`${framework.name}: complete fails at the cap, then succeeds: a retry after leaseMs gets response-lost, not a second run`, async () => {
      const clock = new ManualClock(1_000);
      const inner = memoryStore({ clock });
      let failing = false;
      let completes = 0;
      // Not the memory store itself: its calls go through the timed (promise) path, as a remote store's.
      const store: IdempotencyStore = {
        claim: (...a) => inner.claim(...a),
        complete: async (...a) => {
          completes++;
          if (failing) throw Object.assign(new Error('store down'), { code: 'E_STORE_UNAVAILABLE' });
          return inner.complete(...a);
        },
        release: (...a) => inner.release(...a),
        extend: (...a) => inner.extend(...a),
      };
      // leaseMs 3 s, a tick each second; maxRunMs 6 s; completeTimeoutMs short: the store is down longer.
      const app = await framework.start({
        store,
        leaseMs: 3_000,
        maxRunMs: 6_000,
        completeTimeoutMs: 50,
        storeTimeoutMs: 50,
        clock,
      });
      try {
        const key = newKey();
        const first = send(`${app.url}/slow`, { key, body: { a: 1 } });
        while (app.gate.entered === 0) await sleep(5);
        // Ticks each second: five renewals.
        for (let t = 0; t < 5_000; t += 1_000) await clock.advance(1_000);
        failing = true;
        const before = completes;
        // The sixth tick, at maxRunMs: the cap's store call fails (its retries, within completeTimeoutMs, too).
        await clock.advance(1_000);
        await sleep(50);
        expect(completes).toBeGreaterThan(before);
        failing = false;
        // Past the lease: renewed meanwhile, and the cap tried again, the key is not free.
        for (let t = 0; t < 4_000; t += 500) await clock.advance(500);
        const retry = send(`${app.url}/slow`, { key, body: { a: 1 } });
        const status = await Promise.race([retry.then((r) => r.status), sleep(1_000).then(() => 'ran')]);
        app.gate.open();
        await first;
        const replay = await send(`${app.url}/slow`, { key, body: { a: 1 } });
        expect([app.calls.get('slow'), status]).toEqual([1, 500]);
        expect((replay.json() as { type: string }).type).toBe(problemTypes.responseLost);
      } finally {
        app.gate.open();
        await app.close();
      }
    });
  }
});

describe.skipIf(!redisAvailable())('renewals on redisStore after its scripts were flushed', { timeout: 30_000 }, () => {
  const redis = useRedisServer();

  it('200 live runs, SCRIPT FLUSH, the first tick: the extend script is sent once, not once per run (<= N + 2 EVAL/EVALSHA)', async () => {
    const N = 200;
    const sent: string[] = [];
    const answered = { extend: 0 };
    const client = connect(redis.server);
    // The store's client, counting the scripts it sends and the renewals answered.
    const counted: RedisClient = {
      get status() {
        return client.status;
      },
      callBuffer: (command, ...args) => {
        const script = String(args[0]);
        const extend = script === extendScript.sha || script === extendScript.source;
        if (extend) sent.push(command);
        const reply = client.callBuffer(command, ...args);
        if (extend)
          reply.then(
            () => answered.extend++,
            () => {},
          );
        return reply;
      },
      once: (event, listener) => client.once(event, listener),
      removeListener: (event, listener) => client.removeListener(event, listener),
    };
    const clock = new ManualClock(1_000);
    const store = redisStore({ client: counted, prefix: `flush-${randomUUID()}:` });
    let open!: () => void;
    const held = new Promise<void>((resolve) => {
      open = resolve;
    });
    let runs = 0;
    const job = idempotent(
      async () => {
        runs++;
        await held;
        return 'done';
      },
      { store, key: (n: number) => `run-${n}`, leaseMs: 30_000, clock },
    );
    const all = Array.from({ length: N }, (_, n) => job(n));
    while (runs < N) await sleep(5);
    await redis.client.script('FLUSH');
    await clock.advance(10_000); // the first tick: N renewals
    while (answered.extend < N) await sleep(5);
    open();
    expect(await Promise.all(all)).toEqual(Array(N).fill('done'));
    const evals = sent.filter((c) => c === 'eval' || c === 'evalsha');
    expect(evals.length).toBeLessThanOrEqual(N + 2);
    expect(sent.filter((c) => c === 'eval')).toEqual(['eval']);
  });
});
