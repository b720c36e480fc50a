import { createBus, type EventOf, type HoldfastEvent } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { HOUR, stepWallClock } from '../../../test/support/wall-clock.js';
import { breakerRegistry, circuitBreaker } from '../src/index.js';
import { fail } from './support.js';

// Date.now() steps (stepWallClock) while Node's timers and performance.now() run on:
// a breaker on the real clock must not follow the step.

function setup(options: Parameters<typeof circuitBreaker>[0] = {}) {
  const bus = createBus();
  const events: HoldfastEvent[] = [];
  bus.on('*', (e) => events.push(e));
  const breaker = circuitBreaker({ name: 'payments', bus, policies: false, ...options });
  const of = <K extends HoldfastEvent['type']>(type: K) =>
    events.filter((e) => e.type === type) as unknown as EventOf<K>[];
  return { breaker, of };
}

describe('circuitBreaker(): wall-clock steps, real clock', () => {
  it('a fast call in flight across a step forward of an hour is neither slow nor an hour long', async () => {
    const { breaker, of } = setup({ minimumCalls: 1, slowCall: { duration: 1_000, rateThreshold: 1 } });
    await breaker.execute(() => {
      stepWallClock(HOUR);
      return 'ok';
    });
    expect(breaker.state).toBe('closed');
    expect(of('breaker.open')).toHaveLength(0);
    expect(of('breaker.slow')).toHaveLength(0);
    const [success] = of('breaker.success');
    expect(success?.latency).toBeGreaterThanOrEqual(0);
    expect(success?.latency).toBeLessThan(1_000);
    expect(breaker.snapshot().latency.p99 ?? 0).toBeLessThan(1_000);
  });

  it('a call in flight across a step back of an hour has no negative latency', async () => {
    const { breaker, of } = setup();
    await breaker.execute(() => {
      stepWallClock(-HOUR);
      return 'ok';
    });
    const [success] = of('breaker.success');
    expect(success?.latency).toBeGreaterThanOrEqual(0);
  });

  it('stays open for openFor when the wall clock steps forward an hour', async () => {
    const { breaker } = setup({ consecutiveFailures: 1, openFor: 30_000 });
    await expect(breaker.execute(fail())).rejects.toThrow();
    expect(breaker.state).toBe('open');
    stepWallClock(HOUR);
    // 30 s have not passed: still open, and still saying when to come back (in epoch ms of the new wall time).
    expect(breaker.state).toBe('open');
    let calls = 0;
    await expect(breaker.execute(() => ++calls)).rejects.toMatchObject({ code: 'E_CIRCUIT_OPEN' });
    expect(calls).toBe(0);
    const snap = breaker.snapshot();
    expect(snap.retryIn).toBeGreaterThan(29_000);
    expect(snap.retryIn).toBeLessThanOrEqual(30_000);
    expect((snap.retryAt ?? 0) - Date.now()).toBeGreaterThan(29_000);
  });

  it('a registry does not drop its breakers as idle when the wall clock steps forward an hour', () => {
    const registry = breakerRegistry({ idleTtl: 60_000, policies: false });
    registry.get('a');
    registry.get('b');
    stepWallClock(HOUR);
    registry.prune();
    expect(registry.size).toBe(2);
    registry.dispose();
  });
});
