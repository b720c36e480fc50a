import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { redisAvailable } from '../../../test/support/redis.js';
import { idempotency } from '../src/express.js';
import { idempotent, memoryStore, redisStore } from '../src/index.js';
import { useRedisServer } from './redis.js';

// ttlMs is how long Redis (or the memory store) keeps a result: a TTL, never a timer. A 30-day
// replay window was refused as if it were a timer ("a longer timer fires at once").
const DAY = 86_400_000;

describe.skipIf(!redisAvailable())('ttlMs longer than a Node timer can wait', () => {
  const redis = useRedisServer();

  it('keeps a result for 30 days in Redis, and replays it', async () => {
    const prefix = `ttl30:${randomUUID()}:`;
    let runs = 0;
    const charge = idempotent(async (_order: { id: string }) => ++runs, {
      store: redisStore({ client: redis.client, prefix }),
      key: (order) => order.id,
      ttlMs: 30 * DAY,
    });
    expect([await charge({ id: 'o-1' }), await charge({ id: 'o-1' }), runs]).toEqual([1, 1, 1]);
    const [key] = await redis.client.keys(`${prefix}*`);
    const ttl = await redis.client.pttl(key as string);
    expect(ttl).toBeGreaterThan(29 * DAY);
    expect(ttl).toBeLessThanOrEqual(30 * DAY);
  });

  it('keeps a result for 30 days in memory, and replays it', async () => {
    let runs = 0;
    const store = memoryStore();
    const charge = idempotent(async (_order: { id: string }) => ++runs, { store, key: (o) => o.id, ttlMs: 30 * DAY });
    expect([await charge({ id: 'o-1' }), await charge({ id: 'o-1' }), runs]).toEqual([1, 1, 1]);
    store.dispose();
  });

  it('takes a 30-day ttlMs in the HTTP middleware', () => {
    const store = memoryStore();
    expect(() => idempotency({ store, scope: 'global', ttlMs: 30 * DAY })).not.toThrow();
    store.dispose();
  });

  it('still refuses a ttlMs Redis cannot keep, naming it', () => {
    const store = memoryStore();
    expect(() => idempotent(async () => 1, { store, key: () => 'k', ttlMs: 1e16 })).toThrow(/ttlMs/);
    expect(() => idempotent(async () => 1, { store, key: () => 'k', ttlMs: Number.POSITIVE_INFINITY })).toThrow(
      /ttlMs/,
    );
    store.dispose();
  });
});
