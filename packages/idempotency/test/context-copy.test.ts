/**
 * The function's context copied (`{ ...ctx }`) or destructured: the copy has the signal the type
 * promises, following it counts as following it, and nobody reading it still costs no
 * AbortController.
 */
import { createBus } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { type IdempotentContext, idempotent, memoryStore } from '../src/index.js';
import { controllersMade } from './controllers-made.js';

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('idempotent(): a copy of ctx', () => {
  it('{ ...ctx } has every field, its signal the one ctx.signal gives', async () => {
    const store = memoryStore();
    const seen: { copy?: IdempotentContext; ctx?: IdempotentContext } = {};
    const charge = idempotent(
      (_: number, ctx: IdempotentContext) => {
        seen.copy = { ...ctx };
        seen.ctx = ctx;
        return 'ok';
      },
      { store, key: () => 'k', bus: createBus() },
    );
    await charge(1);
    expect(seen.copy?.signal).toBeInstanceOf(AbortSignal);
    expect(seen.copy?.signal).toBe(seen.ctx?.signal);
    expect(Object.keys(seen.copy ?? {}).sort()).toEqual(['key', 'nothingDone', 'signal', 'takeover', 'token']);
    expect(typeof seen.copy?.nothingDone).toBe('function');
    store.dispose();
  });

  it('a spread copy’s signal aborts with the caller; following it and throwing keeps the verdict', async () => {
    const store = memoryStore();
    let runs = 0;
    const charge = idempotent(
      (_: number, ctx: IdempotentContext) => {
        runs++;
        const copy = { ...ctx, attempt: 1 };
        const signal = copy.signal;
        return new Promise<string>((_resolve, reject) => {
          signal.addEventListener('abort', () => reject(signal.reason), { once: true });
        });
      },
      { store, key: () => 'k', bus: createBus() },
    );
    const controller = new AbortController();
    const call = charge(1, { signal: controller.signal });
    await tick();
    controller.abort(new Error('left'));
    await expect(call).rejects.toThrow('left');
    await tick();
    await expect(charge(1)).rejects.toMatchObject({ code: 'E_IDEMPOTENCY_ABORTED' });
    expect(runs).toBe(1);
    store.dispose();
  });

  it('a spread copy’s nothingDone() releases the key', async () => {
    const store = memoryStore();
    let runs = 0;
    const charge = idempotent(
      (_: number, ctx: IdempotentContext) => {
        runs++;
        if (runs > 1) return 'second';
        const copy = { ...ctx };
        return new Promise<string>((_resolve, reject) => {
          copy.signal.addEventListener(
            'abort',
            () => {
              copy.nothingDone();
              reject(copy.signal.reason);
            },
            { once: true },
          );
        });
      },
      { store, key: () => 'k', bus: createBus() },
    );
    const controller = new AbortController();
    const call = charge(1, { signal: controller.signal });
    await tick();
    controller.abort(new Error('left'));
    await expect(call).rejects.toThrow('left');
    await tick();
    expect(await charge(1)).toBe('second');
    store.dispose();
  });

  it('destructured ({ signal }) in the parameter list: the signal, followed', async () => {
    const store = memoryStore();
    let seen: AbortSignal | undefined;
    const charge = idempotent(
      (_: number, { signal }: IdempotentContext) => {
        seen = signal;
        return new Promise<string>((_resolve, reject) => {
          signal.addEventListener('abort', () => reject(signal.reason), { once: true });
        });
      },
      { store, key: () => 'k', bus: createBus() },
    );
    const controller = new AbortController();
    const call = charge(1, { signal: controller.signal });
    await tick();
    controller.abort(new Error('left'));
    await expect(call).rejects.toThrow('left');
    expect(seen?.aborted).toBe(true);
    await tick();
    await expect(charge(1)).rejects.toMatchObject({ code: 'E_IDEMPOTENCY_ABORTED' });
    store.dispose();
  });

  it('makes no AbortController for a run that reads neither ctx.signal nor a copy of ctx', async () => {
    const store = memoryStore();
    let n = 0;
    const charge = idempotent((_: number, ctx: IdempotentContext) => `${ctx.key}:${ctx.token !== undefined}`, {
      store,
      key: () => `k${n++}`,
      bus: createBus(),
    });
    const controller = new AbortController();
    const made = await controllersMade(async () => {
      for (let i = 0; i < 5; i++) await charge(i);
      for (let i = 0; i < 5; i++) await charge(i, { signal: controller.signal });
    });
    expect(made).toBe(0);
    store.dispose();
  });
});
