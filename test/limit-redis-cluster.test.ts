/** The Redis rate limiter on a real Redis Cluster: user keys of any characters, limits kept per key. */
import { redisRateLimiter } from '@holdfast/limit/redis';
import { Cluster } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { type ClusterSetup, redisAvailable, startCluster, stopAllRedis } from './support/redis.js';

afterAll(() => stopAllRedis());

/** Runs `run` with a client of a fresh Redis Cluster, stopped after. */
async function onCluster(run: (client: Cluster) => Promise<void>): Promise<void> {
  const cluster: ClusterSetup = await startCluster();
  const client = new Cluster(cluster.addresses, { redisOptions: { maxRetriesPerRequest: 1 } });
  client.on('error', () => {});
  try {
    await client.ping();
    await run(client);
  } finally {
    client.disconnect();
    await cluster.stop();
  }
}

describe.skipIf(!redisAvailable())('redisRateLimiter on Redis Cluster', () => {
  it('keys with hash tags, braces, unicode, 10 kB or empty, and names with braces, each keep their own limit, without a CROSSSLOT', async () => {
    await onCluster(async (client) => {
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
    });
  }, 90_000);

  // A give-back is a script of three keys (the TAT, its marker, the give-back clock J beside the
  // TAT): all in the TAT's slot, or Cluster refuses it with CROSSSLOT, which the limiter cannot
  // tell its caller (a give-back is not awaited), and every give-back would silently give nothing.
  it('a give-back (a request the rest of the policy refused) gives its unit back, for keys with braces too', async () => {
    await onCluster(async (client) => {
      const rl = redisRateLimiter({ client, limit: 1, interval: 600_000, policies: false, prefix: 'gb:' });
      // The give-backs' markers so far, on every primary.
      const markers = async () => {
        let n = 0;
        for (const node of client.nodes('master')) n += ((await node.keys('gb:*:g:*')) as string[]).length;
        return n;
      };
      const keys = ['{a}', '}{', 'ü🙂', '', 'a'];
      for (const [i, key] of keys.entries()) {
        const undos: (() => void)[] = [];
        // How the middleware hears of the undo (src/http.ts).
        const hook = { [Symbol.for('holdfast.limit.taken')]: (undo: () => void) => undos.push(undo) };
        expect(await rl.execute(() => true, { key, ...hook } as never)).toBe(true);
        expect((await rl.take(key)).allowed, 'spent').toBe(false);
        undos[0]?.();
        // Not awaited by the limiter: the server's clock, then the give-back script.
        const until = Date.now() + 5_000;
        while (Date.now() < until && (await markers()) <= i) await new Promise((r) => setTimeout(r, 20));
        // The reply's TAT is rounded down to the ms: what is given back is short of the unit by under 1 ms.
        await new Promise((r) => setTimeout(r, 5));
        expect([(await rl.take(key)).allowed, (await rl.take(key)).allowed], `key ${JSON.stringify(key)}`).toEqual([
          true,
          false,
        ]);
      }
    });
  }, 90_000);
});
