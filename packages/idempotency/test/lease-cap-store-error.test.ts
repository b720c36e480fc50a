import { createBus, ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { type IdempotencyStore, idempotent, memoryStore } from '../src/index.js';
import { expressFramework, fastifyFramework } from './http-support/apps.js';
import { newKey, send } from './http-support/support.js';
import { sleep } from './redis.js';

/**
 * The cap at maxRunMs stores the run's verdict (`complete`). When the store does not answer it, or
 * fails it, what is told on the bus is the step that failed: a `complete`, not a renewal.
 */
function storeWithCap(cap: 'never answers' | 'throws', clock: ManualClock) {
  const inner = memoryStore({ clock });
  let capped = 0;
  const store: IdempotencyStore = {
    claim: (...a) => inner.claim(...a),
    // The first verdict stored at the cap is lost (never answered) or fails; the next is taken.
    complete: (...a) => {
      if (a[2].kind === 'value' || capped++ > 0) return inner.complete(...a);
      return cap === 'never answers' ? new Promise<boolean>(() => {}) : Promise.reject(new Error('store gone'));
    },
    release: (...a) => inner.release(...a),
    extend: (...a) => inner.extend(...a),
  };
  return store;
}

describe('the cap at maxRunMs: a verdict the store does not take is told as a failed complete', () => {
  for (const cap of ['never answers', 'throws'] as const) {
    it(`idempotent(): the cap's complete ${cap}: storeError says complete, the cap is tried again, a retry is not run`, async () => {
      const clock = new ManualClock(1_000);
      const store = storeWithCap(cap, clock);
      const bus = createBus();
      const errors: unknown[] = [];
      bus.on('idempotency.storeError', (e) => errors.push({ operation: e.operation, key: e.key }));
      let runs = 0;
      const job = idempotent(
        (_: undefined, ctx) =>
          new Promise<string>((resolve, reject) => {
            if (++runs > 1) return resolve('ran again');
            ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason));
          }),
        { store, key: () => 'k', leaseMs: 300, maxRunMs: 600, clock, bus },
      );
      const first = job(undefined).catch((e: { code: string }) => e.code);
      for (let t = 0; t < 1_200; t += 50) await clock.advance(50);
      expect(await first).toBe('E_TIMEOUT');
      expect(await job(undefined).catch((e: { code: string }) => e.code)).toBe('E_IDEMPOTENCY_ABORTED');
      expect(runs).toBe(1);
      expect(errors).toEqual([{ operation: 'complete', key: 'k' }]);
    });
  }

  for (const framework of [expressFramework, fastifyFramework]) {
    it(`${framework.name}: the cap's complete never answers: storeError says complete, not extend`, async () => {
      const clock = new ManualClock(1_000);
      const errors: unknown[] = [];
      const bus = createBus();
      bus.on('idempotency.storeError', (e) => errors.push(e.operation));
      const store = storeWithCap('never answers', clock);
      const app = await framework.start({ store, leaseMs: 300, maxRunMs: 600, clock, bus });
      try {
        const key = newKey();
        const first = send(`${app.url}/slow`, { key, body: { a: 1 } });
        while (app.gate.entered === 0) await sleep(5);
        for (let t = 0; t < 1_200; t += 50) await clock.advance(50);
        const retry = await send(`${app.url}/slow`, { key, body: { a: 1 } });
        app.gate.open();
        await first;
        expect([retry.status, app.calls.get('slow')]).toEqual([500, 1]);
        expect(new Set(errors)).toEqual(new Set(['complete']));
      } finally {
        app.gate.open();
        await app.close();
      }
    });
  }
});
