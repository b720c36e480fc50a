import { getEventListeners } from 'node:events';
import { createBus } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { failover } from '../src/index.js';

describe('failover() and a signal every call shares (a shutdown signal)', () => {
  it('30 calls waiting for the first role check: no leak warning, no listener left', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    const shutdown = new AbortController();
    let answer: () => void = () => {};
    const checked = new Promise<void>((resolve) => {
      answer = resolve;
    });
    const set = failover({
      bus: createBus(),
      policies: false,
      endpoints: ['db-1', 'db-2'],
      roles: {
        check: async (e) => {
          await checked;
          return { role: e.name === 'db-1' ? 'primary' : 'replica' };
        },
      },
    });
    try {
      const calls = Array.from({ length: 30 }, (_, i) =>
        set.execute(() => i, { signal: shutdown.signal, intent: 'read' }),
      );
      await new Promise((resolve) => setImmediate(resolve));
      answer();
      expect(await Promise.all(calls)).toHaveLength(30);
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings).not.toContain('MaxListenersExceededWarning');
      expect(getEventListeners(shutdown.signal, 'abort')).toHaveLength(0);
    } finally {
      process.off('warning', onWarning);
      set.dispose();
    }
  });
});
