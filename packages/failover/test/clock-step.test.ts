import { createBus } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { HOUR, stepWallClock } from '../../../test/support/wall-clock.js';
import { failover } from '../src/index.js';

// Date.now() steps (stepWallClock) while Node's timers and performance.now() run on:
// a failover set on the real clock must not follow the step.

describe('failover(): wall-clock steps, real clock', () => {
  it.each([
    ['forward', HOUR],
    ['back', -HOUR],
  ])('a call in flight while the wall clock steps %s an hour does not put an hour in its latency', async (_, step) => {
    const set = failover({ endpoints: ['a', 'b'], balancer: 'p2c-ewma', bus: createBus(), policies: false });
    let stepped = false;
    // Calls until one lands on `a` (p2c over two endpoints: within a few), which sees the step.
    for (let i = 0; i < 50 && !stepped; i++) {
      await set.execute((e) => {
        if (e.name === 'a') {
          stepped = true;
          stepWallClock(step);
        }
        return 'ok';
      });
    }
    expect(stepped).toBe(true);
    // +1 h made `a` the slowest endpoint by an hour (no traffic until it faded); -1 h made its
    // cost negative, so it took every call however many it already held.
    for (const e of set.snapshot().endpoints) {
      expect(e.ewma).toBeGreaterThanOrEqual(0);
      expect(e.ewma).toBeLessThan(1_000);
    }
    set.dispose();
  });

  it('an endpoint ejected by hand shows ejectedUntil in wall time, and comes back after its time whatever the wall clock did', async () => {
    const bus = createBus();
    const set = failover({ endpoints: ['a', 'b'], bus, policies: false, ejection: { maxShare: 0.5 } });
    expect(set.eject('a', { durationMs: 100 })).toBe(true);
    const until = set.snapshot().endpoints[0]?.ejectedUntil ?? 0;
    expect(until - Date.now()).toBeGreaterThan(0);
    expect(until - Date.now()).toBeLessThanOrEqual(100);
    stepWallClock(-HOUR);
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(set.snapshot().endpoints[0]?.ejection).toBe('probe');
    set.dispose();
  });
});
