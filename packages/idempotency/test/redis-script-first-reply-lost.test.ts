import { once } from 'node:events';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lossyProxy } from '../../../test/support/lost-reply.js';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from '../../../test/support/redis.js';
import { redisStore } from '../src/index.js';

/**
 * A store's first use of its claim script on a node: one call finds out (EVALSHA, EVAL), the
 * others wait for it. Its reply is lost with its connection (ioredis reconnects and resends it).
 */
describe.skipIf(!redisAvailable())('the first script call of a store loses its reply', { timeout: 30_000 }, () => {
  let server: RedisServer;
  beforeAll(async () => {
    [server] = (await startRedis(1)) as [RedisServer];
  });
  afterAll(stopAllRedis);

  for (const freeze of [false, true]) {
    it(`50 claims behind it, ${freeze ? 'Redis frozen past commandTimeout' : 'the reply lost, the connection reset'}: every key is claimed once or free, none held by a claim nobody runs`, async () => {
      const lossy = await lossyProxy(server.port);
      const prefix = `first-lost-${freeze}:`;
      const client = new Redis(lossy.proxy.port, '127.0.0.1', { retryStrategy: () => 50 });
      const other = new Redis(server.port, '127.0.0.1');
      client.on('error', () => {});
      other.on('error', () => {});
      try {
        if (client.status !== 'ready') await once(client, 'ready');
        await other.script('FLUSH');
        const store = redisStore({ client, commandTimeout: 300, prefix });
        const otherStore = redisStore({ client: other, commandTimeout: 2_000, prefix });
        const lost = freeze ? undefined : lossy.loseNextReply(undefined, 5_000);
        const first = store.claim('k0', 'fp', 60_000).then(
          (r) => r.status,
          (e: { code?: string }) => e.code,
        );
        if (freeze) server.pause();
        const rest = Array.from({ length: 49 }, (_, n) =>
          store.claim(`k${n + 1}`, 'fp', 60_000).then(
            (r) => r.status,
            (e: { code?: string }) => e.code,
          ),
        );
        if (lost) expect(await lost).toBe(true);
        if (freeze) {
          await new Promise((resolve) => setTimeout(resolve, 600));
          server.resume();
        }
        const answers = await Promise.all([first, ...rest]);
        expect(answers.every((a) => a === 'claimed' || a === 'E_STORE_UNAVAILABLE')).toBe(true);
        // Another instance, as a client's retry: a key this one claimed is in progress; a key whose
        // claim failed comes free (withdrawn) well before its 60 s lease.
        const deadline = Date.now() + 5_000;
        const seen: string[] = [];
        for (const [n, answer] of answers.entries()) {
          let status = (await otherStore.claim(`k${n}`, 'fp', 60_000)).status;
          while (answer !== 'claimed' && status === 'inProgress' && Date.now() < deadline) {
            await new Promise((resolve) => setTimeout(resolve, 20));
            status = (await otherStore.claim(`k${n}`, 'fp', 60_000)).status;
          }
          seen.push(`${answer}->${status}`);
        }
        const wrong = seen.filter((s) => s !== 'claimed->inProgress' && s !== 'E_STORE_UNAVAILABLE->claimed');
        expect(wrong).toEqual([]);
      } finally {
        server.resume();
        client.disconnect();
        other.disconnect();
        await lossy.close();
      }
    });
  }
});
