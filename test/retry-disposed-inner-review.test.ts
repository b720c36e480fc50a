/**
 * Review of retry() around a policy that was disposed (a breaker, during a shutdown): what is
 * disposed stays disposed, so retrying it only delays the caller and holds the process open.
 */

import { circuitBreaker } from '@holdfast/breaker';
import { createBus, DisposedError, type EventOf, ManualClock, pipeline } from '@holdfast/core';
import { isTransientError, retry, retryBudget } from '@holdfast/retry';
import { describe, expect, it } from 'vitest';

describe('retry() around a disposed policy (review)', () => {
  it('a breaker disposed while a call waits between attempts: the DisposedError ends the call at once, not retried', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const bus = createBus();
    const giveUps: EventOf<'retry.giveUp'>[] = [];
    bus.on('retry.giveUp', (e) => void giveUps.push(e));
    const breaker = circuitBreaker({ clock, bus, policies: false });
    const budget = retryBudget({ clock, policies: false });
    const policy = pipeline(retry({ maxAttempts: 5, jitter: 'none', budget, clock, bus }), breaker);
    let ran = 0;
    const call = policy
      .execute(() => {
        ran++;
        throw Object.assign(new Error('reset'), { code: 'ECONNRESET' });
      })
      .catch((e: unknown) => e);
    await clock.advance(0);
    expect(ran).toBe(1); // the first attempt failed; the retry waits 100 ms
    breaker.dispose(); // the service shuts down
    await clock.advance(100);
    expect(clock.pending).toBe(0); // no backoff timer left to hold the process open
    const outcome = await call;
    expect(outcome).toBeInstanceOf(DisposedError);
    expect(ran).toBe(1);
    expect(giveUps.map((e) => [e.attempts, e.reason, e.code])).toEqual([[2, 'notRetryable', 'E_DISPOSED']]);
    expect(budget.snapshot().retries).toBe(1); // the one retry that ran; none spent on the disposed breaker
  });

  it('isTransientError says no to a DisposedError', () => {
    expect(isTransientError(new DisposedError('payments'))).toBe(false);
  });
});
