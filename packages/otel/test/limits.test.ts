import { createServer } from 'node:net';
import { fallback, hedge } from '@holdfast/core';
import { adaptiveConcurrency, adaptiveThrottle, bulkhead, tokenBucket } from '@holdfast/limit';
import { redisRateLimiter } from '@holdfast/limit/redis';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { metricNames as M } from '../src/index.js';
import { collectPoints } from './collect.js';

const gate = () => {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { open, opened };
};

describe('instrument(): bulkheads, rate limiters, adaptive limiters, throttles, hedges, fallbacks', () => {
  it('counts real rejections by kind and reason and reads occupancy from the snapshots', async () => {
    const { bus, policies, points, close } = collectPoints();
    try {
      // A bulkhead of 2 with a queue of 1: 2 run, 1 waits, the next 3 are refused as full.
      const pool = bulkhead({ maxConcurrent: 2, maxQueue: 1, bus, policies, name: 'db-pool' });
      const held = gate();
      const calls = Array.from({ length: 6 }, () => pool.execute(() => held.opened).catch((e: unknown) => e));
      // A token bucket of 3 a minute: 3 pass, 2 are refused.
      const api = tokenBucket({ limit: 3, interval: 60_000, bus, policies, name: 'api' });
      for (let i = 0; i < 5; i++) await api.execute(() => 1).catch(() => {});
      // An adaptive limiter starting at 1: one call in flight, the next 2 refused.
      const adaptive = adaptiveConcurrency({ algorithm: 'aimd', initialLimit: 1, bus, policies, name: 'search' });
      const slow = adaptive.execute(() => held.opened);
      for (let i = 0; i < 2; i++) await adaptive.execute(() => 1).catch(() => {});

      expect(await points(M.bulkheadRunning)).toEqual([
        { attributes: { 'holdfast.policy.name': 'db-pool' }, value: 2 },
      ]);
      expect(await points(M.bulkheadQueued)).toEqual([{ attributes: { 'holdfast.policy.name': 'db-pool' }, value: 1 }]);
      expect(await points(M.bulkheadCapacity)).toEqual([
        { attributes: { 'holdfast.policy.name': 'db-pool' }, value: 2 },
      ]);
      expect(await points(M.concurrencyLimit)).toEqual([
        { attributes: { 'holdfast.policy.name': 'search' }, value: 1 },
      ]);
      expect(await points(M.concurrencyInFlight)).toEqual([
        { attributes: { 'holdfast.policy.name': 'search' }, value: 1 },
      ]);
      const rejected = (kind: string, reason: string, code: string) => ({
        'holdfast.limit.kind': kind,
        'holdfast.limit.reason': reason,
        'error.type': code,
      });
      expect(await points(M.limitRejections)).toEqual([
        {
          attributes: { 'holdfast.policy.name': 'db-pool', ...rejected('bulkhead', 'full', 'E_BULKHEAD_FULL') },
          value: 3,
        },
        {
          attributes: { 'holdfast.policy.name': 'api', ...rejected('rate_limit', 'rate_limited', 'E_RATE_LIMITED') },
          value: 2,
        },
        {
          attributes: {
            'holdfast.policy.name': 'search',
            ...rejected('concurrency', 'concurrency_limit', 'E_CONCURRENCY_LIMIT'),
          },
          value: 2,
        },
      ]);
      held.open();
      await Promise.all([...calls, slow]);
      expect(await points(M.bulkheadRunning)).toEqual([
        { attributes: { 'holdfast.policy.name': 'db-pool' }, value: 0 },
      ]);
      expect(await points(M.bulkheadQueued)).toEqual([{ attributes: { 'holdfast.policy.name': 'db-pool' }, value: 0 }]);

      // Disposed policies leave the registry; the counts stay.
      pool.dispose();
      adaptive.dispose();
      expect((await points(M.limitRejections)).map((p) => p.value)).toEqual([3, 2, 2]);
    } finally {
      await close();
    }
  });

  it('reports a throttle refusal probability, throttle refusals, hedges and fallbacks', async () => {
    const { bus, policies, points, close } = collectPoints();
    try {
      let seed = 7;
      const random = () => {
        seed = (seed * 16807) % 2147483647;
        return seed / 2147483647;
      };
      const t = adaptiveThrottle({ bus, policies, random, name: 'backend' });
      let refused = 0;
      for (let i = 0; i < 200; i++) {
        await t
          .execute(() => Promise.reject(new Error('503')))
          .catch((e: unknown) => {
            if ((e as { code?: string }).code === 'E_THROTTLED') refused++;
          });
      }
      expect(refused).toBeGreaterThan(0);
      const [p] = await points(M.throttleProbability);
      expect(p?.attributes).toEqual({ 'holdfast.policy.name': 'backend' });
      expect(p?.value).toBeCloseTo(t.snapshot().probability, 10);
      expect(p?.value).toBeGreaterThan(0.5);
      expect(await points(M.limitRejections)).toEqual([
        {
          attributes: {
            'holdfast.policy.name': 'backend',
            'holdfast.limit.kind': 'throttle',
            'holdfast.limit.reason': 'throttled',
            'error.type': 'E_THROTTLED',
          },
          value: refused,
        },
      ]);

      // A hedge after 5 ms, budget off: each slow first attempt is hedged once.
      const h = hedge({ delay: 5, safe: true, budget: false, bus, policies, name: 'reads' });
      let attempt = 0;
      for (let i = 0; i < 3; i++) {
        attempt = 0;
        await h.execute(
          ({ signal }) =>
            new Promise<number>((resolve) => {
              attempt++;
              const timer = setTimeout(() => resolve(attempt), attempt === 1 ? 200 : 1);
              signal?.addEventListener('abort', () => clearTimeout(timer));
            }),
        );
      }
      expect(await points(M.hedgeAttempts)).toEqual([
        { attributes: { 'holdfast.policy.name': 'reads', 'holdfast.hedge.trigger': 'delay' }, value: 3 },
      ]);
      expect(h.snapshot().hedges).toBe(3);

      const cached = fallback({ value: 'cached', onResult: (r) => r === 'bad', bus, name: 'prices' });
      for (let i = 0; i < 2; i++) await cached.execute(() => Promise.reject(new Error('down')));
      await cached.execute(() => 'bad');
      expect(await points(M.fallbacks)).toEqual([
        {
          attributes: {
            'holdfast.policy.name': 'prices',
            'holdfast.fallback.reason': 'failure',
            'error.type': 'Error',
          },
          value: 2,
        },
        { attributes: { 'holdfast.policy.name': 'prices', 'holdfast.fallback.reason': 'result' }, value: 1 },
      ]);
    } finally {
      await close();
    }
  });

  it('two live bulkheads of one name (re-created before the old one was disposed): the newest is reported, not their sum', async () => {
    const { bus, policies, points, close } = collectPoints();
    try {
      const old = bulkhead({ maxConcurrent: 10, bus, policies, name: 'pool' });
      const made = bulkhead({ maxConcurrent: 4, bus, policies, name: 'pool' });
      const held = gate();
      const running = made.execute(() => held.opened);
      expect(await points(M.bulkheadCapacity)).toEqual([{ attributes: { 'holdfast.policy.name': 'pool' }, value: 4 }]);
      expect(await points(M.bulkheadRunning)).toEqual([{ attributes: { 'holdfast.policy.name': 'pool' }, value: 1 }]);
      held.open();
      await running;
      old.dispose();
    } finally {
      await close();
    }
  });

  it('reports the limit of a limiter nobody registered from its concurrency.limit events', async () => {
    const { bus, points, close } = collectPoints();
    try {
      const adaptive = adaptiveConcurrency({
        algorithm: 'aimd',
        initialLimit: 4,
        window: { minTime: 0, minSamples: 1 },
        bus,
        policies: false,
        name: 'unlisted',
      });
      // Failures are drops: AIMD backs the limit off (4 -> 3.6 -> 3.24 -> 2.9...).
      for (let i = 0; i < 5; i++) await adaptive.execute(() => Promise.reject(new Error('overloaded'))).catch(() => {});
      const limit = adaptive.snapshot().limit;
      expect(limit).toBeLessThan(4);
      expect(await points(M.concurrencyLimit)).toEqual([
        { attributes: { 'holdfast.policy.name': 'unlisted' }, value: limit },
      ]);
    } finally {
      await close();
    }
  });
});

