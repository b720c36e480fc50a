import { createBus, type EventOf, pipeline } from '@holdfast/core';
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
});
