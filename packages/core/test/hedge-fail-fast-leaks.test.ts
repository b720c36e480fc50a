import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { type CallContext, createBus, hedge, ManualClock } from '../src/index.js';

/**
 * Attempts that fail fast, over and over, under one long-lived caller signal (a server's
 * shutdown signal): once each call has settled, no listener is left on that signal, no timer on
 * the clock, and no attempt's signal is left listened to, with onFailure on or off.
 */
describe('hedge: attempts failing fast leave nothing behind', () => {
  for (const onFailure of [false, true]) {
    it(`onFailure: ${onFailure}: 2,000 calls, the first attempt slow, every hedge failing at once`, async () => {
      const clock = new ManualClock(0);
      const h = hedge({
        delay: 10,
        maxHedges: 3,
        safe: true,
        onFailure,
        budget: false,
        clock,
        bus: createBus(),
        policies: false,
      });
      const shutdown = new AbortController();
      const signals: AbortSignal[] = [];
      const slow: (() => void)[] = [];
      const fn = (ctx: CallContext) => {
        signals.push(ctx.signal);
        if (ctx.attempt > 1) return Promise.reject(new Error(`attempt ${ctx.attempt} failed`));
        return new Promise<string>((_, reject) => {
          const fail = () => reject(new Error('first attempt failed'));
          slow.push(fail);
          ctx.signal.addEventListener('abort', fail, { once: true });
        });
      };
      const outcomes: Promise<string>[] = [];
      for (let i = 0; i < 2_000; i++) {
        outcomes.push(h.execute(fn, { signal: shutdown.signal }).then(String, (e: Error) => e.message));
      }
      await clock.advance(50); // every hedge goes, and fails
      for (const fail of slow.splice(0)) fail();
      const settled = await Promise.all(outcomes);
      expect(new Set(settled)).toEqual(new Set(['first attempt failed']));
      expect(getEventListeners(shutdown.signal, 'abort'), 'listeners left on the caller signal').toHaveLength(0);
      expect(clock.pending, 'timers left behind').toBe(0);
      expect(signals.filter((s) => getEventListeners(s, 'abort').length > 1)).toHaveLength(0);
      h.dispose();
    });
  }
});
