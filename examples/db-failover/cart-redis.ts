import { failover } from '@holdfast/failover';
import { redisRoles } from '@holdfast/failover/ioredis';
import { Redis, type RedisOptions } from 'ioredis';

/**
 * One ioredis client per Redis server, master or replica: the set asks each its role (INFO
 * replication). Writes go to the master (a promoted replica outranks the master it left), reads
 * to replicas.
 */
export function cartRedis(servers: readonly { readonly name: string; readonly options: RedisOptions }[]) {
  const cache = failover({
    name: 'cart-redis',
    endpoints: servers.map((s) => {
      // No offline queue, no retries per request: a command on a lost connection fails at once.
      const client = new Redis({ ...s.options, maxRetriesPerRequest: 0, enableOfflineQueue: false });
      client.on('error', (error) => console.warn(`${s.name}: ${error.message}`));
      return { name: s.name, target: client };
    }),
    roles: redisRoles({ interval: 1_000, timeout: 500 }),
    timeout: 500,
    retry: { idempotent: true },
  });
  return {
    cache,
    addToCart: (cart: string, sku: string) => cache.execute((e) => e.target.hincrby(`cart:${cart}`, sku, 1)),
    readCart: (cart: string) => cache.execute((e) => e.target.hgetall(`cart:${cart}`), { intent: 'read' }),
    close: () => {
      cache.dispose();
      for (const e of cache.endpoints) e.target.disconnect();
    },
  };
}
