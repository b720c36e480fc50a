/**
 * A context serialised by a logger: JSON.stringify(ctx) must not read the enumerable `signal`
 * getter (reading it counts as following the signal, and makes an AbortController).
 */
import { createBus } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { type IdempotentContext, idempotent, memoryStore } from '../src/index.js';
import { controllersMade } from './controllers-made.js';

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('idempotent(): a context serialised by a logger', () => {
  it('JSON.stringify(ctx) does not count as following the signal: a plain throw after the abort is released', async () => {
    const store = memoryStore();
    const logged: string[] = [];
    let runs = 0;
    let fail: (error: Error) => void = () => {};
    const fn = (n: number, ctx: IdempotentContext) => {
      runs++;
      logged.push(JSON.stringify({ msg: 'charging', ctx }));
      if (runs > 1) return `charged ${n}`;
      // Never reads ctx.signal: it fails on its own, after the caller left.
      return new Promise<string>((_, reject) => {
        fail = reject;
      });
    };
    const charge = idempotent(fn, { store, key: () => 'k', bus: createBus() });
    const controller = new AbortController();
    const call = charge(1, { signal: controller.signal });
    await tick();
    controller.abort(new Error('client left'));
    await expect(call).rejects.toThrow('client left');
    fail(new Error('gateway said 503'));
    await tick();
    expect(await charge(1)).toBe('charged 1');
    expect(runs).toBe(2);
    expect(JSON.parse(logged[0] as string).ctx).toEqual({ key: 'k', token: expect.any(String), takeover: false });
    store.dispose();
  });

  it('JSON.stringify(ctx) of a call without a signal makes no AbortController', async () => {
    const store = memoryStore();
    const run = idempotent((_: number, ctx: IdempotentContext) => JSON.stringify(ctx), {
      store,
      key: () => 'k',
      bus: createBus(),
    });
    expect(await controllersMade(() => run(1))).toBe(0);
    store.dispose();
  });
});
