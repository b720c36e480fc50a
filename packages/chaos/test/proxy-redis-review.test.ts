/**
 * Review against a real redis-server through the fault proxy: two clients at once with large and
 * tiny values while toxics go on and off under them, and the server frozen (SIGSTOP) mid-reply.
 */
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from '../../../test/support/redis.js';
import type { Toxic } from '../src/index.js';
import { proxies, proxyTo, tick } from './support/review.js';

const clients: Redis[] = [];
afterAll(() => {
  for (const c of clients) c.disconnect();
});

function redisThrough(port: number, commandTimeout = 10_000): Redis {
  const c = new Redis(port, '127.0.0.1', {
    commandTimeout,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    autoResendUnfulfilledCommands: false,
    enableOfflineQueue: false,
    lazyConnect: true,
  });
  c.on('error', () => {});
  clients.push(c);
  return c;
}

const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');
function value(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i * 131 + seed * 7 + (i >> 10)) & 0xff;
  return b;
}

describe.skipIf(!redisAvailable())('faultProxy review: redis-server through the proxy', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    [redis] = (await startRedis(1)) as [RedisServer];
  });
  afterAll(async () => {
    await stopAllRedis();
  });

  it('two clients at once, 3 MB and 1-byte values, toxics flipped under open connections: every value back intact', async () => {
    const p = await proxyTo(redis.port);
    const a = redisThrough(p.port);
    const b = redisThrough(p.port);
    await Promise.all([a.connect(), b.connect()]);
    let flipping = true;
    const flipper = (async () => {
      const toxics: Toxic[] = [
        { type: 'latency', latency: 3, jitter: 3, direction: 'both' },
        { type: 'slicer', size: 777, delay: 0, direction: 'both' },
        { type: 'bandwidth', rate: 50_000_000 },
        { type: 'blackhole' },
      ];
      for (let i = 0; flipping; i++) {
        const h = p.add({ ...(toxics[i % toxics.length] as Toxic), name: `flip-${i % 2}` });
        await tick(7);
        h.remove();
      }
    })();
    const work = async (c: Redis, who: number) => {
      const sums: [string, string][] = [];
      for (let i = 0; i < 6; i++) {
        const v = value(i % 2 === 0 ? 3_000_000 : 1, who * 100 + i);
        await c.set(`review:${who}:${i}`, v);
        const back = await c.getBuffer(`review:${who}:${i}`);
        sums.push([md5(v), back === null ? 'null' : md5(back)]);
      }
      return sums;
    };
    const [sa, sb] = await Promise.all([work(a, 1), work(b, 2)]);
    flipping = false;
    await flipper;
    for (const [want, got] of [...sa, ...sb]) expect(got).toBe(want);
    expect(p.snapshot().connections).toBe(2);
  }, 60_000);

  it('redis frozen (SIGSTOP) mid-reply of 8 MB: the client times out, close() ends it all, nothing left', async () => {
    const p = await proxyTo(redis.port);
    const seed = redisThrough(redis.port);
    await seed.connect();
    await seed.set('review:big', value(8_000_000, 9));
    const c = redisThrough(p.port, 400);
    await c.connect();
    // A slow reader: the proxy holds part of the reply when the server stops.
    p.add({ type: 'bandwidth', rate: 2_000_000 });
    const pending = c.getBuffer('review:big').then(
      () => 'answered',
      (e: Error) => e.message,
    );
    await tick(100);
    redis.pause();
    try {
      p.add({ type: 'latency', latency: 50 });
      expect(await pending).toMatch(/timed out/i);
      expect(p.connections().length).toBe(1);
      await p.close();
      expect(p.connections()).toEqual([]);
      proxies.splice(proxies.indexOf(p), 1);
    } finally {
      redis.resume();
    }
    // The server is fine once thawed, and a fresh proxy works.
    const q = await proxyTo(redis.port);
    const d = redisThrough(q.port);
    await d.connect();
    expect(md5((await d.getBuffer('review:big')) as Buffer)).toBe(md5(value(8_000_000, 9)));
    seed.disconnect();
  }, 60_000);
});
