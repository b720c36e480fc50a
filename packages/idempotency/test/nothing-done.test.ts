/**
 * `ctx.nothingDone()`: a function that followed its caller's abort only in read-only steps says
 * so before it throws, and the key is released instead of keeping the `aborted` verdict. Without
 * the call, the verdict stays (safe by default).
 */
import { createBus, type HoldfastEvent } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { type IdempotentContext, idempotent, memoryStore } from '../src/index.js';

const tick = () => new Promise((resolve) => setImmediate(resolve));

function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((res) => {
    resolve = res;
  });
  return { promise, resolve };
}

/** A read-only step that follows `signal` (a quote, a lookup): rejects with the reason on abort. */
function lookup(signal: AbortSignal, gate: Promise<void>): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
    void gate.then(resolve);
  });
}

/**
 * A charge that looks a quote up first (following the signal) and charges after it: `effects`
 * counts the charges. `thrown` lets a test hold the throw after `nothingDone()` was called.
 */
function charger(options: { say: boolean; before?: Promise<void> }) {
  const state = { runs: 0, effects: 0, started: deferred<void>(), gate: deferred<void>() };
  const fn = async (n: number, ctx: IdempotentContext) => {
    state.runs++;
    state.started.resolve();
    try {
      await lookup(ctx.signal, state.runs === 1 ? state.gate.promise : Promise.resolve());
    } catch (error) {
      if (options.say) ctx.nothingDone();
      await options.before;
      throw error;
    }
    state.effects++;
    return `charged ${n}`;
  };
  return { state, fn };
}

describe('idempotent(): ctx.nothingDone() before a throw after the abort', () => {
  it('releases the key: a repeat runs the function once, and its result is stored', async () => {
    const store = memoryStore();
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('*', (event) => events.push(event));
    const { state, fn } = charger({ say: true });
    const charge = idempotent(fn, { store, key: () => 'k', bus });
    const controller = new AbortController();
    const call = charge(1, { signal: controller.signal });
    await state.started.promise;
    controller.abort(new Error('client left'));
    await expect(call).rejects.toThrow('client left');
    await tick();
    expect(await charge(1)).toBe('charged 1');
    expect(await charge(1)).toBe('charged 1');
    expect({ runs: state.runs, effects: state.effects }).toEqual({ runs: 2, effects: 1 });
    const types = events.map((e) => e.type);
    expect(types).toContain('idempotency.release');
    expect(types).not.toContain('idempotency.lost');
    store.dispose();
  });

  it('forgotten: the verdict stays, a repeat gets E_IDEMPOTENCY_ABORTED and never runs', async () => {
    const store = memoryStore();
    const { state, fn } = charger({ say: false });
    const charge = idempotent(fn, { store, key: () => 'k', bus: createBus() });
    const controller = new AbortController();
    const call = charge(1, { signal: controller.signal });
    await state.started.promise;
    controller.abort(new Error('client left'));
    await expect(call).rejects.toThrow('client left');
    await tick();
    await expect(charge(1)).rejects.toMatchObject({ code: 'E_IDEMPOTENCY_ABORTED' });
    expect(state.runs).toBe(1);
    store.dispose();
  });

  it('works destructured: ({ signal, nothingDone }) => ...', async () => {
    const store = memoryStore();
    let runs = 0;
    const gate = deferred<void>();
    const charge = idempotent(
      async (_: number, { signal, nothingDone }: IdempotentContext) => {
        runs++;
        if (runs > 1) return 'second';
        try {
          await lookup(signal, gate.promise);
        } catch (error) {
          nothingDone();
          throw error;
        }
        return 'first';
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
    expect(runs).toBe(2);
    store.dispose();
  });

  it('a repeat during the call, after nothingDone() but before the throw, still conflicts', async () => {
    const store = memoryStore();
    const hold = deferred<void>();
    const { state, fn } = charger({ say: true, before: hold.promise });
    const charge = idempotent(fn, { store, key: () => 'k', bus: createBus() });
    const controller = new AbortController();
    const call = charge(1, { signal: controller.signal });
    await state.started.promise;
    controller.abort(new Error('client left'));
    await expect(call).rejects.toThrow('client left');
    await tick();
    // nothingDone() has been called; the function has not thrown yet: the key is still its own.
    await expect(charge(1)).rejects.toMatchObject({ code: 'E_IDEMPOTENCY_CONFLICT' });
    hold.resolve();
    await tick();
    expect(await charge(1)).toBe('charged 1');
    expect({ runs: state.runs, effects: state.effects }).toEqual({ runs: 2, effects: 1 });
    store.dispose();
  });

  it('a repeat waiting during the call runs once the key is released, and only then', async () => {
    const store = memoryStore();
    const hold = deferred<void>();
    const { state, fn } = charger({ say: true, before: hold.promise });
    const charge = idempotent(fn, { store, key: () => 'k', bus: createBus(), wait: { timeout: 30_000, interval: 5 } });
    const controller = new AbortController();
    const call = charge(1, { signal: controller.signal });
    await state.started.promise;
    controller.abort(new Error('client left'));
    await expect(call).rejects.toThrow('client left');
    const waiting = charge(1);
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(state.runs).toBe(1);
    hold.resolve();
    expect(await waiting).toBe('charged 1');
    expect({ runs: state.runs, effects: state.effects }).toEqual({ runs: 2, effects: 1 });
    store.dispose();
  }, 30_000);

  it('a function that calls it and then returns: its result is stored and replayed as ever', async () => {
    const store = memoryStore();
    let runs = 0;
    const started = deferred<void>();
    const finish = deferred<void>();
    const charge = idempotent(
      async (_: number, ctx: IdempotentContext) => {
        runs++;
        started.resolve();
        ctx.nothingDone();
        await finish.promise;
        return `aborted: ${ctx.signal.aborted}`;
      },
      { store, key: () => 'k', bus: createBus() },
    );
    const controller = new AbortController();
    const call = charge(1, { signal: controller.signal });
    await started.promise;
    controller.abort(new Error('left'));
    await expect(call).rejects.toThrow('left');
    finish.resolve();
    await tick();
    expect(await charge(1)).toBe('aborted: true');
    expect(runs).toBe(1);
    store.dispose();
  });

  it('called after the effect began, it is the function’s word: the key is released and a repeat runs again', async () => {
    const store = memoryStore();
    let effects = 0;
    const gate = deferred<void>();
    const charge = idempotent(
      async (_: number, ctx: IdempotentContext) => {
        effects++; // the effect happened
        try {
          await lookup(ctx.signal, effects === 1 ? gate.promise : Promise.resolve());
        } catch (error) {
          ctx.nothingDone(); // a wrong claim
          throw error;
        }
        return 'done';
      },
      { store, key: () => 'k', bus: createBus() },
    );
    const controller = new AbortController();
    const call = charge(1, { signal: controller.signal });
    await tick();
    controller.abort(new Error('left'));
    await expect(call).rejects.toThrow('left');
    await tick();
    expect(await charge(1)).toBe('done');
    expect(effects).toBe(2);
    store.dispose();
  });

  it('a call that was never aborted and throws is released with or without it', async () => {
    const store = memoryStore();
    let runs = 0;
    const charge = idempotent(
      (_: number, ctx: IdempotentContext) => {
        runs++;
        if (runs === 1) {
          ctx.nothingDone();
          throw new Error('declined');
        }
        return 'second';
      },
      { store, key: () => 'k', bus: createBus() },
    );
    await expect(charge(1, { signal: new AbortController().signal })).rejects.toThrow('declined');
    expect(await charge(1)).toBe('second');
    store.dispose();
  });
});
