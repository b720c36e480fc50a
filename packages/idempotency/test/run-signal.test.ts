/**
 * The running function's signal (`ctx.signal`), what a throw after the caller's abort leaves for
 * the key, and the window where the result is in hand when the abort lands.
 */
import { createBus, ManualClock, pipeline } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { type IdempotencyStore, type IdempotentContext, idempotent, memoryStore } from '../src/index.js';
import { controllersMade } from './controllers-made.js';

const tick = () => new Promise((resolve) => setImmediate(resolve));

function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A function that passes its signal on, as `fetch(url, { signal })` does: it rejects with the reason. */
function followsSignal(started: () => void) {
  return (_: number, ctx: IdempotentContext) =>
    new Promise<string>((_resolve, reject) => {
      started();
      ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true });
    });
}

describe('idempotent(): the running function follows its caller through ctx.signal', () => {
  it('gives the function a signal that aborts, with the reason, when its caller aborts', async () => {
    const store = memoryStore();
    let seen: AbortSignal | undefined;
    const running = deferred<void>();
    const charge = idempotent(
      (_: number, ctx: IdempotentContext) => {
        seen = ctx.signal;
        running.resolve();
        return new Promise<string>(() => {});
      },
      { store, key: () => 'k', bus: createBus() },
    );
    const controller = new AbortController();
    const call = charge(1, { signal: controller.signal });
    await running.promise;
    expect(seen?.aborted).toBe(false);
    const reason = new Error('client left');
    controller.abort(reason);
    await expect(call).rejects.toBe(reason);
    expect(seen?.aborted).toBe(true);
    expect(seen?.reason).toBe(reason);
    store.dispose();
  });

  it('without a caller signal, the function still gets one, never aborted', async () => {
    const store = memoryStore();
    const charge = idempotent((_: number, ctx: IdempotentContext) => ctx.signal.aborted, {
      store,
      key: (n) => `k${n}`,
      bus: createBus(),
    });
    expect(await charge(1)).toBe(false);
    store.dispose();
  });

  it('a function that follows the abort and throws: a retry never runs it again, even after the lease', async () => {
    const clock = new ManualClock(1_000);
    const store = memoryStore({ clock });
    let runs = 0;
    const charge = idempotent(
      followsSignal(() => runs++),
      { store, key: () => 'k', bus: createBus(), clock, leaseMs: 1_000 },
    );
    const controller = new AbortController();
    const call = charge(1, { signal: controller.signal });
    await tick();
    controller.abort(new Error('client left'));
    await expect(call).rejects.toThrow('client left');
    await tick();
    // It may have charged the card before it stopped: a second run could charge it twice.
    await expect(charge(1)).rejects.toMatchObject({ code: 'E_IDEMPOTENCY_ABORTED', key: 'k' });
    await clock.advance(5_000);
    await expect(charge(1)).rejects.toMatchObject({ code: 'E_IDEMPOTENCY_ABORTED' });
    expect(runs).toBe(1);
    store.dispose();
  });

  it('a function that never looked at its signal and throws after the abort: its own failure, released', async () => {
    const store = memoryStore();
    let runs = 0;
    const failed = deferred<string>();
    const charge = idempotent(
      () => {
        runs++;
        return runs === 1 ? failed.promise : 'second';
      },
      { store, key: () => 'k', bus: createBus() },
    );
    const controller = new AbortController();
    const call = charge(1, { signal: controller.signal });
    await tick();
    controller.abort(new Error('left'));
    await expect(call).rejects.toThrow('left');
    failed.reject(new Error('declined'));
    await tick();
    expect(await charge(1)).toBe('second');
    expect(runs).toBe(2);
    store.dispose();
  });

  it('a function that sees the abort but finishes anyway: its result is stored and replayed', async () => {
    const store = memoryStore();
    let runs = 0;
    const finish = deferred<string>();
    const charge = idempotent(
      async (_: number, ctx: IdempotentContext) => {
        runs++;
        const value = await finish.promise;
        return `${value} (aborted: ${ctx.signal.aborted})`;
      },
      { store, key: () => 'k', bus: createBus() },
    );
    const controller = new AbortController();
    const call = charge(1, { signal: controller.signal });
    await tick();
    controller.abort(new Error('left'));
    await expect(call).rejects.toThrow('left');
    finish.resolve('charged');
    await tick();
    expect(await charge(1)).toBe('charged (aborted: true)');
    expect(runs).toBe(1);
    store.dispose();
  });

  it('a function that throws before any abort: released as always, a retry runs it', async () => {
    const store = memoryStore();
    let runs = 0;
    const charge = idempotent(
      (_: number, ctx: IdempotentContext) => {
        runs++;
        if (runs === 1) throw new Error(`declined (aborted: ${ctx.signal.aborted})`);
        return 'second';
      },
      { store, key: () => 'k', bus: createBus() },
    );
    const controller = new AbortController();
    await expect(charge(1, { signal: controller.signal })).rejects.toThrow('declined (aborted: false)');
    controller.abort();
    expect(await charge(1)).toBe('second');
    store.dispose();
  });
});

