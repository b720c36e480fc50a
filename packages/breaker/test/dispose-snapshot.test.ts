import { createBus, ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { circuitBreaker } from '../src/index.js';
import { failTimes, setup, succeed } from './support.js';

/**
 * dispose() stops the breaker; its snapshot afterwards still shows the state it was in. The
 * counts must say the same thing: `consecutiveFailures: 0` and an empty window beside
 * `state: 'closed'` claim a breaker with no failures, and a service that saves its breaker at
 * shutdown (dispose, then snapshot) restores a fresh one, its failures forgotten.
 */
describe('snapshot() after dispose()', () => {
  it('shows the failures in a row and the window as they were, and restores so', async () => {
    const { breaker, clock } = setup({ consecutiveFailures: 5 });
    await breaker.execute(succeed);
    await failTimes(breaker, 4);
    const before = breaker.snapshot();
    breaker.dispose();
    const after = breaker.snapshot();
    expect(after.state).toBe('closed');
    expect(after.consecutiveFailures, 'failures in a row after dispose()').toBe(4);
    expect(after.window).toEqual(before.window);

    const restarted = circuitBreaker({
      name: 'payments',
      clock: new ManualClock(clock.now()),
      bus: createBus(),
      consecutiveFailures: 5,
      restore: JSON.parse(JSON.stringify(after)),
    });
    await failTimes(restarted, 1);
    expect(restarted.state, 'the fifth failure in a row opens the restored breaker').toBe('open');
    restarted.dispose();
  });

  it('the window ages as time passes, as a live one would (no call is counted after dispose)', async () => {
    const { breaker, clock } = setup({ minimumCalls: 10 });
    await failTimes(breaker, 3);
    breaker.dispose();
    await expect(breaker.execute(succeed)).rejects.toMatchObject({ code: 'E_DISPOSED' });
    expect(breaker.snapshot().window).toMatchObject({ calls: 3, failures: 3, rejects: 0 });
    await clock.advance(60_000);
    expect(breaker.snapshot().window).toMatchObject({ calls: 0, failures: 0 });
    expect(breaker.snapshot().consecutiveFailures).toBe(3);
  });

  it('an open breaker disposed shows open with its retryAt, and no probe out', async () => {
    const { breaker, clock } = setup({ minimumCalls: 2, openFor: 30_000 });
    await failTimes(breaker, 2);
    breaker.dispose();
    await clock.advance(1_000);
    expect(breaker.snapshot()).toMatchObject({ state: 'open', retryAt: 30_000, opens: 1, probes: { inFlight: 0 } });
  });
});
