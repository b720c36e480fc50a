/**
 * Review of ctx.signal and the `aborted` verdict: many calls on one long-lived caller signal,
 * a store that cannot take the verdict, and what a repeat learns of the first caller's abort.
 */
import { getEventListeners } from 'node:events';
import { createBus, type HoldfastEvent, ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import {
  type IdempotencyStore,
  type IdempotentContext,
  idempotent,
  memoryStore,
  StoreUnavailableError,
} from '../src/index.js';
import { decodeOutcome, encodeOutcome } from '../src/store.js';

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('idempotent(): one long-lived caller signal (a shutdown signal) over many calls', () => {
  it('100,000 calls whose function passes ctx.signal on: at most one listener on it, none once they settle', async () => {
    const shutdown = new AbortController();
    const store = memoryStore({ maxEntries: 2_000 });
    let ran = 0;
    const charge = idempotent(
      async (n: number, ctx: IdempotentContext) => {
        ran++;
        const onAbort = () => {};
        ctx.signal.addEventListener('abort', onAbort); // a driver that never takes its listener off
        await null;
        return n;
      },
      { store, key: (n) => `k${n}`, bus: createBus() },
    );
    let most = 0;
    for (let batch = 0; batch < 100; batch++) {
      const calls: Promise<number>[] = [];
      for (let i = 0; i < 1_000; i++) calls.push(charge(i, { signal: shutdown.signal }));
      most = Math.max(most, getEventListeners(shutdown.signal, 'abort').length);
      const results = await Promise.all(calls);
      expect(results[999]).toBe(999); // key k999 ran once, in the first batch: replayed since
    }
    expect({ ran, most, after: getEventListeners(shutdown.signal, 'abort').length }).toEqual({
      ran: 1_000,
      most: 1,
      after: 0,
    });
    shutdown.abort(new Error('shutdown'));
    await tick();
    store.dispose();
  }, 60_000);
});

describe('idempotent(): a store that cannot take the `aborted` verdict', () => {
  it('keeps the key claimed for its lease (reported), then a retry takes it over and runs again, as after a crash', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const inner = memoryStore({ clock });
    const store: IdempotencyStore = {
      claim: (...args) => inner.claim(...args),
      release: (...args) => inner.release(...args),
      complete: async (key, token, outcome, ttlMs) => {
        if (outcome.kind === 'aborted') throw new StoreUnavailableError('store', 'complete', key, 'Redis went away');
        return inner.complete(key, token, outcome, ttlMs);
      },
    };
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('*', (e) => events.push(e));
    const runs: boolean[] = [];
    const charge = idempotent(
      (_: number, ctx: IdempotentContext) =>
        new Promise<string>((resolve, reject) => {
          runs.push(ctx.takeover);
          if (ctx.takeover) return resolve('charged');
          ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true });
        }),
      { store, key: () => 'k', leaseMs: 1_000, bus, clock },
    );
    const controller = new AbortController();
    const first = charge(1, { signal: controller.signal });
    await tick();
    controller.abort(new Error('gone'));
    await expect(first).rejects.toThrow('gone');
    await tick();
    expect(events.filter((e) => e.type === 'idempotency.storeError')).toMatchObject([
      { operation: 'complete', failOpen: false },
    ]);
    await expect(charge(1)).rejects.toMatchObject({ code: 'E_IDEMPOTENCY_CONFLICT' });
    await clock.advance(1_000);
    expect(await charge(1)).toBe('charged');
    expect(runs).toEqual([false, true]);
    inner.dispose();
  });
});

