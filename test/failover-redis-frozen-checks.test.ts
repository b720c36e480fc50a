import { once } from 'node:events';
import { redisRoles } from '@holdfast/failover/ioredis';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from './support/redis.js';

/**
 * Role checks of a server that stops answering with its connection open (frozen: SIGSTOP; or cut
 * off without a reset, where the socket stays open until TCP gives up, minutes later). Each check
 * ends at its deadline; what it sent stays on the client until the server answers or the
 * connection closes.
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

describe.skipIf(!redisAvailable())('redisRoles(): a server frozen with its connection open', () => {
  it('checks at each interval while it is frozen leave one INFO waiting on the client, not one a check', async () => {
    const [server] = (await startRedis(1)) as [RedisServer];
    const c = new Redis({ host: server.host, port: server.port, maxRetriesPerRequest: 0, enableOfflineQueue: false });
    c.on('error', () => {});
    clients.push(c);
    await once(c, 'ready');
    const waiting = () => (c as unknown as { commandQueue: { length: number } }).commandQueue.length;
    server.pause();
    try {
      // 20 intervals of a set's checks, each ended by its deadline, as the set ends it.
      for (let i = 0; i < 20; i++) {
        const signal = AbortSignal.timeout(20);
        const aborted = new Promise((r) => signal.addEventListener('abort', r));
        await Promise.race([check(c, signal).catch(() => {}), aborted]);
      }
      expect(waiting()).toBe(1);
    } finally {
      server.resume();
    }
    // Answered once it resumes: the next check finds its role.
    await expect(check(c, AbortSignal.timeout(5_000))).resolves.toMatchObject({ role: 'primary' });
    expect(waiting()).toBe(0);
  });
});