describe('instrument(): a Redis rate limiter that cannot reach Redis', () => {
  it('counts its store errors, failing open, with the error type', async () => {
    // A loopback port nobody listens on: every connection is refused.
    const probe = createServer().listen(0, '127.0.0.1');
    await new Promise((resolve) => probe.once('listening', resolve));
    const port = (probe.address() as { port: number }).port;
    await new Promise((resolve) => probe.close(resolve));
    const client = new Redis(port, '127.0.0.1', {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      retryStrategy: () => null,
    });
    client.on('error', () => {}); // refused connections are the point here
    const { bus, policies, points, close } = collectPoints();
    const limiter = redisRateLimiter({
      client,
      limit: 5,
      interval: 1000,
      onRedisError: 'open',
      commandTimeout: 200,
      bus,
      policies,
      name: 'shared-api',
    });
    try {
      for (let i = 0; i < 3; i++) expect(await limiter.execute(() => 'through')).toBe('through');
      const [p] = await points(M.rateLimitStoreErrors);
      expect(p?.value).toBe(3);
      expect(p?.attributes).toMatchObject({
        'holdfast.policy.name': 'shared-api',
        'holdfast.rate_limit.fail_open': true,
      });
      expect(typeof p?.attributes['error.type']).toBe('string');
      expect(await points(M.limitRejections)).toEqual([]);
    } finally {
      limiter.dispose();
      client.disconnect();
      await close();
    }
  });
});
