import { createBus, createPolicyRegistry, type HoldfastEvent, ManualClock, readBreaker } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { breakerRegistry, breakerSnapshotSchema, circuitBreaker } from '../src/index.js';
import { after, failTimes, setup, succeed } from './support.js';

describe('snapshot()', () => {
  it('is plain JSON: state, counts in the window, rates, latency and the time until half-open', async () => {
    const { breaker, clock } = setup({ minimumCalls: 4, openFor: 20_000 });
    const slow = breaker.execute(after(clock, 30, 'ok'));
    await clock.advance(30);
    await slow;
    await breaker.execute(succeed);
    await failTimes(breaker, 2); // 2 of 4: opens
    await breaker.execute(succeed).catch(() => undefined);
    await clock.advance(5_000);
    const snap = breaker.snapshot();
    expect(JSON.parse(JSON.stringify(snap))).toEqual(snap);
    expect(snap).toEqual({
      name: 'payments',
      state: 'open',
      time: 5_030,
      retryAt: 20_030,
      retryIn: 15_000,
      opens: 1,
      consecutiveFailures: 0,
      probes: { inFlight: 0, succeeded: 0 },
      window: {
        duration: 10_000,
        buckets: 10,
        calls: 4,
        successes: 2,
        failures: 2,
        slow: 0,
        timeouts: 0,
        rejects: 1,
        fallbacks: 0,
        failureRate: 0.5,
        slowCallRate: 0,
      },
      latency: { p50: 0, p95: expect.any(Number), p99: expect.any(Number) },
    });
    expect(snap.latency.p99).toBeGreaterThan(25);
    expect(breakerSnapshotSchema.parse(snap)).toEqual(snap);
  });
});

describe('restore', () => {
  it('a restarted process starts open from a saved snapshot, and probes when the saved retryAt comes', async () => {
    const first = setup({ minimumCalls: 2, openFor: 60_000 });
    await first.clock.advance(1_000);
    await failTimes(first.breaker, 2);
    await first.clock.advance(10_000);
    const saved = JSON.stringify(first.breaker.snapshot());
    first.breaker.dispose();

    // The new process: same wall clock, a minute later than the failures.
    const clock = new ManualClock(first.clock.now());
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('*', (e) => events.push(e));
    const restarted = circuitBreaker({ name: 'payments', clock, bus, minimumCalls: 2, restore: JSON.parse(saved) });
    expect(restarted.state).toBe('open');
    expect(events).toMatchObject([{ type: 'breaker.open', reason: 'restored', retryAt: 61_000, opens: 1 }]);
    await expect(restarted.execute(succeed)).rejects.toMatchObject({ code: 'E_CIRCUIT_OPEN', retryAt: 61_000 });
    await clock.advance(50_000);
    await expect(restarted.execute(succeed)).resolves.toBe('ok');
    expect(restarted.state).toBe('closed');
  });

  it('keeps the counts of a recent snapshot, drops those older than the window, and restores isolation', async () => {
    const { breaker, clock } = setup({ minimumCalls: 10 });
    await breaker.execute(succeed);
    await failTimes(breaker, 3);
    const snap = breaker.snapshot();

    const soon = circuitBreaker({ clock: new ManualClock(clock.now() + 1_000), restore: snap, minimumCalls: 10 });
    expect(soon.snapshot().window).toMatchObject({ calls: 4, successes: 1, failures: 3 });
    const late = circuitBreaker({ clock: new ManualClock(clock.now() + 60_000), restore: snap });
    expect(late.snapshot().window).toMatchObject({ calls: 0, failures: 0 });

    breaker.isolate();
    const isolated = circuitBreaker({ clock, restore: breaker.snapshot() });
    expect(isolated.state).toBe('isolated');
  });

  it('rejects a snapshot that is not one, naming the bad field', () => {
    expect(() => circuitBreaker({ restore: { state: 'ajar' } as never })).toThrow(/restore\.state/);
  });
});

describe('the policy registry', () => {
  it('a breaker lists itself for health, dashboard and metrics until dispose(), in the shape they read', async () => {
    const policies = createPolicyRegistry();
    const { breaker } = setup({ policies, minimumCalls: 1 });
    await failTimes(breaker, 1);
    const [listed] = policies.snapshots('breaker');
    expect(listed?.name).toBe('payments');
    expect(readBreaker('payments', listed?.snapshot ?? null)).toMatchObject({
      state: 'open',
      failureRate: 1,
      calls: 1,
      retryAt: 30_000,
    });
    breaker.dispose();
    expect(policies.snapshots()).toEqual([]);
    setup({ policies: false });
    expect(policies.size).toBe(0);
  });

  it('a registry lists each breaker it holds as <name>:<key>, and unlists the ones it drops', async () => {
    const policies = createPolicyRegistry();
    const hosts = breakerRegistry({ name: 'hosts', policies, maxKeys: 2, clock: new ManualClock(0) });
    for (const key of ['a', 'b', 'c']) await hosts.execute(key, succeed);
    expect(policies.snapshots('breaker').map((p) => p.name)).toEqual(['hosts:b', 'hosts:c']);
    hosts.dispose();
    expect(policies.size).toBe(0);
  });
});
