import { once } from 'node:events';
import { type AddressInfo, createServer } from 'node:net';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { redisStore } from '../src/index.js';

describe('redisStore() while Redis is unreachable, under load', () => {
  /**
   * Soak: 50 calls at once through an outage (half of them idempotent() on this store) put up to
   * 27 `ready` listeners on the client, one per step waiting for the connection, and Node warned
   * "Possible EventEmitter memory leak detected. 11 ready listeners added" where nothing leaks.
   */
  it('50 steps waiting for the connection hold one ready listener, and none once they gave up', async () => {
    const closed = createServer();
    closed.listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const { port } = closed.address() as AddressInfo;
    await new Promise((resolve) => closed.close(resolve)); // nothing listens there now
    const client = new Redis({ host: '127.0.0.1', port, retryStrategy: () => 20, maxRetriesPerRequest: 1 });
    client.on('error', () => {});
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    try {
      const store = redisStore({ client, commandTimeout: 100, prefix: 'outage:' });
      // ioredis holds a 'ready' listener of its own while each reconnection attempt (every 20 ms
      // here) is under way, so the count alone is off by one whenever the check falls inside an
      // attempt (2 of 40 runs under load). The store's listeners are those the claims added: they
      // wait synchronously, before ioredis can run its next attempt.
      const before = new Set(client.listeners('ready'));
      const claims = Array.from({ length: 50 }, (_, i) => store.claim(`k${i}`, 'fp', 60_000).catch((e: Error) => e));
      const waiting = client.listeners('ready').filter((l) => !before.has(l));
      const settled = await Promise.all(claims);
      expect(settled.every((e) => e instanceof Error && (e as { code?: string }).code === 'E_STORE_UNAVAILABLE')).toBe(
        true,
      );
      expect(waiting).toHaveLength(1);
      expect(client.listeners('ready')).not.toContain(waiting[0]);
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings).not.toContain('MaxListenersExceededWarning');
    } finally {
      process.off('warning', onWarning);
      client.disconnect();
    }
  });
});
