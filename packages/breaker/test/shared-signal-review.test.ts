import { getEventListeners } from 'node:events';
import { createBus, pipeline, timeout } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { circuitBreaker } from '../src/index.js';

describe('circuitBreaker() and one signal every call shares (a shutdown signal) (review)', () => {
  it('1,501 calls in flight, alone and under a timeout: one abort listener on the signal, none after, no warning', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    const shutdown = new AbortController();
    const bus = createBus();
    const counts: number[] = [];
    try {
      for (const policy of [
        circuitBreaker({ bus, policies: false }),
        pipeline(timeout(60_000, { bus }), circuitBreaker({ bus, policies: false })),
      ]) {
        let release: () => void = () => {};
        const gate = new Promise<void>((resolve) => {
          release = resolve;
        });
        const calls = Array.from({ length: 1_501 }, (_, i) =>
          policy.execute(() => gate.then(() => i), { signal: shutdown.signal }),
        );
        await new Promise((resolve) => setImmediate(resolve));
        counts.push(getEventListeners(shutdown.signal, 'abort').length);
        release();
        expect(await Promise.all(calls)).toHaveLength(1_501);
        counts.push(getEventListeners(shutdown.signal, 'abort').length);
      }
      await new Promise((resolve) => setImmediate(resolve));
      expect({ counts, warnings: warnings.filter((w) => w.startsWith('MaxListenersExceededWarning')) }).toEqual({
        counts: [1, 0, 1, 0],
        warnings: [],
      });
    } finally {
      process.off('warning', onWarning);
    }
  });
});
