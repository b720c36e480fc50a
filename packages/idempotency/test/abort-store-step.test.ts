/**
 * A caller who aborts while a store step is on the wire (Redis frozen: SIGSTOP of a server of the
 * test's own) is released at once with its abort reason, not after `commandTimeout`; and what the
 * abandoned step still does once Redis answers runs nothing twice and holds no key for its lease.
 */
import { getEventListeners } from 'node:events';
import { createBus, type HoldfastEvent } from '@holdfast/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from '../../../test/support/redis.js';
import { idempotent, memoryStore, type RedisStore, redisStore } from '../src/index.js';
import { connect, disconnectAll } from './redis.js';

/** Far above what any step here takes once Redis answers: a caller still held this long was not released. */
const HELD = 10_000;

/** What `call` settled with, or `'still waiting'` if it had not after {@link HELD} ms. */
async function settledWithin<T>(call: Promise<T>): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  const held = new Promise((resolve) => {
    timer = setTimeout(() => resolve('still waiting'), HELD);
  });
  try {
    return await Promise.race([
      call.then(
        (value) => ({ value }),
        (error: unknown) => error,
      ),
      held,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('idempotent() and a caller who aborts, on the memory store', () => {
  it('aborted before its claim was answered: rejects with the reason, the function never runs, the key is free', async () => {
    const store = memoryStore();
    let runs = 0;
    const charge = idempotent(
      async (order: { id: string }) => {
        runs++;
        return `charged ${order.id}`;
      },
      { store, key: (o) => o.id, bus: createBus() },
    );
    const controller = new AbortController();
    const call = charge({ id: 'o-1' }, { signal: controller.signal });
    controller.abort(new Error('client went away')); // the claim is made, its answer not yet read
    await expect(call).rejects.toThrow('client went away');
    expect(runs).toBe(0);
    expect(await charge({ id: 'o-1' })).toBe('charged o-1'); // not a 409 for a lease: the claim was released
    expect(runs).toBe(1);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('aborted as its function resolves: the result is stored all the same, and a retry replays it', async () => {
    const store = memoryStore();
    let runs = 0;
    const controller = new AbortController();
    const charge = idempotent(
      async (order: { id: string }) => {
        runs++;
        controller.abort(new Error('client went away'));
        return `charged ${order.id}`;
      },
      { store, key: (o) => o.id, bus: createBus() },
    );
    await expect(charge({ id: 'o-1' }, { signal: controller.signal })).rejects.toThrow('client went away');
    expect(await charge({ id: 'o-1' })).toBe('charged o-1');
    expect(runs).toBe(1);
  });

  it('aborted while its function runs: released at once; the function goes on, its result is stored, and a retry replays it', async () => {
    let finish: (() => void) | undefined;
    let runs = 0;
    const charge = idempotent(
      async (order: { id: string }) => {
        runs++;
        await new Promise<void>((resolve) => {
          finish = resolve;
        });
        return `charged ${order.id}`;
      },
      { store: memoryStore(), key: (o) => o.id, bus: createBus(), wait: { timeout: 5_000, interval: 5 } },
    );
    const controller = new AbortController();
    const call = charge({ id: 'o-1' }, { signal: controller.signal });
    while (finish === undefined) await tick();
    controller.abort(new Error('client went away'));
    await expect(call).rejects.toThrow('client went away');
    const retry = charge({ id: 'o-1' }); // waits for the run its first caller left
    finish();
    expect(await retry).toBe('charged o-1');
    expect(runs).toBe(1);
  });
});

describe.skipIf(!redisAvailable())('idempotent() and a caller who aborts, Redis frozen', { timeout: 40_000 }, () => {
  let server: RedisServer;
  beforeAll(async () => {
    [server] = (await startRedis(1)) as [RedisServer];
  });
  afterAll(async () => {
    disconnectAll();
    await stopAllRedis();
  });

  async function setup(prefix: string, fn: (id: string) => Promise<string>) {
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('*', (e) => events.push(e));
    // commandTimeout far above HELD: only following the signal can release the caller in time.
    const store: RedisStore = redisStore({ client: connect(server), commandTimeout: 60_000, prefix });
    await store.claim('warm', 'fp', 1_000); // scripts loaded: each step is one EVALSHA
    // One function wrapped twice (a retry that waits): one name.
    const options = { store, key: (o: { id: string }) => o.id, leaseMs: 30_000, bus, name: 'charge' };
    const charge = idempotent((o: { id: string }) => fn(o.id), options);
    // A retry that waits less than a lease: a claim left behind would make it fail with 409.
    const retry = idempotent((o: { id: string }) => fn(o.id), { ...options, wait: { timeout: 10_000, interval: 20 } });
    return { charge, retry, events };
  }

  it('aborted after its claim was sent, before the reply: released at once; once Redis answers, the claim is released and a retry runs the function once', async () => {
    let runs = 0;
    const { charge, retry, events } = await setup('abort-claim:', async (id) => {
      runs++;
      return `charged ${id}`;
    });
    server.pause();
    try {
      const controller = new AbortController();
      const call = charge({ id: 'o-1' }, { signal: controller.signal }); // its claim is written now
      await tick();
      controller.abort(new Error('client went away'));
      const settled = await settledWithin(call);
      expect(settled).toMatchObject({ message: 'client went away' });
    } finally {
      server.resume();
    }
    // Redis now runs the claim it read while frozen: it is released, not left for its lease.
    expect(await retry({ id: 'o-1' })).toBe('charged o-1');
    expect(runs).toBe(1);
    expect(events.map((e) => e.type)).toContain('idempotency.release');
  });

  it('two instances race one key while Redis is frozen, one caller aborts: whichever claim wins, the function runs once and the other caller gets its result', async () => {
    let runs = 0;
    const one = await setup('abort-race:', async (id) => {
      runs++;
      return `charged ${id}`;
    });
    const other = await setup('abort-race:', async (id) => {
      runs++;
      return `charged ${id}`;
    });
    let retried: Promise<string>;
    server.pause();
    try {
      const controller = new AbortController();
      const aborted = one.charge({ id: 'o-1' }, { signal: controller.signal });
      retried = other.retry({ id: 'o-1' }); // the other instance's claim, queued behind it in Redis
      await tick();
      controller.abort(new Error('client went away'));
      expect(await settledWithin(aborted)).toMatchObject({ message: 'client went away' });
    } finally {
      server.resume();
    }
    expect(await retried).toBe('charged o-1');
    expect(await one.charge({ id: 'o-1' })).toBe('charged o-1');
    expect(runs).toBe(1);
  });

  it('aborted while its completion is on the wire: released at once with the result in hand; the completion lands and a retry replays it', async () => {
    let runs = 0;
    const { charge, retry } = await setup('abort-complete:', async (id) => {
      runs++;
      server.pause(); // the effect happened; Redis freezes before the completion is answered
      return `charged ${id}`;
    });
    try {
      const controller = new AbortController();
      const call = charge({ id: 'o-1' }, { signal: controller.signal });
      while (runs === 0) await tick();
      await tick();
      controller.abort(new Error('client went away'));
      const settled = await settledWithin(call);
      // The function returned: its caller gets the result, not the abort (a retry would only replay it).
      expect(settled).toMatchObject({ value: 'charged o-1' });
    } finally {
      server.resume();
    }
    expect(await retry({ id: 'o-1' })).toBe('charged o-1');
    expect(runs).toBe(1);
  });

  it('aborted while the release of a failed run is on the wire: released at once; the key is released and a retry runs again', async () => {
    let runs = 0;
    const { charge, retry } = await setup('abort-release:', async (id) => {
      runs++;
      if (runs === 1) {
        server.pause();
        throw new Error('card declined');
      }
      return `charged ${id}`;
    });
    try {
      const controller = new AbortController();
      const call = charge({ id: 'o-1' }, { signal: controller.signal });
      while (runs === 0) await tick();
      await tick();
      controller.abort(new Error('client went away'));
      const settled = await settledWithin(call);
      expect(settled).toMatchObject({ message: 'client went away' });
    } finally {
      server.resume();
    }
    expect(await retry({ id: 'o-1' })).toBe('charged o-1');
    expect(runs).toBe(2);
  });
});
