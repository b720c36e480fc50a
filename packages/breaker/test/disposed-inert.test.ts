import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { failTimes, setup } from './support.js';

/**
 * A disposed breaker keeps its counts for snapshot(), and nothing else: it runs no call, takes
 * no state change, emits nothing (not for a call that was in flight, nor for an open time that
 * runs out while someone reads it), leaves no timer on its clock and no listener on a signal.
 */
describe('a disposed breaker is inert', () => {
  const states = ['closed', 'open', 'halfOpen with a probe out', 'isolated', 'disabled'] as const;
  for (const state of states) {
    it(`disposed while ${state}`, async () => {
      const { breaker, clock, events } = setup({ consecutiveFailures: 2, openFor: 1_000 });
      const caller = new AbortController();
      let release: (ok: boolean) => void = () => {};
      const inFlight = () =>
        new Promise<string>((resolve, reject) => {
          release = (good) => (good ? resolve('late') : reject(new Error('late failure')));
        });
      if (state === 'open' || state === 'halfOpen with a probe out') await failTimes(breaker, 2);
      if (state === 'halfOpen with a probe out') await clock.advance(1_000);
      if (state === 'isolated') breaker.isolate();
      if (state === 'disabled') breaker.disable();
      const pending =
        state === 'open' || state === 'isolated'
          ? undefined
          : breaker.execute(inFlight, { signal: caller.signal }).catch(() => 'settled');
      const shown = breaker.snapshot().state;
      breaker.dispose();
      events.length = 0;

      let ran = 0;
      await expect(breaker.execute(() => ran++)).rejects.toMatchObject({ code: 'E_DISPOSED' });
      for (const change of ['open', 'close', 'isolate', 'disable'] as const) {
        expect(() => breaker[change](), change).toThrow(expect.objectContaining({ code: 'E_DISPOSED' }));
      }
      release(false);
      await pending;
      await clock.advance(10_000);
      expect(breaker.state).toBe(shown);
      expect(breaker.snapshot().state).toBe(shown);
      breaker.dispose();
      expect(ran, 'calls run after dispose').toBe(0);
      expect(
        events.map((e) => e.type),
        'events after dispose',
      ).toEqual([]);
      expect(clock.pending, 'timers left').toBe(0);
      expect(getEventListeners(caller.signal, 'abort'), 'listeners left on the caller signal').toHaveLength(0);
    });
  }
});
