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

/**
 * A refused client's listeners between two connection attempts (status 'reconnecting'): while an
 * attempt is under way (every 20 ms here) ioredis' own connect() holds a 'ready' and a 'close'
 * listener, which a count taken then includes (the fresh-clone CI of ec8d3be counted them:
 * `{ ready: 1, close: 1 }`, not `{ ready: 0, close: 0 }`).
 */
async function listenersBetweenAttempts(c: Redis) {
  const deadline = Date.now() + 5_000;
  while (c.status !== 'reconnecting' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1));
  return listeners(c);
}

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
    const before = await listenersBetweenAttempts(c);
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
    expect(await listenersBetweenAttempts(c)).toEqual(before);
  });

  it('checks waiting together on a client that never connects: one listener of each event on it, however many wait', async () => {
    const c = client(await closedPort(), { retryStrategy: () => 20 });
    const warnings: string[] = [];
    const onWarning = (w: Error) => void warnings.push(w.message);
    process.on('warning', onWarning);
    try {
      const before = { ...listeners(c), end: c.listenerCount('end') };
      // As many checks as sets share the client (or a user's own checks of it): 30 once stacked
      // 30 'ready', 'close' and 'end' listeners on it, and Node warned of a leak (CI logs).
      // Each its own signal, as the set gives each check.
      const controllers = Array.from({ length: 30 }, () => new AbortController());
      const checks = controllers.map((controller) => check(c, controller.signal).catch(() => {}));
      const waiting = { ...listeners(c), end: c.listenerCount('end') };
      for (const controller of controllers) controller.abort(new Error('done'));
      await Promise.all(checks);
      await new Promise((r) => setImmediate(r)); // process.emitWarning tells its listeners on the next tick
      expect({
        ready: waiting.ready - before.ready,
        close: waiting.close - before.close,
        end: waiting.end - before.end,
      }).toEqual({ ready: 1, close: 1, end: 1 });
      expect(warnings.filter((m) => m.includes('MaxListeners') || m.includes('memory leak'))).toEqual([]);
      // Gone once none waits ('end': ioredis holds 'ready' and 'close' ones of its own while it connects).
      expect(c.listenerCount('end')).toBe(before.end);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('a client with an offline queue that never connects: a check queues no command on it', async () => {
    // ioredis' defaults keep an offline queue; with maxRetriesPerRequest: null (as BullMQ asks)
    // nothing ever empties it while Redis is down: one INFO a check, for as long as it is down.
    const c = client(await closedPort(), {
      retryStrategy: () => 20,
      enableOfflineQueue: true,
      maxRetriesPerRequest: null,
    });
    const queued = () => (c as unknown as { offlineQueue: { length: number } }).offlineQueue.length;
    const settled: boolean[] = [];
    for (let i = 0; i < 10; i++) {
      const signal = AbortSignal.timeout(100);
      const aborted = new Promise((r) => signal.addEventListener('abort', r));
      // Ended by its signal, as the set's deadline ends it: whether the check itself ended is recorded.
      let ended = false;
      const checked = check(c, signal).then(
        () => (ended = true),
        () => (ended = true),
      );
      await Promise.race([checked, aborted]);
      for (let j = 0; j < 5; j++) await new Promise((r) => setImmediate(r));
      settled.push(ended);
    }
    expect({ queued: queued(), ended: settled.filter(Boolean).length }).toEqual({ queued: 0, ended: 10 });
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
