import { once } from 'node:events';
import { createServer } from 'node:net';
import { redisRoles } from '@holdfast/failover/ioredis';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from './support/redis.js';

/**
 * redisRoles() waits for a client's first connection (47fb48c): clients it did not foresee.
 * Without an offline queue, a command sent before the connection is ready fails at once.
 */
const clients: Redis[] = [];
afterAll(() => {
  for (const c of clients.splice(0)) c.disconnect();
});

function client(port: number, options: Record<string, unknown> = {}): Redis {
  const c = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 0, enableOfflineQueue: false, ...options });
  c.on('error', () => {});
  clients.push(c);
  return c;
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const check = (target: Redis, signal: AbortSignal = AbortSignal.timeout(2_000)) => {
  const roles = redisRoles<Redis>();
  return (roles.check as (endpoint: { name: string; target: Redis }, signal: AbortSignal) => Promise<unknown>)(
    { name: 'r', target },
    signal,
  );
};

const listeners = (c: Redis) => ({ ready: c.listenerCount('ready'), close: c.listenerCount('close') });

describe.skipIf(!redisAvailable())('redisRoles(): clients that are not connected yet', () => {
  let server: RedisServer;
  beforeAll(async () => {
    [server] = (await startRedis(1)) as [RedisServer];
  });
  afterAll(stopAllRedis);

  it('a client made with lazyConnect: true (status wait): its first check connects it and finds its role', async () => {
    const c = client(server.port, { lazyConnect: true });
    expect(c.status).toBe('wait');
    await expect(check(c)).resolves.toMatchObject({ role: 'primary' });
  });

  it('a client that never connects: each check fails within its time, and leaves no listener behind', async () => {
    const c = client(await closedPort(), { retryStrategy: () => 20 });
    const before = listeners(c);
    const signals = Array.from({ length: 30 }, () => AbortSignal.timeout(300));
    let settled = 0;
    const checks = signals.map((signal) => check(c, signal).finally(() => settled++));
    // Handled from the start: a rejection left unhandled until the awaits below is reported by
    // Vitest as an unhandled error (30 of them failed a CI run).
    const all = Promise.allSettled(checks);
    // Within its time: once every signal has fired, nothing is left for a check to wait on. (Not a
    // wall-clock bound: on a loaded machine the timers themselves fire late.)
    await Promise.all(signals.map((s) => (s.aborted ? undefined : new Promise((r) => s.addEventListener('abort', r)))));
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    expect(settled).toBe(30);
    const results = await all;
    expect(results.every((r) => r.status === 'rejected')).toBe(true);
    expect(listeners(c)).toEqual(before);
  });

  it('a server that accepts and never answers: a check whose signal was aborted before it leaves no listener behind', async () => {
    const silent = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = silent.address() as { port: number };
      const c = client(port, { connectTimeout: 60_000 });
      const before = listeners(c);
      const aborted = new AbortController();
      aborted.abort(new Error('disposed'));
      // Its INFO is never answered (the failover set's own deadline ends such a check): only what
      // it leaves on the client is looked at.
      for (let i = 0; i < 20; i++) {
        await Promise.race([check(c, aborted.signal), new Promise((resolve) => setTimeout(resolve, 10))]).catch(
          () => {},
        );
      }
      expect(listeners(c)).toEqual(before);
    } finally {
      silent.close();
    }
  });

  it('a check whose signal is aborted already does not wait for the connection', async () => {
    const c = client(await closedPort(), { retryStrategy: () => 5_000 });
    // Connecting, or reconnecting in 5 s: an aborted check ends now either way.
    const controller = new AbortController();
    controller.abort(new Error('disposed'));
    let settled = false;
    const checked = check(c, controller.signal)
      .catch(() => {})
      .finally(() => {
        settled = true;
      });
    // It waits on no event of the client: settled before the event loop comes round (not a
    // wall-clock bound, which a loaded machine breaks).
    await new Promise((r) => setImmediate(r));
    expect(settled).toBe(true);
    await checked;
    // ioredis holds a 'ready' listener of its own until this connection attempt ends (refused).
    if (c.status !== 'reconnecting') await once(c, 'close');
    expect(listeners(c)).toMatchObject({ ready: 0 });
  });
});
