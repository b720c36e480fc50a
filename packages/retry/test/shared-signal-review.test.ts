import { getEventListeners } from 'node:events';
import { createBus } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { retry } from '../src/index.js';

describe('retry() and one signal every call shares (a shutdown signal) (review)', () => {
  it('1,501 calls in flight, some waiting to retry: one abort listener on the signal, none after, no warning', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    const shutdown = new AbortController();
    const policy = retry({ bus: createBus(), budget: false, jitter: 'none', backoff: { initialDelay: 5 } });
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    try {
      // Odd calls fail once first, so they hold the signal through a retry's wait and p-retry's loop.
      const calls = Array.from({ length: 1_501 }, (_, i) =>
        policy.execute(
          async ({ attempt }) => {
            if (i % 2 === 1 && attempt === 1) throw new Error('reset');
            await gate;
            return i;
          },
          { signal: shutdown.signal },
        ),
      );
      await new Promise((resolve) => setTimeout(resolve, 50));
      const inFlight = getEventListeners(shutdown.signal, 'abort').length;
      release();
      expect(await Promise.all(calls)).toHaveLength(1_501);
      await new Promise((resolve) => setImmediate(resolve));
      expect({
        inFlight,
        after: getEventListeners(shutdown.signal, 'abort').length,
        warnings: warnings.filter((w) => w.startsWith('MaxListenersExceededWarning')),
      }).toEqual({ inFlight: 1, after: 0, warnings: [] });
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('aborting that signal still stops every call, in flight or waiting to retry', async () => {
    const shutdown = new AbortController();
    const policy = retry({ bus: createBus(), budget: false, jitter: 'none', backoff: { initialDelay: 60_000 } });
    let ran = 0;
    const calls = Array.from({ length: 200 }, (_, i) =>
      policy
        .execute(
          ({ attempt, signal }) => {
            ran++;
            if (i % 2 === 1 && attempt === 1) return Promise.reject(new Error('reset'));
            return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
          },
          { signal: shutdown.signal },
        )
        .catch((e: unknown) => e),
    );
    await new Promise((resolve) => setTimeout(resolve, 20));
    shutdown.abort('shutting down');
    const outcomes = await Promise.all(calls);
    expect(new Set(outcomes)).toEqual(new Set(['shutting down']));
    expect(ran).toBe(200);
    expect(getEventListeners(shutdown.signal, 'abort')).toHaveLength(0);
  });
});
