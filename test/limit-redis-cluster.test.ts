/** The Redis rate limiter on a real Redis Cluster: user keys of any characters, limits kept per key. */
import { redisRateLimiter } from '@holdfast/limit/redis';
import { Cluster } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { type ClusterSetup, redisAvailable, startCluster, stopAllRedis } from './support/redis.js';

afterAll(() => stopAllRedis());

describe.skipIf(!redisAvailable())('redisRateLimiter on Redis Cluster', () => {
  it('keys with hash tags, braces, unicode, 10 kB or empty, and names with braces, each keep their own limit, without a CROSSSLOT', async () => {
    const cluster: ClusterSetup = await startCluster();
    const client = new Cluster(cluster.addresses, { redisOptions: { maxRetriesPerRequest: 1 } });
    client.on('error', () => {});
    try {
      await client.ping();
      const keys = ['{a}', '{a}b', '}{', 'x{}y', '{{z}}', 'ü🙂', 'k'.repeat(10_000), '', '\u0000\r\n', 'a'];
      // The default prefix holds the limiter's name: braces in it must not open a hash tag.
      for (const name of ['redisRateLimiter', 'x{}y', '{a} b']) {
        const rl = redisRateLimiter({
          client,
          name,
          limit: 2,
          interval: 600_000,
          onRedisError: 'closed',
          policies: false,
        });
        for (const key of keys) {
          const got = [await rl.take(key), await rl.take(key), await rl.take(key)].map((d) => d.allowed);
          expect({ name, key: key.slice(0, 20), got }).toEqual({
            name,
            key: key.slice(0, 20),
            got: [true, true, false],
          });
        }
        expect(rl.snapshot()).toMatchObject({ allowed: 2 * keys.length, rejected: keys.length, storeErrors: 0 });
      }
    } finally {
      client.disconnect();
      await cluster.stop();
    }
  }, 90_000);
});
