import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis } from '../../../test/support/redis.js';
import { ipKey, tokenBucket } from '../src/index.js';
import { redisRateLimiter } from '../src/redis.js';
import { closeServers, serve } from './serve.js';

/**
 * The middleware as a hostile client sees it: keys it writes itself, huge headers, many clients on
 * one key at once, and the store going away under a request.
 */

afterEach(closeServers);

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}/x`, { headers });
  const body = await res.text();
  return { status: res.status, headers: Object.fromEntries(res.headers), body };
}

const minute = (limit: number) => tokenBucket({ limit, interval: 60_000, policies: false });

describe.each(['express', 'fastify'] as const)('%s: a hostile client', (kind) => {
  it('cannot name a new key with X-Forwarded-For or Forwarded when the proxy is not trusted', async () => {
    const url = await serve(kind, { policy: minute(3), key: (req) => ipKey(req.ip) });
    const statuses = [];
    for (let i = 0; i < 6; i++) {
      statuses.push(
        (
          await get(url, {
            'x-forwarded-for': `198.51.100.${i}`,
            forwarded: `for=198.51.100.${i}`,
            'x-real-ip': `1.2.3.${i}`,
          })
        ).status,
      );
    }
    expect(statuses).toEqual([200, 200, 200, 429, 429, 429]);
  });

  it('huge key headers: each counted (as a digest), never echoed, and a huge cost is a 500', async () => {
    const url = await serve(kind, {
      policy: minute(1),
      key: (req) => req.headers['x-user'] as string,
      cost: (req) => Number(req.headers['x-cost'] ?? 1),
    });
    const huge = 'u'.repeat(12_000);
    const first = await get(url, { 'x-user': huge });
    const again = await get(url, { 'x-user': huge });
    // One character off: another key, not the same digest.
    const other = await get(url, { 'x-user': `${huge.slice(1)}v` });
    expect([first.status, again.status, other.status]).toEqual([200, 429, 200]);
    for (const r of [first, again, other]) expect(JSON.stringify(r)).not.toContain('uuuuuuuuuu');
    expect((await get(url, { 'x-user': 'c', 'x-cost': '9'.repeat(8_000) })).status).toBe(500);
  });

  it('many clients on one key at once: exactly the limit goes through', async () => {
    const url = await serve(kind, { policy: minute(5), key: () => 'shared' });
    const answers = await Promise.all(Array.from({ length: 40 }, () => get(url)));
    expect(answers.filter((a) => a.status === 200)).toHaveLength(5);
    expect(answers.filter((a) => a.status === 429)).toHaveLength(35);
  });
});

describe.skipIf(!redisAvailable())('a Redis store that stops answering under a request', () => {
  let server: RedisServer;
  let client: Redis;
  beforeAll(async () => {
    [server] = (await startRedis(1)) as [RedisServer];
    client = new Redis({ port: server.port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
    client.on('error', () => {}); // refused while it is killed: the limiter reports that itself
    await client.ping();
  });
  afterAll(async () => {
    server?.resume();
    client?.disconnect();
    await server?.kill();
  });

  it.each(['express', 'fastify'] as const)(
    '%s: open lets it through with no RateLimit headers; closed answers 503 problem+json',
    async (kind) => {
      const make = (onRedisError: 'open' | 'closed') =>
        redisRateLimiter({
          client,
          limit: 2,
          interval: 60_000,
          prefix: `test:hostile:${randomUUID()}:`,
          commandTimeout: 200,
          onRedisError,
          policies: false,
        });
      const open = await serve(kind, { policy: make('open'), key: () => 'k' });
      const closed = await serve(kind, { policy: make('closed'), key: () => 'k' });
      expect((await get(open)).headers.ratelimit).toBe('"2-in-60s";r=1;t=30');
      expect((await get(closed)).status).toBe(200);
      server.pause();
      try {
        const [o, c] = await Promise.all([get(open), get(closed)]);
        expect([o.status, o.headers.ratelimit, o.headers['ratelimit-policy']]).toEqual([200, undefined, undefined]);
        expect(c.status).toBe(503);
        expect(c.headers['content-type']).toMatch(/^application\/problem\+json/);
        expect(JSON.parse(c.body)).toMatchObject({ code: 'E_STORE_UNAVAILABLE', status: 503 });
        expect(c.headers['retry-after']).toMatch(/^\d+$/);
        expect(c.headers.ratelimit).toBeUndefined();
      } finally {
        server.resume();
      }
      // Back: the count went on where it was (the decision a frozen Redis ran late gave back what it took).
      expect((await get(closed)).headers.ratelimit).toMatch(/^"2-in-60s";r=0;t=\d+$/);
      // Killed under requests: none hangs; open lets them through, closed answers 503.
      await server.kill();
      const during = await Promise.all([get(open), get(closed), get(open), get(closed)]);
      expect(during.map((a) => a.status)).toEqual([200, 503, 200, 503]);
      await server.restart();
      await client.ping();
    },
    20_000,
  );
});
