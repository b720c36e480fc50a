/**
 * A cooperative timeout() whose deadline passed while its function runs on (it ignores its
 * signal), and whose caller then aborts: the caller gets its own reason, whatever it is (an Error,
 * a string, undefined), through every composition; a retry around it does not try again, and a
 * breaker around it counts no failure (the caller gave up; the backend said nothing).
 */
import { circuitBreaker } from '@holdfast/breaker';
import { createBus, fallback, hedge, ManualClock, pipeline, timeout } from '@holdfast/core';
import { retry } from '@holdfast/retry';
import { describe, expect, it } from 'vitest';

const reasons: [string, unknown][] = [
  ['an Error', new Error('user left')],
  ['a string', 'user left'],
  ['undefined', undefined],
];

/** A function that ignores its signal and answers after 50 ms of `clock`. */
const deaf = (clock: ManualClock) => () =>
  new Promise<string>((resolve) => clock.setTimeout(() => resolve('late'), 50));

async function abortAfterDeadline(run: (signal: AbortSignal) => Promise<unknown>, clock: ManualClock, reason: unknown) {
  const caller = new AbortController();
  const outcome = run(caller.signal).then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  await clock.advance(20); // the timeout's 10 ms have passed; the function runs on
  caller.abort(reason);
  await clock.advance(100);
  return { outcome: await outcome, signal: caller.signal };
}

describe('cooperative timeout, caller aborts after the deadline', () => {
  for (const [what, reason] of reasons) {
    it(`timeout in retry in breaker: the caller's reason (${what}), one attempt, no failure counted`, async () => {
      const clock = new ManualClock(1_000);
      const bus = createBus();
      const breaker = circuitBreaker({ bus, clock, minimumCalls: 1, failureRateThreshold: 0.5 });
      let attempts = 0;
      const p = pipeline(
        breaker,
        retry({ bus, clock, maxAttempts: 3, backoff: { type: 'constant', initialDelay: 1 } }),
        timeout(10, { bus, clock }),
      );
      const fn = deaf(clock);
      const { outcome, signal } = await abortAfterDeadline(
        (s) =>
          p.execute(
            () => {
              attempts++;
              return fn();
            },
            { signal: s },
          ),
        clock,
        reason,
      );
      expect(outcome).toEqual({ error: signal.reason });
      expect(attempts).toBe(1);
      expect(breaker.snapshot()).toMatchObject({ state: 'closed', window: { failures: 0, timeouts: 0 } });
    });

    it(`timeout in hedge and in fallback: the caller's reason (${what})`, async () => {
      const clock = new ManualClock(1_000);
      const bus = createBus();
      const fn = deaf(clock);
      const hedged = pipeline(hedge({ bus, clock, delay: 5, maxHedges: 1 }), timeout(10, { bus, clock }));
      const h = await abortAfterDeadline((s) => hedged.execute(() => fn(), { signal: s }), clock, reason);
      expect(h.outcome).toEqual({ error: h.signal.reason });
      const fb = pipeline(fallback({ bus, to: () => 'fallback' }), timeout(10, { bus, clock }));
      const f = await abortAfterDeadline((s) => fb.execute(() => fn(), { signal: s }), clock, reason);
      // The caller gave up: no fallback is served to nobody, its reason stands.
      expect(f.outcome).toEqual({ error: f.signal.reason });
    });
  }
});
