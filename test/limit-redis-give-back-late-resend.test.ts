/**
 * A give-back whose reply is lost on the wire is resent by ioredis once the connection is ready
 * again, however long that takes: its commands wait for it across reconnects (a frozen server, a
 * partition that times connects out, `maxRetriesPerRequest: null`). Its marker is kept 10 s: a
 * resend after that must not give back a second time.
 */
import type { AddressInfo } from 'node:net';
import { pipeline } from '@holdfast/core';
import { tokenBucket } from '@holdfast/limit';
import { loadShedding } from '@holdfast/limit/express';
import { type RedisClient, redisRateLimiter } from '@holdfast/limit/redis';
import express from 'express';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { lossyProxy } from './support/lost-reply.js';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from './support/redis.js';

afterAll(() => stopAllRedis());

describe.skipIf(!redisAvailable())('redisRateLimiter: a give-back resent after its marker expired', () => {
  it('a give-back whose reply was lost and which ioredis resends 11 s later (the server frozen meanwhile) gives back once, not twice', async () => {
    const [server] = (await startRedis(1)) as [RedisServer];
    const lossy = await lossyProxy(server.port);
    const client = new Redis(lossy.proxy.port, '127.0.0.1', { retryStrategy: () => 50 });
    client.on('error', () => {});
    const direct = new Redis(server.port, '127.0.0.1');
    const listening = express();
    let http: ReturnType<typeof listening.listen> | undefined;
    try {
      await client.ping();
      const prefix = 'late-give-back:';
      const mine = redisRateLimiter({ client: direct, limit: 10, interval: 600_000, policies: false, prefix });
      for (let i = 0; i < 3; i++) expect((await mine.take('k')).allowed).toBe(true); // 7 left
      // The limiter's own client, through the proxy: the give-back's reply (its script names a
      // `:g:` marker) is the one the wire loses; ioredis does the rest.
      let lost: Promise<boolean> | undefined;
      const wire: RedisClient = {
        get status() {
          return client.status;
        },
        call(command, ...args) {
          if (command === 'eval' && args.some((a) => String(a).includes(':g:'))) lost = lossy.loseNextReply();
          return client.call(command, ...args);
        },
        once: (event, listener) => client.once(event, listener),
        removeListener: (event, listener) => client.removeListener(event, listener),
      };
      const shared = redisRateLimiter({ client: wire, limit: 10, interval: 600_000, policies: false, prefix });
      const total = tokenBucket({ limit: 1, interval: 60_000, key: () => 'all', policies: false });
      total.take();
      listening.use(loadShedding({ policy: pipeline(shared, total), key: () => 'k' }));
      listening.get('/x', (_req, res) => void res.send('ok'));
      http = listening.listen(0, '127.0.0.1');
      await new Promise((r) => http?.once('listening', r));
      const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/x`;
      // Took 1 (6 left), the total refused the request: given back (7 left), its reply lost.
      expect((await fetch(url)).status).toBe(429);
      await expect.poll(() => lost !== undefined, { timeout: 5_000 }).toBe(true);
      expect(await lost).toBe(true);
      // Frozen past the marker's 10 s: ioredis connects again but is not ready until it thaws.
      server.pause();
      await new Promise((r) => setTimeout(r, 11_000));
      server.resume();
      await expect.poll(() => client.status, { timeout: 5_000 }).toBe('ready');
      // The resend has had its answer once a PING behind it on the same connection has.
      await client.ping();
      // 7 left before the request, 6 after this take; given back twice, 7 (more than the limit).
      expect((await mine.take('k')).remaining).toBe(6);
    } finally {
      client.disconnect();
      direct.disconnect();
      await lossy.close();
      await new Promise((r) => (http ? http.close(r) : r(undefined)));
    }
  }, 40_000);
});
