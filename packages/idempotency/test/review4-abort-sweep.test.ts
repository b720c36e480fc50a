/**
 * Hostile review of the abort merge: an abort at every microtask offset of a call (claim answered,
 * function started, completion) never runs the function twice, never loses a stored result, and
 * leaves no listener and no unhandled rejection behind.
 */
import { getEventListeners } from 'node:events';
import { createBus } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { idempotent, memoryStore } from '../src/index.js';

const afterMicrotasks = (n: number, then: () => void) => {
  let left = n;
  const step = () => {
    if (left-- <= 0) then();
    else queueMicrotask(step);
  };
  step();
};

describe('idempotent(): an abort at each microtask of a call', () => {
  it('runs the function exactly once across the aborted call and a retry, at every offset', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      for (const sync of [true, false]) {
        for (let offset = 0; offset < 40; offset++) {
          const store = memoryStore();
          let runs = 0;
          let started = false;
          const charge = idempotent(
            (order: { id: string }) => {
              runs++;
              started = true;
              return sync ? `charged ${order.id}` : Promise.resolve(`charged ${order.id}`);
            },
            { store, key: (o) => o.id, bus: createBus() },
          );
          const controller = new AbortController();
          const call = charge({ id: 'o' }, { signal: controller.signal });
          afterMicrotasks(offset, () => controller.abort('gone')); // a non-Error reason
          const first = await call.then(
            (v) => ({ v }),
            (e: unknown) => ({ e }),
          );
          if ('e' in first) expect(first.e).toBe('gone');
          // Let whatever goes on without the caller settle (completion or release).
          await new Promise((resolve) => setImmediate(resolve));
          expect(await charge({ id: 'o' })).toBe('charged o');
          expect({ sync, offset, runs, started }).toEqual({ sync, offset, runs: 1, started: true });
          expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
          store.dispose();
        }
      }
      await new Promise((resolve) => setImmediate(resolve));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('one signal shared by 200 calls that never abort: no listener left once they settle', async () => {
    const store = memoryStore();
    const charge = idempotent(async (n: number) => n, { store, key: (n) => `k${n}`, bus: createBus() });
    const shared = new AbortController();
    const values = await Promise.all(Array.from({ length: 200 }, (_, n) => charge(n, { signal: shared.signal })));
    expect(values).toHaveLength(200);
    expect(getEventListeners(shared.signal, 'abort')).toHaveLength(0);
    store.dispose();
  });

  it('aborted while the function runs: a retry at once is a conflict, never a second run; later it replays', async () => {
    const store = memoryStore();
    let runs = 0;
    let finish: (v: string) => void = () => {};
    const charge = idempotent(
      () => {
        runs++;
        return new Promise<string>((resolve) => {
          finish = resolve;
        });
      },
      { store, key: () => 'k', bus: createBus() },
    );
    const controller = new AbortController();
    const call = charge(1, { signal: controller.signal });
    await new Promise((resolve) => setImmediate(resolve));
    expect(runs).toBe(1);
    controller.abort(AbortSignal.abort().reason);
    await expect(call).rejects.toMatchObject({ name: 'AbortError' });
    await expect(charge(1)).rejects.toMatchObject({ code: 'E_IDEMPOTENCY_CONFLICT' });
    finish('done');
    await new Promise((resolve) => setImmediate(resolve));
    expect(await charge(1)).toBe('done');
    expect(runs).toBe(1);
    store.dispose();
  });

  it('aborted while the function runs and the function then throws: the key is released, a retry runs', async () => {
    const store = memoryStore();
    let runs = 0;
    let fail: (e: Error) => void = () => {};
    const charge = idempotent(
      () => {
        runs++;
        if (runs > 1) return 'second';
        return new Promise<string>((_, reject) => {
          fail = reject;
        });
      },
      { store, key: () => 'k', bus: createBus() },
    );
    const controller = new AbortController();
    const call = charge(1, { signal: controller.signal });
    await new Promise((resolve) => setImmediate(resolve));
    controller.abort(new Error('left'));
    await expect(call).rejects.toThrow('left');
    fail(new Error('declined'));
    await new Promise((resolve) => setImmediate(resolve));
    expect(await charge(1)).toBe('second');
    expect(runs).toBe(2);
    store.dispose();
  });

  it('AbortSignal.timeout while the function hangs: the caller gets the TimeoutError, the result is stored later', async () => {
    const store = memoryStore();
    let runs = 0;
    let finish: (v: string) => void = () => {};
    const charge = idempotent(
      () => {
        runs++;
        return new Promise<string>((resolve) => {
          finish = resolve;
        });
      },
      { store, key: () => 'k', bus: createBus() },
    );
    await expect(charge(1, { signal: AbortSignal.timeout(20) })).rejects.toMatchObject({ name: 'TimeoutError' });
    finish('late');
    await new Promise((resolve) => setImmediate(resolve));
    expect(await charge(1, { signal: AbortSignal.timeout(10_000) })).toBe('late');
    expect(runs).toBe(1);
    store.dispose();
  });

  it('an already-aborted signal: rejects with its reason, claims nothing, runs nothing', async () => {
    const store = memoryStore();
    let runs = 0;
    const charge = idempotent(() => ++runs, { store, key: () => 'k', bus: createBus() });
    const reason = { not: 'an error' };
    await expect(charge(1, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    expect(store.snapshot().entries).toBe(0);
    expect(runs).toBe(0);
    store.dispose();
  });
});
