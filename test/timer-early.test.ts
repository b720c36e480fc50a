/**
 * Node counts a timer in whole milliseconds of the event loop's time: a timer may fire up to a
 * millisecond before `performance.now()` (the real clock's monotonic time, which every policy
 * measures deadlines on) has moved its delay. A wait that is told how long a lease or a
 * `Retry-After` has left must not wake before it and find the same answer again.
 */
import { type Clock, ManualClock } from '@holdfast/core';
import { idempotent, memoryStore } from '@holdfast/idempotency';
import { retry } from '@holdfast/retry';
import { describe, expect, it } from 'vitest';

/**
 * `clock`'s time, with Node's timers: one of `ms` fires after `max(1, ms)` less `lag` (under 1 ms),
 * as Node's does when it counts from a truncated millisecond.
 */
function nodeLikeTimers(clock: ManualClock, lag: number): Clock {
  return {
    now: () => clock.now(),
    monotonic: () => clock.monotonic(),
    setTimeout: (callback, ms) => clock.setTimeout(callback, Math.max(1, ms) - lag),
    clearTimeout: (handle) => clock.clearTimeout(handle),
  };
}

describe('retry, when its timer fires early', () => {
  it("waits out a running call's lease (retryAfterMs): the next attempt takes the key over, no attempt is spent on the same conflict", async () => {
    const manual = new ManualClock(0);
    const clock = nodeLikeTimers(manual, 0.5);
    const store = memoryStore({ clock });
    let runs = 0;
    const charge = idempotent(
      (_order: string) => {
        // The first run hangs (its process froze): its lease runs out and a retry takes the key over.
        return ++runs === 1 ? new Promise<string>(() => {}) : 'charged';
      },
      { store, key: () => 'order-1', leaseMs: 1_000 },
    );
    void charge('order-1');
    await manual.advance(0);
    const attempts: number[] = [];
    const second = retry({ clock, maxAttempts: 2, backoff: { initialDelay: 10, maxDelay: 5_000 } }).execute(
      ({ attempt }) => {
        attempts.push(attempt);
        return charge('order-1');
      },
    );
    const outcome = second.then(
      (value) => value,
      (error: unknown) => error,
    );
    await manual.advance(1_000);
    await manual.advance(5);
    // Before the fix: the wait of 1,000 ms (the lease's retryAfterMs) fired at 999.5, the key was
    // still held, and the second and last attempt was refused too: a conflict instead of the takeover.
    const result = await outcome;
    expect(result instanceof Error ? `${result.name} of ${(result.cause as Error).name}` : result).toBe('charged');
    expect(attempts).toEqual([1, 2]);
    expect(runs).toBe(2);
  });

  it('an abort while it waits out what is left ends the call at once and leaves no timer', async () => {
    const manual = new ManualClock(0);
    const clock = nodeLikeTimers(manual, 0.5);
    const caller = new AbortController();
    let calls = 0;
    const outcome = retry({ clock, maxAttempts: 3, backoff: { initialDelay: 100 }, jitter: 'none', budget: false })
      .execute(
        () => {
          calls++;
          throw new Error('reset');
        },
        { signal: caller.signal },
      )
      .catch((error: unknown) => error);
    await manual.advance(99.6); // the wait's timer fired at 99.5 and re-armed for what was left
    expect(manual.pending).toBe(1);
    caller.abort(new Error('caller left'));
    expect(((await outcome) as Error).message).toBe('caller left');
    expect(manual.pending).toBe(0);
    expect(calls).toBe(1);
  });
});
