import { createRequire } from 'node:module';
import { idempotent, memoryStore, type RedisClient, redisStore } from '@holdfast/idempotency';
import { redisAvailable, startRedis, stopAllRedis } from '../test/support/redis.js';
import { compare } from './harness.js';

const op = (n: number) => Promise.resolve({ ok: true, n });

async function memory(): Promise<void> {
  // Two stores: the fresh keys would otherwise evict the replayed one (maxEntries 10,000).
  const store = memoryStore();
  const freshStore = memoryStore();
  let fresh = 0;
  const replayed = idempotent(op, { store, key: () => 'same-key' });
  const once = idempotent(op, { store: freshStore, key: (n) => `key-${n}` });
  await replayed(1);
  await compare({
    title: 'idempotent() on memoryStore(): overhead per call',
    baseline: 'bare call',
    variants: [
      { name: 'bare call', call: () => op(1) },
      { name: 'first run of a new key (claim, run, complete)', call: () => once(++fresh) },
      { name: 'replay of a completed key', call: () => replayed(1) },
    ],
  });
  store.dispose();
  freshStore.dispose();
}

async function redis(): Promise<void> {
  if (!redisAvailable()) return;
  const require = createRequire(import.meta.url);
  type Client = RedisClient & {
    get(key: string): Promise<string | null>;
    set(key: string, value: string): Promise<unknown>;
    disconnect(): void;
  };
  const { Redis } = require('ioredis') as { Redis: new (port: number, host: string) => Client };
  const [server] = await startRedis(1);
  if (!server) throw new Error('no redis-server');
  const client = new Redis(server.port, server.host);
  try {
    const store = redisStore({ client, prefix: 'bench:' });
    let fresh = 0;
    const replayed = idempotent(op, { store, key: () => 'same-key' });
    const once = idempotent(op, { store, key: (n) => `key-${n}`, ttlMs: 60_000 });
    await replayed(1);
    await once(0);
    await client.set('plain', 'x');
    await compare({
      title: 'idempotent() on redisStore() (local redis-server, one connection, calls in sequence)',
      baseline: 'GET (one round trip)',
      calls: 200,
      variants: [
        { name: 'GET (one round trip)', call: () => client.get('plain') },
        { name: 'first run of a new key (2 round trips)', call: () => once(++fresh) },
        { name: 'replay of a completed key (1 round trip)', call: () => replayed(1) },
      ],
    });
  } finally {
    client.disconnect();
    await stopAllRedis();
  }
}

export async function benchIdempotency(): Promise<void> {
  await memory();
  await redis();
}
