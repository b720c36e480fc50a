import { pipeline } from '@holdfast/core';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from '../../../test/support/redis.js';
import { tokenBucket } from '../src/index.js';
import { redisRateLimiter } from '../src/redis.js';
import { closeServers, serve } from './serve.js';

// As the local limits (header-give-back-review.test.ts): a Redis limit of 1 an hour that gave back
// its unit when a later limit (back in 10 s) refused the request said remaining 0, reset in an
// hour, on that 429: a client waited an hour for a limit that was whole.
describe.skipIf(!redisAvailable())('Redis: headers after a give-back', () => {
  let server: RedisServer;
  let client: Redis;
  beforeAll(async () => {
    [server] = (await startRedis(1)) as [RedisServer];
    client = new Redis(server.port, server.host, { maxRetriesPerRequest: 1 });
    client.on('error', () => {});
  }, 30_000);
  afterAll(async () => {
    await closeServers();
    client.disconnect();
    await stopAllRedis();
  });

  it.each(['express', 'fastify'] as const)('%s: shown as the key holds it after the give-back', async (kind) => {
    const hourly = redisRateLimiter({ client, limit: 1, interval: 3_600_000, policies: false, prefix: `gb:${kind}:` });
    const spent = tokenBucket({ limit: 2, interval: 10_000, policies: false });
    spent.take('k', 2);
    const url = await serve(kind, { policy: pipeline(hourly, spent), key: () => 'k', standardHeaders: 'draft-8' });
    const res = await fetch(`${url}/x`);
    await res.text();
    expect(res.status).toBe(429);
    expect(res.headers.get('ratelimit')).toBe('"1-in-3600s";r=1;t=0, "2-in-10s";r=0;t=10');
    // And it is so: the hourly unit is there (the give-back reached Redis).
    await expect.poll(async () => (await hourly.take('k')).allowed).toBe(true);
  });
});
