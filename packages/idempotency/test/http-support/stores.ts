import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe } from 'vitest';
import { type RedisServer, redisAvailable, startRedis } from '../../../../test/support/redis.js';
import { memoryStore, redisStore } from '../../src/index.js';
import type { StoreFactory } from './conformance.js';

export const memoryStores: StoreFactory = { name: 'memoryStore', make: () => memoryStore() };

/**
 * A redis-server of the calling `describe`'s own, started before its tests and stopped after
 * them, and `connect()` for clients of it (errors ignored: tests stop Redis on purpose),
 * disconnected after them. Call inside a `describe`.
 */
export function useRedisServer(): { connect(): Redis; readonly clients: readonly Redis[] } {
  let server: RedisServer;
  const clients: Redis[] = [];
  beforeAll(async () => {
    [server] = (await startRedis(1)) as [RedisServer];
  });
  afterAll(async () => {
    for (const client of clients) client.disconnect();
    await server?.stop();
  });
  return {
    clients,
    connect() {
      const client = new Redis(server.url, { maxRetriesPerRequest: 1 });
      client.on('error', () => {}); // a test stops Redis on purpose: the store reports it, ioredis need not
      clients.push(client);
      return client;
    },
  };
}

/** Runs `suite` against a redisStore on a redis-server of its own; skipped without the binary. */
export function redisStores(suite: (stores: StoreFactory) => void): void {
  describe.skipIf(!redisAvailable())('on Redis', () => {
    const redis = useRedisServer();
    suite({ name: 'redisStore', make: () => redisStore({ client: redis.connect() }) });
  });
}
