import { HoldfastConfigError, ManualClock, pipeline } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { adaptiveConcurrency, ConcurrencyLimitError, LimitStoreUnavailableError, tokenBucket } from '../src/index.js';
import { redisRateLimiter } from '../src/redis.js';

/**
 * Outside review, session 38. Each `it` is one bug a user hits, red on the current code.
 */
describe('review s38: @holdfast/limit', () => {
  it('one client over its per-user rate limit inside adaptiveConcurrency() collapses the shared concurrency limit: honest callers get E_CONCURRENCY_LIMIT (503)', async () => {
    // pipeline(shared concurrency limit, per-user rate limit): the rate limiter's refusal is a local
    // RateLimitedError, thrown without the dependency ever being called. adaptiveConcurrency's
    // default isDrop ("every error") counts it as a drop, so one client spamming past its own
    // 429 shrinks everyone's concurrency limit to its minimum. adaptiveThrottle() already skips
    // isLocalRefusal() errors for exactly this reason, and the middleware stopped counting 429
    // responses as failures ("one client's 429s shrank an adaptive limit to its minimum").
    const limits: Record<string, number> = {};
    const refusedHonest: Record<string, number> = {};
    for (const algorithm of ['aimd', 'gradient2', 'vegas'] as const) {
      const clock = new ManualClock();
      const shared = adaptiveConcurrency({ algorithm, initialLimit: 20, clock, policies: false, random: () => 0.5 });
      const perUser = tokenBucket({ limit: 1, interval: 600_000, clock, policies: false });
      const api = pipeline(shared, perUser);
      // The abuser: 400 calls over 2 s, all but the first refused by its own limit (never reaching the dependency).
      for (let i = 0; i < 400; i++) {
        await api.execute(async () => 'ok', { key: 'abuser' }).catch(() => undefined);
        await clock.advance(5);
      }
      limits[algorithm] = shared.limit;
      // Then 10 honest users call at once (the dependency is fine: each call just waits for its gate).
      const gates: (() => void)[] = [];
      const calls = Array.from({ length: 10 }, (_, i) =>
        api
          .execute(() => new Promise<void>((r) => gates.push(r)), { key: `user-${i}` })
          .then(
            () => 'ok',
            (e: unknown) => e,
          ),
      );
      await clock.advance(0);
      for (const g of gates) g();
      refusedHonest[algorithm] = (await Promise.all(calls)).filter((r) => r instanceof ConcurrencyLimitError).length;
    }
    // The dependency never failed and was never slow: nothing says it is overloaded.
    expect({ limits, refusedHonest }).toEqual({
      limits: { aimd: 20, gradient2: 20, vegas: 20 },
      refusedHonest: { aimd: 0, gradient2: 0, vegas: 0 },
    });
  });

  it("adaptiveConcurrency({ window: { minTime: 5000 } }) is refused with a message blaming maxTime, which the user never set, as 'got undefined'", () => {
    // The user set only minTime (above the default maxTime of 1000). The error names window.maxTime
    // and says it "got undefined": the value compared is the default 1000, and the option the user
    // must change (minTime, or maxTime to at least 5000) is not said with its value.
    let error: unknown;
    try {
      adaptiveConcurrency({ algorithm: 'aimd', window: { minTime: 5000 }, policies: false });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(HoldfastConfigError);
    const message = (error as Error).message;
    expect(message).not.toMatch(/got undefined/);
    // Says what it compared: the default maxTime and the given minTime.
    expect(message).toMatch(/1000/);
    expect(message).toMatch(/5000/);
  });
});

describe('found while fixing', () => {
  // An ioredis-like client whose every reply is `answer()`'s (a proxy or a stand-in in front of Redis).
  const fakeClient = (answer: () => Promise<unknown>) => ({
    status: 'ready',
    call: answer,
    once() {},
    removeListener() {},
  });

  it('a Redis reply that is not a number is a store error (let through or refused per onRedisError), never retryAfter NaN', async () => {
    for (const reply of ['OK', 'abc', '', null, undefined, [1, 2], {}, Number.NaN, Number.NEGATIVE_INFINITY]) {
      const client = fakeClient(async () => reply);
      const open = redisRateLimiter({ client, limit: 10, interval: 60_000, policies: false });
      const d = await open.take('k');
      expect(d.allowed, String(reply)).toBe(true);
      expect(Number.isFinite(d.retryAfter), String(reply)).toBe(true);
      expect(open.snapshot().storeErrors).toBe(1);
      const closed = redisRateLimiter({ client, limit: 10, interval: 60_000, onRedisError: 'closed', policies: false });
      await expect(closed.take('k')).rejects.toBeInstanceOf(LimitStoreUnavailableError);
      await expect(closed.execute(() => 'never')).rejects.toMatchObject({ code: 'E_STORE_UNAVAILABLE', status: 503 });
      expect(closed.snapshot().storeErrors).toBe(2);
    }
  });

  it('a frozen Redis (connection ready, every decision timing out) shows status warn until a decision is answered again', async () => {
    let frozen = true;
    // 5: an allowed decision's reply (5 left, TAT 0).
    const client = fakeClient(() => (frozen ? new Promise(() => {}) : Promise.resolve(5)));
    const limiter = redisRateLimiter({ client, limit: 10, interval: 60_000, commandTimeout: 20, policies: false });
    expect(limiter.snapshot().status).toBe('pass');
    for (let i = 0; i < 3; i++) expect((await limiter.take('k')).allowed).toBe(true);
    expect(limiter.snapshot()).toMatchObject({ storeErrors: 3, status: 'warn' });
    frozen = false;
    expect(await limiter.take('k')).toMatchObject({ allowed: true, remaining: 5 });
    expect(limiter.snapshot()).toMatchObject({ storeErrors: 3, status: 'pass' });
  });
});
