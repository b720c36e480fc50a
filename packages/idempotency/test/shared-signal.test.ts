import { getEventListeners } from 'node:events';
import { createBus } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { idempotent, memoryStore } from '../src/index.js';

describe('idempotent() and a signal every call shares (a shutdown signal)', () => {
  it('30 duplicates waiting for the first run: no leak warning, no listener left', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    const shutdown = new AbortController();
    let finish: () => void = () => {};
    const first = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const charge = idempotent(
      async (order: { id: string }) => {
        await first;
        return `charged ${order.id}`;
      },
      { store: memoryStore(), key: (o) => o.id, wait: { timeout: 5_000, interval: 5 }, bus: createBus() },
    );
    try {
      const calls = Array.from({ length: 31 }, () => charge({ id: 'o-1' }, { signal: shutdown.signal }));
      // The duplicates poll (each sleeping on the shared signal) until the first run completes.
      await new Promise((resolve) => setTimeout(resolve, 20));
      finish();
      expect(new Set(await Promise.all(calls))).toEqual(new Set(['charged o-1']));
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings).not.toContain('MaxListenersExceededWarning');
      expect(getEventListeners(shutdown.signal, 'abort')).toHaveLength(0);
    } finally {
      process.off('warning', onWarning);
    }
  });
});
