// Orders on PostgreSQL, carts on Redis, each over a primary and a replica.
// PG_SERVERS=postgres://db-1/app,postgres://db-2/app REDIS_SERVERS=redis://r-1:6379,redis://r-2:6379 pnpm start
import { bus } from '@holdfast/core';
import { cartRedis } from './cart-redis.js';
import { ordersDb } from './orders-db.js';

const list = (name: string) => (process.env[name] ?? '').split(',').filter((s) => s !== '');
bus.on('failover.role', (e) => console.log(`${e.source}: ${e.endpoint} is ${e.role} (was ${e.previous})`));
bus.on('failover.fence', (e) => console.log(`${e.source}: ${e.endpoint} FENCED, primary is ${e.primary}`));

const pgServers = list('PG_SERVERS');
if (pgServers.length > 0) {
  const orders = ordersDb({
    servers: pgServers.map((url, i) => ({ name: `db-${i + 1}`, connection: { connectionString: url } })),
  });
  await orders.createSchema();
  await orders.placeOrder(`order-${Date.now()}`, 4200);
  console.log(`orders: ${await afterReplication(() => orders.countOrders())}`, orders.db.snapshot().primary);
  await orders.close();
}
const redisServers = list('REDIS_SERVERS');
if (redisServers.length > 0) {
  const carts = cartRedis(redisServers.map((url, i) => ({ name: `redis-${i + 1}`, options: redisOptions(url) })));
  await carts.addToCart('42', 'kettle');
  console.log('cart 42:', await carts.readCart('42'));
  carts.close();
}
if (pgServers.length + redisServers.length === 0)
  console.log('Set PG_SERVERS and/or REDIS_SERVERS (comma-separated URLs).');

/**
 * A read from a replica, retried while the table just created has not reached it (replication
 * takes milliseconds; `relation does not exist` meanwhile), for up to 5 s.
 */
async function afterReplication<T>(read: () => Promise<T>): Promise<T> {
  for (const started = Date.now(); ; ) {
    try {
      return await read();
    } catch (error) {
      if ((error as { code?: string }).code !== '42P01' || Date.now() - started > 5_000) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

function redisOptions(url: string) {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port || 6379) };
}