describe('idempotent(): what a repeat learns of the first caller’s abort', () => {
  it('E_IDEMPOTENCY_ABORTED carries no cause and no word of the reason (another caller’s, perhaps with a secret)', async () => {
    const store = memoryStore();
    const charge = idempotent(
      (_: number, ctx: IdempotentContext) =>
        new Promise<string>((_resolve, reject) => {
          ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true });
        }),
      { store, key: () => 'order-7', bus: createBus() },
    );
    const controller = new AbortController();
    const first = charge(1, { signal: controller.signal });
    await tick();
    controller.abort(new Error('session sk_live_51Hs3cr3t expired'));
    await expect(first).rejects.toThrow('sk_live_51Hs3cr3t');
    await tick();
    const error = (await charge(1).catch((e: unknown) => e)) as Error & { code: string; key: string };
    expect({ code: error.code, key: error.key, cause: error.cause }).toEqual({
      code: 'E_IDEMPOTENCY_ABORTED',
      key: 'order-7',
      cause: undefined,
    });
    expect(JSON.stringify({ ...error, message: error.message, stack: error.stack })).not.toContain('sk_live');
    store.dispose();
  });
});

describe('idempotent(): a function that is not async, and throws synchronously after reading its signal', () => {
  it('aborted inside it (a progress callback of the caller): the caller gets the reason, the key refuses a repeat', async () => {
    const store = memoryStore();
    const controller = new AbortController();
    let runs = 0;
    const charge = idempotent(
      (_: number, ctx: IdempotentContext): string => {
        runs++;
        controller.abort(new Error('user pressed cancel')); // the caller's callback, called part way
        if (ctx.signal.aborted) throw ctx.signal.reason;
        return 'charged';
      },
      { store, key: () => 'k', bus: createBus() },
    );
    await expect(charge(1, { signal: controller.signal })).rejects.toThrow('user pressed cancel');
    await tick();
    await expect(charge(1)).rejects.toMatchObject({ code: 'E_IDEMPOTENCY_ABORTED' });
    expect(runs).toBe(1);
    store.dispose();
  });

  it('never aborted: its synchronous throw is its own failure, released, and a retry runs it', async () => {
    const store = memoryStore();
    const controller = new AbortController();
    let runs = 0;
    const charge = idempotent(
      (_: number, ctx: IdempotentContext): string => {
        runs++;
        if (!ctx.signal.aborted && runs === 1) throw new Error('declined');
        return 'charged';
      },
      { store, key: () => 'k', bus: createBus() },
    );
    await expect(charge(1, { signal: controller.signal })).rejects.toThrow('declined');
    expect(await charge(1, { signal: controller.signal })).toBe('charged');
    expect(runs).toBe(2);
    store.dispose();
  });
});

describe('the `aborted` record where a reader does not know the kind', () => {
  it('a reader from before it (any kind but `response` read as a value) fails to parse it, never replays a value', () => {
    const written = encodeOutcome({ kind: 'aborted' });
    expect(decodeOutcome(written)).toEqual({ kind: 'aborted' });
    // What an older redisStore did with a kind it did not know: read it as a value.
    expect(() => decodeOutcome({ ...written, kind: 'value' })).toThrow(SyntaxError);
  });

  it('memoryStore counts every `aborted` record in its bytes, evicts the least recently used first, and frees their bytes', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const store = memoryStore({ maxEntries: 3, clock });
    const abort = async (k: string) => {
      const claim = await store.claim(k, 'fp', 1_000);
      if (claim.status !== 'claimed') throw new Error(`${k}: ${claim.status}`);
      expect(await store.complete(k, claim.token, { kind: 'aborted' }, 5_000)).toBe(true);
    };
    await abort('a');
    const one = store.bytes;
    expect(one).toBeGreaterThan(0);
    for (const k of ['b', 'c', 'd', 'e']) await abort(k);
    expect({ entries: store.snapshot().entries, bytes: store.bytes }).toEqual({ entries: 3, bytes: 3 * one });
    // `a` and `b` went first: a repeat of `a` runs; `e` is still refused.
    expect((await store.claim('a', 'fp', 1_000)).status).toBe('claimed');
    const e = await store.claim('e', 'fp', 1_000);
    expect(e.status === 'completed' && e.record.outcome).toEqual({ kind: 'aborted' });
    store.dispose();
  });
});
