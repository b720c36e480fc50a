import { type Clock, createBus, type HoldfastEvent, ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { HOUR, stepWallClock } from '../../../test/support/wall-clock.js';
import { retry, retryBudget } from '../src/index.js';

// Date.now() steps (stepWallClock) while Node's timers and performance.now() run on:
// retries on the real clock must not follow the step.

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const transient = () => Object.assign(new Error('reset'), { code: 'ECONNRESET' });

describe('wall-clock steps, real clock', () => {
  it.each([
    ['forward', HOUR, 5],
    ['back', -HOUR, 5],
  ])(
    'maxElapsed counts real time when the wall clock steps %s an hour in the middle of a call',
    async (_, step, attempts) => {
      const bus = createBus();
      const gaveUp: HoldfastEvent[] = [];
      bus.on('retry.giveUp', (e) => gaveUp.push(e));
      const policy = retry({
        maxAttempts: 5,
        maxElapsed: 60_000,
        backoff: { type: 'constant', initialDelay: 1 },
        budget: false,
        bus,
      });
      let calls = 0;
      await expect(
        policy.execute(() => {
          calls++;
          if (calls === 2) stepWallClock(step);
          throw transient();
        }),
      ).rejects.toThrow();
      expect(calls).toBe(attempts);
      expect(gaveUp.map((e) => (e as { reason?: string }).reason)).toEqual(['maxAttempts']);
    },
  );

  it('maxElapsed still stops a call that retries past it after the wall clock stepped back', async () => {
    const policy = retry({
      maxAttempts: 30,
      maxElapsed: 150,
      backoff: { type: 'constant', initialDelay: 20 },
      jitter: 'none',
      budget: false,
    });
    let calls = 0;
    await expect(
      policy.execute(() => {
        if (++calls === 1) stepWallClock(-HOUR);
        throw transient();
      }),
    ).rejects.toThrow();
    // 150 ms of 20 ms waits: at most 8 attempts; before, it retried on for the hour (here: all 30).
    expect(calls).toBeLessThanOrEqual(8);
  });

  it('a retry budget refills one ttl after the wall clock steps back less than its ttl', async () => {
    const budget = retryBudget({ ratio: 0, minPerSecond: 2, ttl: 1_000, policies: false });
    expect(budget.tryWithdraw()).toBe(true);
    expect(budget.tryWithdraw()).toBe(true);
    expect(budget.tryWithdraw()).toBe(false);
    stepWallClock(-900);
    await sleep(1_300);
    expect(budget.tryWithdraw()).toBe(true);
  });

  it('a retry budget does not forget its retries when the wall clock steps forward an hour', () => {
    const budget = retryBudget({ ratio: 0, minPerSecond: 2, ttl: 1_000, policies: false });
    expect(budget.tryWithdraw()).toBe(true);
    expect(budget.tryWithdraw()).toBe(true);
    stepWallClock(HOUR);
    expect(budget.tryWithdraw()).toBe(false);
  });
});

describe("a user's clock without monotonic(), stepped back while retry waits", () => {
  it('ends the wait: a clock stepped back 60 ms each time a timer fires does not hold the retry forever', async () => {
    const manual = new ManualClock(0);
    let step = 0;
    // Its own timers, its now() set back 60 ms as each fires (a wait of 100 ms wakes with 60 left).
    const clock: Clock = {
      now: () => manual.now() - step,
      setTimeout: (callback, ms) =>
        manual.setTimeout(() => {
          step += 60;
          callback();
        }, ms),
      clearTimeout: (handle) => manual.clearTimeout(handle),
    };
    const policy = retry({ clock, maxAttempts: 2, backoff: { initialDelay: 100 }, jitter: 'none', budget: false });
    let calls = 0;
    const result = policy.execute(() => {
      if (++calls === 1) throw transient();
      return 'ok';
    });
    await manual.advance(1_000);
    // Before: each wake found 60 ms left and waited again, the second attempt never ran.
    expect(calls).toBe(2);
    await expect(result).resolves.toBe('ok');
    expect(manual.pending).toBe(0);
  });
});
