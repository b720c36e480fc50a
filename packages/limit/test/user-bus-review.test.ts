import { describe, expect, it } from 'vitest';
import { brokenBus } from '../../../test/support/buses.js';
import { recordWarnings } from '../../../test/support/warnings.js';
import { bulkhead, tokenBucket } from '../src/index.js';
import { redisRateLimiter } from '../src/redis.js';

const warnings = recordWarnings();

describe('limit policies with a { bus } of the user own that throws (review)', () => {
  it('a Redis limiter failing open still runs the call when Redis errs, and the throw is told once', async () => {
    const client = {
      status: 'ready',
      call: () => Promise.reject(new Error('ECONNRESET')),
      once: () => {},
      removeListener: () => {},
    };
    const limiter = redisRateLimiter({
      client,
      limit: 10,
      interval: 1_000,
      onRedisError: 'open',
      bus: brokenBus(),
      policies: false,
    });
    let ran = 0;
    for (let i = 0; i < 3; i++) await expect(limiter.execute(() => ++ran)).resolves.toBe(i + 1);
    await new Promise((resolve) => setImmediate(resolve));
    expect(warnings.filter((w) => w.code === 'HOLDFAST_BUS_ERROR')).toHaveLength(1);
    limiter.dispose();
  });

  it('a token bucket refuses with RateLimitedError (a rejected promise), and a bulkhead runs its call', async () => {
    const bucket = tokenBucket({ limit: 1, interval: 60_000, bus: brokenBus(), policies: false });
    await expect(bucket.execute(() => 'ran')).resolves.toBe('ran');
    let refused: Promise<unknown> | undefined;
    expect(() => {
      refused = bucket.execute(() => 'ran');
    }).not.toThrow();
    await expect(refused).rejects.toMatchObject({ code: 'E_RATE_LIMITED' });
    const bh = bulkhead({ maxConcurrent: 1, maxQueue: 0, bus: brokenBus(), policies: false });
    await expect(bh.execute(() => 'ran')).resolves.toBe('ran');
  });
});