describe('idempotent() inside a pipeline', () => {
  it('makes no AbortController for a context nobody aborts', async () => {
    const store = memoryStore();
    const charge = idempotent(async (n: number) => n, { store, key: (n) => `k${n}`, bus: createBus() });
    const p = pipeline();
    await charge(0);
    let n = 0;
    const bare = await controllersMade(() => p.execute(async () => n++));
    const wrapped = await controllersMade(async () => {
      await p.execute((ctx) => charge(1, ctx)); // a first run
      await p.execute((ctx) => charge(1, ctx)); // a replay
    });
    expect(wrapped).toBe(2 * bare);
    store.dispose();
  });

  it('still follows an abort through the context, to the running function', async () => {
    const store = memoryStore();
    let started = 0;
    const charge = idempotent(
      followsSignal(() => started++),
      { store, key: () => 'k', bus: createBus() },
    );
    const controller = new AbortController();
    const call = pipeline().execute((ctx) => charge(1, ctx), { signal: controller.signal });
    await tick();
    expect(started).toBe(1);
    controller.abort(new Error('shutdown'));
    await expect(call).rejects.toThrow('shutdown');
    await tick();
    await expect(charge(1)).rejects.toMatchObject({ code: 'E_IDEMPOTENCY_ABORTED' });
    store.dispose();
  });
});

describe('idempotent(): an abort that lands with the result in hand', () => {
  it('returns the result once it is stored, whatever microtask the abort lands in', async () => {
    for (let offset = 0; offset < 30; offset++) {
      const inner = memoryStore();
      let stored = false;
      const store: IdempotencyStore = {
        claim: (...args) => inner.claim(...args),
        release: (...args) => inner.release(...args),
        complete: async (...args) => {
          const done = await inner.complete(...args);
          stored = true;
          return done;
        },
      };
      const charge = idempotent(async () => 'charged', { store, key: () => 'k', bus: createBus() });
      const controller = new AbortController();
      const call = charge(1, { signal: controller.signal });
      let storedWhenAborted = false;
      let left = offset;
      const step = () => {
        if (left-- > 0) return queueMicrotask(step);
        storedWhenAborted = stored;
        controller.abort(new Error('late abort'));
      };
      step();
      const outcome = await call.then(
        (value) => ({ value }),
        (error: Error) => ({ error: error.message }),
      );
      if (storedWhenAborted) expect({ offset, ...outcome }).toEqual({ offset, value: 'charged' });
      inner.dispose();
    }
  });

  it('returns the result when the abort lands while the store is completing it', async () => {
    const inner = memoryStore();
    const completing = deferred<void>();
    const held = deferred<void>();
    const store: IdempotencyStore = {
      claim: (...args) => inner.claim(...args),
      release: (...args) => inner.release(...args),
      complete: async (...args) => {
        completing.resolve();
        await held.promise; // Redis slow to answer
        return inner.complete(...args);
      },
    };
    const charge = idempotent(async () => 'charged', { store, key: () => 'k', bus: createBus() });
    const controller = new AbortController();
    const call = charge(1, { signal: controller.signal });
    await completing.promise;
    controller.abort(new Error('late abort'));
    await expect(call).resolves.toBe('charged');
    held.resolve();
    await tick();
    expect(await charge(1)).toBe('charged');
    inner.dispose();
  });
});
