import { once } from 'node:events';
import { type AddressInfo, createServer } from 'node:net';
import { Redis, type RedisOptions } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis } from '../../../test/support/redis.js';
import { redisStore } from '../src/index.js';

// Redis frozen (SIGSTOP) from the start: its kernel still accepts the TCP connection, so the
// client sits in status "connect" (its handshake, CLIENT SETINFO and INFO, never answered); or
// Redis never started (ECONNREFUSED, a reconnect loop). A step waits for `ready` within its
// commandTimeout. These lock what happens when the client ends meanwhile (a shutdown's
// disconnect(), or ioredis giving up): the waiting step fails at once, so its timer (ref'd, a
// call's deadline) does not hold the process for the rest of commandTimeout after SIGINT.

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const clients = new Set<Redis>();
function client(port: number, options: RedisOptions = {}): Redis {
  // disconnectTimeout: how long ioredis waits for a frozen server to close the socket it ended.
  const c = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1, disconnectTimeout: 50, ...options });
  c.on('error', () => {});
  clients.add(c);
  return c;
}

// Not events.once: it rejects at the first 'error' (every refused reconnection attempt is one).
const ended = (c: Redis) => new Promise<void>((resolve) => (c.status === 'end' ? resolve() : c.once('end', () => resolve())));
const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (error: Error & { code?: string }) => ({ code: error.code, message: error.message }),
  );

describe.skipIf(!redisAvailable())('redisStore() with Redis frozen from the start, its client ended', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    [redis] = (await startRedis(1)) as [RedisServer];
    redis.pause();
  });
  afterAll(async () => {
    for (const c of clients) c.disconnect();
    redis?.resume();
    await redis?.stop();
  });

  it('a claim waiting for the handshake fails at once when the client is disconnected (a shutdown)', async () => {
    const c = client(redis.port);
    await once(c, 'connect'); // TCP is up; the handshake will never be answered
    const store = redisStore({ client: c, commandTimeout: 3_000 });
    const claim = failure(store.claim('k', 'fp', 60_000));
    c.disconnect();
    await ended(c);
    // Before the fix it waited out commandTimeout, a ref'd timer holding the process after SIGINT.
    expect(await claim).toEqual({
      code: 'E_STORE_UNAVAILABLE',
      message: 'redisStore: claim of key "k" failed: the Redis client ended (quit, disconnect, or ioredis gave up)',
    });
    expect(c.listenerCount('ready') + c.listenerCount('end')).toBe(0);
  });

  it('a claim waiting on a client that never connected fails at once when ioredis gives up', async () => {
    // Redis never started: one reconnection attempt, then retryStrategy gives up and the client ends.
    let attempts = 0;
    const c = client(await closedPort(), { retryStrategy: () => (++attempts <= 1 ? 100 : null) });
    const store = redisStore({ client: c, commandTimeout: 3_000 });
    const claims = [failure(store.claim('a', 'fp', 60_000)), failure(store.claim('b', 'fp', 60_000))];
    await ended(c);
    for (const claim of await Promise.all(claims)) {
      expect(claim?.code).toBe('E_STORE_UNAVAILABLE');
      expect(claim?.message).toContain('the Redis client ended');
    }
    // A step after that fails at once too (it did already).
    expect((await failure(store.claim('c', 'fp', 60_000)))?.message).toContain('the Redis client ended');
  });
});
