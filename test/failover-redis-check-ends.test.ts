import { once } from 'node:events';
import { redisRoles } from '@holdfast/failover/ioredis';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from './support/redis.js';

/**
 * Role checks waiting on a client whose server is frozen before its first connection is ready
 * (the kernel accepts the connection; the ready check is never answered), then the client is
 * closed: every check ends, no listener of theirs is left on the client, and two sets' checks
 * of different deadlines on one client end each at its own.
 */
const clients: Redis[] = [];
afterAll(async () => {
  for (const c of clients.splice(0)) c.disconnect();
  await stopAllRedis();
});

const check = (target: Redis, signal: AbortSignal) =>
  (redisRoles<Redis>().check as (endpoint: { name: string; target: Redis }, signal: AbortSignal) => Promise<unknown>)(
    { name: 'r', target },
    signal,
  );

describe.skipIf(!redisAvailable())('redisRoles(): a client closed while checks wait on it', () => {
  it('checks of two deadlines end each at its own; closing the client ends the rest and leaves no listener', async () => {
    const [server] = (await startRedis(1)) as [RedisServer];
    server.pause();
    const c = new Redis({ host: server.host, port: server.port, lazyConnect: true, maxRetriesPerRequest: 0 });
    c.on('error', () => {});
    clients.push(c);
    const connecting = c.connect().catch(() => {});
    // Listeners not ioredis' own (its connect() promise adds connectionReadyHandler and connectionCloseHandler).
    const ours = () =>
      ['ready', 'close', 'end'].map((e) => c.listeners(e).filter((f) => !/^connection/.test(f.name)).length);
    try {
      const short = Array.from({ length: 15 }, () => check(c, AbortSignal.timeout(50)).then(String, String));
      const long = new AbortController();
      const longChecks = Array.from({ length: 15 }, () => check(c, long.signal).then(String, (e: Error) => e.message));
      // The short ones end at their deadline, the long ones still wait.
      expect(await Promise.all(short)).toHaveLength(15);
      // 30 checks waited together: one shared listener each event, not 30.
      expect(ours()).toEqual([1, 1, 1]);
      const closed = once(c, 'end');
      c.disconnect();
      await closed;
      await connecting;
      const ends = await Promise.all(longChecks);
      expect(ends.every((m) => /closed|not connected/i.test(m))).toBe(true);
      expect(ours()).toEqual([0, 0, 0]);
    } finally {
      server.resume();
    }
  });
});
