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
  // Decisions carry no resend marker by default (each marker costs Redis about a quarter of a
  // decision): a lost reply then counts twice, stricter, never looser. `resendWindow` opts in to
  // counting it once.
  it.each([
    ['resendWindow 10 s (opt-in): counted once, exactly the limit passes', 10_000],
    ['the default: counted twice, half the limit passes, never more', undefined],
  ])(
    'each decision whose reply was lost, %s; the server agrees',
    async (_name, resendWindow) => {
      const [server] = (await startRedis(1)) as [RedisServer];
      const lossy = await lossyProxy(server.port);
      const client = new Redis(lossy.proxy.port, '127.0.0.1', { retryStrategy: () => 20 });
      client.on('error', () => {});
      const direct = new Redis(server.port, '127.0.0.1');
      try {
        await client.ping();
        const LIMIT = 6;
        // A long commandTimeout: the resend after the reconnect answers, not the timer.
        const rl = redisRateLimiter({
          client,
          limit: LIMIT,
          interval: 600_000,
          commandTimeout: 5_000,
          resendWindow,
          policies: false,
        });
        await rl.take('warm-up'); // loads the script
        const decisions = [];
        for (let i = 0; i < LIMIT + 2; i++) {
          const lost = lossy.loseNextReply(undefined, 3_000);
          decisions.push(await rl.take('k'));
          expect(await lost).toBe(true);
        }
        expect(lossy.lost()).toBe(LIMIT + 2);
        // Counted once, exactly LIMIT; counted twice, half of it.
        const passed = resendWindow ? LIMIT : LIMIT / 2;
        expect(decisions.map((d) => d.allowed)).toEqual([
          ...Array(passed).fill(true),
          ...Array(LIMIT + 2 - passed).fill(false),
        ]);
        expect(rl.snapshot()).toMatchObject({ allowed: passed + 1, rejected: LIMIT + 2 - passed, storeErrors: 0 });
        // Another instance, straight to the server, finds the limit spent, no more and no less.
        const other = redisRateLimiter({ client: direct, limit: LIMIT, interval: 600_000, policies: false });
        expect((await other.take('k')).allowed).toBe(false);
        // A marker per allowed decision (the warm-up's too) when opted in; none by default.
        expect(await direct.keys('holdfast:rl:*:r:*')).toHaveLength(resendWindow ? LIMIT + 1 : 0);
      } finally {
        client.disconnect();
        direct.disconnect();
        await lossy.close();
      }
    },
    60_000,
  );
});
