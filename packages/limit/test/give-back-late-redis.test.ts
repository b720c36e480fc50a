import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from '../../../test/support/redis.js';
import { redisRateLimiter } from '../src/redis.js';

// Issue #17 on a real redis-server: limit 1 a second, burst 1. A allowed at 0 (its request then
// held, as a bulkhead's queue holds it), B allowed at 1 s, A given back at 1.5 s. Before, the
// give-back moved the TAT back a whole second (to 1 s, before now): the key went, and C was
// allowed at 1.5 s: B and C within 0.5 s, 2 calls in a limit of 1 a second.
describe.skipIf(!redisAvailable())('Redis: a give-back that comes late', () => {
  let server: RedisServer;
  let client: Redis;
  beforeAll(async () => {
    [server] = (await startRedis(1)) as [RedisServer];
    client = new Redis(server.port, server.host, { maxRetriesPerRequest: 1 });
    client.on('error', () => {});
  }, 30_000);
  afterAll(async () => {
    client.disconnect();
    await stopAllRedis();
  });

  it('gives back only what the clock had not yet absorbed: no second call within the interval of B', async () => {
    const rl = redisRateLimiter({ client, limit: 1, interval: 1_000, policies: false, prefix: 'late:' });
    const undos: (() => void)[] = [];
    const hook = { [Symbol.for('holdfast.limit.taken')]: (undo: () => void) => undos.push(undo) };
    await rl.execute(() => 'A', { key: 'k', ...hook } as never);
    let b = 0;
    while (!(await rl.take('k')).allowed) await new Promise((r) => setTimeout(r, 20));
    b = performance.now(); // B allowed (about 1 s after A)
    await new Promise((r) => setTimeout(r, 500));
    undos[0]?.(); // A's give-back, late
    await client.ping(); // (the give-back is not awaited: two round trips)
    await client.ping();
    const allowedWithin: number[] = [];
    while (performance.now() - b < 800) {
      if ((await rl.take('k')).allowed) allowedWithin.push(Math.round(performance.now() - b));
      await new Promise((r) => setTimeout(r, 20));
    }
    // Before: [5xx] (C allowed about 500 ms after B).
    expect(allowedWithin).toEqual([]);
  });

  it('a give-back before the clock absorbed the cell still gives it back whole', async () => {
    const rl = redisRateLimiter({ client, limit: 1, interval: 60_000, burst: 2, policies: false, prefix: 'early:' });
    const undos: (() => void)[] = [];
    const hook = { [Symbol.for('holdfast.limit.taken')]: (undo: () => void) => undos.push(undo) };
    await rl.execute(() => 'A', { key: 'k', ...hook } as never);
    expect((await rl.take('k')).allowed).toBe(true); // B: none left
    undos[0]?.();
    await client.ping();
    await client.ping();
    // A's TAT comes back in whole ms, rounded down: the give-back is short of a unit by under 1 ms.
    await new Promise((r) => setTimeout(r, 5));
    expect((await rl.take('k')).allowed).toBe(true); // A's unit, back (less the ms since A)
    expect((await rl.take('k')).allowed).toBe(false);
  });
});
