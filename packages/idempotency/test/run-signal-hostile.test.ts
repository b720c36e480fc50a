/**
 * Hostile review of ctx.signal: an abort at every microtask of a run that follows it, two
 * instances on one Redis key, and Redis frozen or losing the reply while `aborted` is stored.
 * Whatever happens, the effect is never done twice, and a retry gets the result or
 * E_IDEMPOTENCY_ABORTED.
 */
import { getEventListeners } from 'node:events';
import { createBus, type HoldfastEvent } from '@holdfast/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from '../../../test/support/redis.js';
import { type IdempotentContext, idempotent, memoryStore, redisStore } from '../src/index.js';
import { connect, disconnectAll } from './redis.js';

const tick = () => new Promise((resolve) => setImmediate(resolve));

/** One step of work that follows `signal`, as a driver does: it rejects with the reason on abort. */
function step(signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    queueMicrotask(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
  });
}

const outcome = (call: Promise<unknown>) =>
  call.then(
    (value) => ({ value }),
    (error: { code?: string; message?: string }) => ({ error: error.code ?? error.message }),
  );

describe('idempotent(): a run that follows its signal, aborted at each microtask', () => {
  it('does the effect at most once across the aborted call and two retries, at every offset', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      for (let offset = 0; offset < 60; offset++) {
        const store = memoryStore();
        let effects = 0;
        const charge = idempotent(
          async (_: number, ctx: IdempotentContext) => {
            await step(ctx.signal);
            effects++; // the card is charged here
            await step(ctx.signal);
            return 'charged';
          },
          { store, key: () => 'k', bus: createBus() },
        );
        const controller = new AbortController();
        const call = charge(1, { signal: controller.signal });
        let left = offset;
        const abortLater = () => (left-- > 0 ? queueMicrotask(abortLater) : controller.abort(new Error('gone')));
        abortLater();
        const first = await outcome(call);
        await tick();
        const second = await outcome(charge(1));
        const third = await outcome(charge(1));
        const seen = { offset, effects, first, second, third };
        expect(effects, JSON.stringify(seen)).toBeLessThanOrEqual(1);
        expect([{ value: 'charged' }, { error: 'gone' }]).toContainEqual(first);
        // A retry replays, runs (nothing was done), or is refused: never a second charge.
        if (effects === 1) expect([{ value: 'charged' }, { error: 'E_IDEMPOTENCY_ABORTED' }]).toContainEqual(second);
        expect(third).toEqual(second);
        if ('value' in first) expect(second).toEqual({ value: 'charged' });
        expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
        store.dispose();
      }
      await tick();
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('a duplicate waiting for the run gets E_IDEMPOTENCY_ABORTED when it followed the abort and threw', async () => {
    const store = memoryStore();
    let runs = 0;
    const options = { store, key: () => 'k', bus: createBus(), wait: { timeout: 5_000, interval: 5 } };
    const charge = idempotent(async (_: number, ctx: IdempotentContext) => {
      runs++;
      await new Promise((_resolve, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)));
    }, options);
    const controller = new AbortController();
    const first = charge(1, { signal: controller.signal });
    await tick();
    const waiting = charge(1);
    await tick();
    controller.abort(new Error('gone'));
    await expect(first).rejects.toThrow('gone');
    await expect(waiting).rejects.toMatchObject({ code: 'E_IDEMPOTENCY_ABORTED' });
    expect(runs).toBe(1);
    store.dispose();
  });
});

describe.skipIf(!redisAvailable())(
  'idempotent() with ctx.signal on one Redis key, two instances',
  { timeout: 40_000 },
  () => {
    let server: RedisServer;
    beforeAll(async () => {
      [server] = (await startRedis(1)) as [RedisServer];
    });
    afterAll(async () => {
      disconnectAll();
      await stopAllRedis();
    });

    /** An instance: its own connection and store on the shared prefix; its function follows the signal. */
    async function instance(prefix: string, counter: { effects: number }, commandTimeout = 10_000) {
      const bus = createBus();
      const events: HoldfastEvent[] = [];
      bus.on('*', (e) => events.push(e));
      const store = redisStore({ client: connect(server), commandTimeout, prefix });
      await store.claim('warm', 'fp', 1_000); // scripts loaded
      const started: (() => void)[] = [];
      const charge = idempotent(
        async (_: number, ctx: IdempotentContext) => {
          counter.effects++;
          for (const s of started.splice(0)) s();
          await new Promise((_resolve, reject) =>
            ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)),
          );
          return 'charged';
        },
        { store, key: () => 'order-1', leaseMs: 30_000, bus, wait: { timeout: 10_000, interval: 20 } },
      );
      const running = () => new Promise<void>((resolve) => started.push(resolve));
      return { charge, running, events };
    }

    it('one instance aborted mid-run, the other waiting: the other gets E_IDEMPOTENCY_ABORTED, one run in all', async () => {
      const counter = { effects: 0 };
      const a = await instance('two:', counter);
      const b = await instance('two:', counter);
      const controller = new AbortController();
      const running = a.running();
      const first = a.charge(1, { signal: controller.signal });
      await running;
      const waiting = b.charge(1);
      controller.abort(new Error('gone'));
      await expect(first).rejects.toThrow('gone');
      await expect(waiting).rejects.toMatchObject({ code: 'E_IDEMPOTENCY_ABORTED' });
      await expect(a.charge(1)).rejects.toMatchObject({ code: 'E_IDEMPOTENCY_ABORTED' });
      expect(counter.effects).toBe(1);
      expect(a.events.map((e) => e.type)).toContain('idempotency.lost');
    });

    it('Redis frozen while `aborted` is stored, its reply lost to the timeout: no instance runs it again', async () => {
      const counter = { effects: 0 };
      const a = await instance('frozen:', counter, 300);
      const b = await instance('frozen:', counter);
      const controller = new AbortController();
      const running = a.running();
      const first = a.charge(1, { signal: controller.signal });
      await running;
      server.pause();
      try {
        controller.abort(new Error('gone'));
        await expect(first).rejects.toThrow('gone');
        // The completion is on the wire, unanswered: its timeout passes.
        while (!a.events.some((e) => e.type === 'idempotency.storeError')) await new Promise((r) => setTimeout(r, 20));
      } finally {
        server.resume();
      }
      const retried = await outcome(b.charge(1));
      expect(['E_IDEMPOTENCY_ABORTED', 'E_IDEMPOTENCY_CONFLICT']).toContain((retried as { error?: string }).error);
      expect(counter.effects).toBe(1);
    });
  },
);

describe('idempotent(): an abort that lands as the run starts', () => {
  it('aborted by a listener of idempotency.claim: the function never starts, the key is released, a retry runs it once', async () => {
    const store = memoryStore();
    const bus = createBus();
    const controller = new AbortController();
    bus.on('idempotency.claim', () => controller.abort(new Error('gone')));
    let runs = 0;
    const charge = idempotent(
      async (_: number, ctx: IdempotentContext) => {
        runs++;
        await step(ctx.signal);
        return 'charged';
      },
      { store, key: () => 'k', bus },
    );
    await expect(charge(1, { signal: controller.signal })).rejects.toThrow('gone');
    await tick();
    expect(runs).toBe(0);
    expect(await charge(1)).toBe('charged');
    expect(runs).toBe(1);
    store.dispose();
  });
});
