/**
 * A claim whose reply was lost with its connection (Redis ran it; the store gave up on it after
 * `commandTimeout`): the store's withdrawal of it must land, whatever the reconnection went
 * through, or the key is held for the claim's lease with nothing running.
 */
import { once } from 'node:events';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lossyProxy } from '../../../test/support/lost-reply.js';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from '../../../test/support/redis.js';
import { redisStore } from '../src/index.js';

describe.skipIf(!redisAvailable())('a claim whose reply was lost, its connection slow to come back', () => {
  let server: RedisServer;
  beforeAll(async () => {
    [server] = (await startRedis(1)) as [RedisServer];
  });
  afterAll(stopAllRedis);

  it('a first reconnection refused (ioredis then fails the commands it holds, the withdrawal among them): the claim is still withdrawn, the key not held for its lease', async () => {
    const lossy = await lossyProxy(server.port);
    // Another instance's client, straight to Redis: where the client's retry lands.
    const other = new Redis(server.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    const client = new Redis(lossy.proxy.port, '127.0.0.1', { retryStrategy: () => 150, maxRetriesPerRequest: 1 });
    client.on('error', () => {});
    other.on('error', () => {});
    try {
      const store = redisStore({ client, commandTimeout: 100, prefix: 'lost-claim:' });
      const otherStore = redisStore({ client: other, commandTimeout: 1_000, prefix: 'lost-claim:' });
      // Connected first: the store's 100 ms covers this test's lost reply, not a first connection
      // on a loaded machine (it ran past 100 ms at load 9 and the warm-up claim failed).
      if (client.status !== 'ready') await once(client, 'ready');
      await store.claim('warm', 'fp', 10_000); // the script is loaded: the next claim is one EVALSHA
      const lost = lossy.loseNextReply(undefined, 5_000);
      const claim = store.claim('k', 'fp', 10_000).catch((e: { code?: string }) => e.code);
      expect(await lost).toBe(true);
      await lossy.proxy.refuse(); // its first reconnection is refused: ioredis' second attempt
      expect(await claim).toBe('E_STORE_UNAVAILABLE'); // given up on; the request answers 503
      // The refused attempt failing: with maxRetriesPerRequest 1, ioredis fails what it holds.
      const refused = new Promise((resolve) => client.once('reconnecting', resolve));
      // Redis ran it: until its withdrawal lands, the key is in progress for everyone else (a 409,
      // documented). The window this test is about is how long that lasts.
      expect((await otherStore.claim('k', 'fp', 10_000)).status).toBe('inProgress');
      await refused;
      await lossy.proxy.accept();
      await new Promise((resolve) => client.once('ready', resolve));
      // The client's retry, on another instance, as a client retries a 409: the key comes free
      // once the claim is withdrawn, not held for the 10 s lease of a claim nobody runs.
      let retry = await otherStore.claim('k', 'fp', 10_000);
      for (let turn = 0; turn < 100 && retry.status === 'inProgress'; turn++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        retry = await otherStore.claim('k', 'fp', 10_000);
      }
      expect(retry.status).toBe('claimed');
    } finally {
      client.disconnect();
      other.disconnect();
      await lossy.close();
    }
  });
});
