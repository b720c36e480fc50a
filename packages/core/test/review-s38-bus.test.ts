// Found while fixing the s38 review of @holdfast/retry: an async listener's rejection.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createBus, type HoldfastEvent } from '../src/index.js';

const event = { type: 'retry.attempt', source: 'r', time: 0, attempt: 2, delay: 0 } as HoldfastEvent;
const turn = () => new Promise((resolve) => setImmediate(resolve));

afterEach(() => {
  vi.restoreAllMocks();
});

describe('found while fixing', () => {
  it('an async listener that rejects is reported like one that throws, never as an unhandled rejection', async () => {
    const unhandled = vi.fn();
    process.on('unhandledRejection', unhandled);
    try {
      const reported: unknown[] = [];
      const bus = createBus({ onListenerError: (error, e) => reported.push([error, e]) });
      const boom = new Error('sink down');
      const later = new Error('sink down, once');
      const seen: string[] = [];
      bus.on('retry.attempt', async () => {
        throw boom;
      });
      bus.once('retry.attempt', async () => {
        throw later;
      });
      // Not a native promise: left alone, its then() never called (see below).
      const then = vi.fn((_: unknown, reject: (e: unknown) => void) => reject(new Error('thenable')));
      bus.on('retry.attempt', (() => ({ then })) as never);
      bus.on('retry.attempt', () => {
        seen.push('after');
      });
      bus.emit(event);
      expect(seen).toEqual(['after']); // the emit went on, synchronously
      await turn();
      expect(reported).toEqual([
        [boom, event],
        [later, event],
      ]);
      expect(then).not.toHaveBeenCalled();
      await turn();
      expect(unhandled).not.toHaveBeenCalled();
    } finally {
      process.off('unhandledRejection', unhandled);
    }
  });

  it('by default, a rejection is a HOLDFAST_LISTENER_ERROR process warning, once per listener', async () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    const bus = createBus();
    bus.on('retry.attempt', async () => {
      throw new Error('sink down');
    });
    bus.emit(event);
    bus.emit(event);
    await turn();
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0]?.[1]).toMatchObject({ code: 'HOLDFAST_LISTENER_ERROR' });
  });

  it('a lazy thenable returned by mistake (a query builder) is never run, and a then-getter that throws is no listener error', async () => {
    const reported: unknown[] = [];
    const bus = createBus({ onListenerError: (error) => reported.push(error) });
    // A Knex/Drizzle query builder: nothing runs until then() is called.
    let ran = 0;
    const query = {
      // biome-ignore lint/suspicious/noThenProperty: a lazy thenable is what this test needs
      then(_resolve: (rows: unknown[]) => void, reject: (e: unknown) => void) {
        ran++;
        reject(new Error('DELETE FROM orders ran'));
      },
    };
    bus.on('retry.attempt', (() => query) as never);
    // The listener returned normally: a `then` getter that throws is not read at all.
    const getter = vi.fn(() => {
      throw new Error('then getter');
    });
    bus.on('retry.attempt', (() => Object.defineProperty({}, 'then', { get: getter })) as never);
    // A thenable whose then() resolves: not run either.
    const resolving = vi.fn((resolve: (v: unknown) => void) => resolve(1));
    // biome-ignore lint/suspicious/noThenProperty: a thenable is what this test needs
    bus.on('retry.attempt', (() => ({ then: resolving })) as never);
    bus.emit(event);
    await turn();
    expect(ran).toBe(0);
    expect(getter).not.toHaveBeenCalled();
    expect(resolving).not.toHaveBeenCalled();
    expect(reported).toEqual([]);
  });

  it('a native Promise that rejects is reported, a Promise subclass too; one that resolves is not', async () => {
    const reported: unknown[] = [];
    const bus = createBus({ onListenerError: (error) => reported.push(error) });
    class Sub<T> extends Promise<T> {}
    const plain = new Error('plain');
    const sub = new Error('subclass');
    bus.on('retry.attempt', () => Promise.reject(plain));
    bus.on('retry.attempt', (() => Sub.reject(sub)) as never);
    bus.on('retry.attempt', () => Promise.resolve(1) as never);
    bus.emit(event);
    await turn();
    expect(reported).toEqual([plain, sub]);
  });

  it('a listener that returns a value that is no promise (null, a number, an object) is left alone', () => {
    const reported: unknown[] = [];
    const bus = createBus({ onListenerError: (error) => reported.push(error) });
    // biome-ignore lint/suspicious/noThenProperty: a `then` that is no function makes no thenable
    const notThenable = { then: 1 };
    for (const value of [null, 0, 'x', {}, notThenable]) bus.on('retry.attempt', (() => value) as never);
    bus.emit(event);
    expect(reported).toEqual([]);
  });
});
