/**
 * The Redis rate limiter through a real lost reply: a fault proxy swallows the script's reply and
 * resets the connection, ioredis reconnects and resends the command, as in production.
 */
import { redisRateLimiter } from '@holdfast/limit/redis';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { lossyProxy } from './support/lost-reply.js';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from './support/redis.js';

afterAll(() => stopAllRedis());

describe.skipIf(!redisAvailable())('redisRateLimiter: replies lost on the wire, resent by ioredis', () => {
  it('each decision whose reply was lost is counted once: exactly the limit passes, and the server agrees', async () => {
    const [server] = (await startRedis(1)) as [RedisServer];
    const lossy = await lossyProxy(server.port);
    const client = new Redis(lossy.proxy.port, '127.0.0.1', { retryStrategy: () => 20 });
    client.on('error', () => {});
    const direct = new Redis(server.port, '127.0.0.1');
    try {
      await client.ping();
      const LIMIT = 6;
      // A long commandTimeout: the resend after the reconnect answers, not the timer.
      const rl = redisRateLimiter({ client, limit: LIMIT, interval: 600_000, commandTimeout: 5_000, policies: false });
      await rl.take('warm-up'); // loads the script
      const decisions = [];
      for (let i = 0; i < LIMIT + 2; i++) {
        const lost = lossy.loseNextReply(undefined, 3_000);
        decisions.push(await rl.take('k'));
        expect(await lost).toBe(true);
      }
      expect(lossy.lost()).toBe(LIMIT + 2);
      // Counted twice, half the limit would have passed; counted once, exactly LIMIT.
      expect(decisions.map((d) => d.allowed)).toEqual([...Array(LIMIT).fill(true), false, false]);
      expect(rl.snapshot()).toMatchObject({ allowed: LIMIT + 1, rejected: 2, storeErrors: 0 });
      // Another instance, straight to the server, finds the limit spent, no more and no less.
      const other = redisRateLimiter({ client: direct, limit: LIMIT, interval: 600_000, policies: false });
      expect((await other.take('k')).allowed).toBe(false);
      expect(await direct.keys('holdfast:rl:*:r:*')).toHaveLength(LIMIT + 1);
    } finally {
      client.disconnect();
      direct.disconnect();
      await lossy.close();
    }
  }, 60_000);
});
