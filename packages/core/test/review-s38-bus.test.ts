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
      const thenable = new Error('thenable');
      const seen: string[] = [];
      bus.on('retry.attempt', async () => {
        throw boom;
      });
      bus.once('retry.attempt', async () => {
        throw later;
      });
      // Not a native promise: its then() is still given the handler.
      bus.on('retry.attempt', (() => ({
        // biome-ignore lint/suspicious/noThenProperty: a thenable is what this test needs
        then: (_: unknown, reject: (e: unknown) => void) => reject(thenable),
      })) as never);
      bus.on('retry.attempt', () => {
        seen.push('after');
      });
      bus.emit(event);
      expect(seen).toEqual(['after']); // the emit went on, synchronously
      await turn();
      expect(reported).toEqual([
        [thenable, event], // a thenable's then() runs its handler at once
        [boom, event],
        [later, event],
      ]);
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
