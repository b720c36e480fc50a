import { timeout } from '@holdfast/core';
import { redisRateLimiter } from '@holdfast/limit/redis';
import { afterEach, describe, expect, it, vi } from 'vitest';

// A policy made at module load, used by one test under fake timers and by the next on real ones
// (vi.useRealTimers() in an afterEach): the one timer its deadlines share was armed on the fake
// clock, which vitest drops with it. Every deadline after that must still end on time.
afterEach(() => {
  vi.useRealTimers();
});
const realSetTimeout = setTimeout;

/** A connected client whose server answers at once until `hang` is set (then it is SIGSTOPped). */
function client() {
  const state = { hang: false };
  return {
    state,
    status: 'ready',
    call: () => (state.hang ? new Promise<never>(() => {}) : Promise.resolve(5)),
    once: () => {},
    removeListener: () => {},
  };
}

describe('one deadline timer per policy, across fake and real timers (review)', () => {
  it('timeout(): a call on real timers times out after a call under fake timers settled', async () => {
    const policy = timeout(30);
    vi.useFakeTimers();
    await expect(policy.execute(() => Promise.resolve('ok'))).resolves.toBe('ok');
    vi.useRealTimers();
    const hung = policy.execute(
      (ctx) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason))),
    );
    const outcome = await Promise.race([
      hung.then(
        () => 'resolved',
        (error: Error) => error.name,
      ),
      new Promise((resolve) => setTimeout(() => resolve('still waiting after 300 ms'), 300)),
    ]);
    expect(outcome).toBe('TimeoutError');
  });

  it('timeout(): a call under fake timers times out when fake time passes it, after a call on real timers settled', async () => {
    const policy = timeout(1_000);
    await expect(policy.execute(() => Promise.resolve('ok'))).resolves.toBe('ok');
    vi.useFakeTimers();
    const hung = policy.execute(
      (ctx) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason))),
    );
    const outcome = hung.then(
      () => 'resolved',
      (error: Error) => error.name,
    );
    await vi.advanceTimersByTimeAsync(1_000);
    const seen = await Promise.race([
      outcome,
      new Promise((resolve) => realSetTimeout(() => resolve('still waiting'), 300)),
    ]);
    expect(seen).toBe('TimeoutError');
  });

  it('redisRateLimiter: a decision on real timers gives up at commandTimeout after one under fake timers was answered', async () => {
    const c = client();
    const limiter = redisRateLimiter({
      client: c,
      limit: 10,
      interval: 1_000,
      commandTimeout: 30,
      onRedisError: 'closed',
      policies: false,
    });
    vi.useFakeTimers();
    await expect(limiter.take('k')).resolves.toMatchObject({ allowed: true });
    vi.useRealTimers();
    c.state.hang = true;
    const outcome = await Promise.race([
      limiter.take('k').then(
        () => 'allowed',
        (error: Error) => error.message,
      ),
      new Promise((resolve) => setTimeout(() => resolve('still waiting after 300 ms'), 300)),
    ]);
    expect(outcome).toMatch(/Redis did not answer within 30 ms/);
    limiter.dispose();
  });
});
