import { circuitBreaker } from '@holdfast/breaker';
import { createBus, type EventOf, ManualClock, pipeline } from '@holdfast/core';
import { RateLimitedError, tokenBucket } from '@holdfast/limit';
import { retry } from '@holdfast/retry';
import { describe, expect, it } from 'vitest';

describe('retry() around a rate limiter', () => {
  it("waits the limiter's retryAfter, not its own backoff: the retry is let through instead of refused until the tries run out", async () => {
    const bus = createBus();
    const waits: number[] = [];
    bus.on('retry.attempt', (e: EventOf<'retry.attempt'>) => waits.push(e.delay));
    // One call per 400 ms. The retry's backoff alone (full jitter of 100 ms, then 200 ms) waits
    // at most 300 ms over its three tries: every retry came too early and was refused again.
    const limiter = tokenBucket({ name: 'per-user', limit: 1, interval: 400, bus });
    const policy = pipeline(retry({ maxAttempts: 3, bus }), limiter);
    let runs = 0;
    await policy.execute(async () => ++runs);
    const refused = await limiter.execute(async () => 0).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(RateLimitedError);
    expect((refused as RateLimitedError).retryAfterMs).toBe((refused as RateLimitedError).retryAfter);
    await expect(policy.execute(async () => ++runs)).resolves.toBe(2);
    expect(runs).toBe(2);
    // One retry, after the limiter's hint (what was left of its 400 ms), not before it.
    expect(waits).toHaveLength(1);
    expect(waits[0]).toBeGreaterThan(300);
  });

  it("a breaker around the limiter does not count its refusals against the dependency: it stays closed and the caller sees the limiter's error", async () => {
    const clock = new ManualClock(0);
    const bus = createBus();
    const opened: string[] = [];
    bus.on('breaker.open', (e: EventOf<'breaker.open'>) => opened.push(e.source));
    const breaker = circuitBreaker({ name: 'payments', clock, bus, consecutiveFailures: 3 });
    const limiter = tokenBucket({ name: 'per-user', limit: 1, interval: 60_000, clock, bus });
    const policy = pipeline(breaker, limiter);
    let calls = 0;
    await policy.execute(async () => ++calls);
    // Five refusals of the user's quota: the dependency was called once and answered.
    const refusals = await Promise.all(
      Array.from({ length: 5 }, () => policy.execute(async () => ++calls).catch((e: unknown) => e)),
    );
    expect(refusals.map((e) => (e as Error).name)).toEqual(Array(5).fill('RateLimitedError'));
    expect(calls).toBe(1);
    expect(opened).toEqual([]);
    // Its quota back, the user's next call reaches the dependency.
    await clock.advance(60_000);
    await expect(policy.execute(async () => ++calls)).resolves.toBe(2);
  });
});
