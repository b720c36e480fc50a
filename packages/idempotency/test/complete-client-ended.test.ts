import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBus } from '@holdfast/core';
import express from 'express';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from '../../../test/support/redis.js';
import { idempotency } from '../src/express.js';
import { redisStore } from '../src/index.js';

// A shutdown that disconnects Redis before the server has finished its requests (the order the
// docs now warn against): the response of a request in flight waited for its completion to be
// tried again and again for completeTimeoutMs (10 s by default), against a client that had ended
// for good and could not answer any of those tries.
describe.skipIf(!redisAvailable())('completing a response when the Redis client has ended', () => {
  let server: RedisServer;
  beforeAll(async () => {
    [server] = (await startRedis(1)) as [RedisServer];
  });
  afterAll(stopAllRedis);

  it('is tried once, not for completeTimeoutMs: the response goes out at once, the failure told once', async () => {
    const client = new Redis(server.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    client.on('error', () => {});
    const bus = createBus();
    const failures: string[] = [];
    bus.on('idempotency.storeError', (e) => failures.push(`${e.operation} ${e.code}`));
    let runs = 0;
    const app = express();
    app.use(
      idempotency({
        store: redisStore({ client, prefix: 'complete-ended:' }),
        scope: 'global',
        bus,
        completeTimeoutMs: 3_000,
      }),
    );
    app.post('/orders', async (_req, res) => {
      runs++;
      // The service shuts down: its Redis client ends while this request still runs.
      client.disconnect();
      if (client.status !== 'end') await once(client, 'end');
      res.status(201).send('made');
    });
    const http = createServer(app).listen(0, '127.0.0.1');
    await once(http, 'listening');
    try {
      const { port } = http.address() as AddressInfo;
      const response = await fetch(`http://127.0.0.1:${port}/orders`, {
        method: 'POST',
        headers: { 'idempotency-key': 'k-1', 'content-type': 'text/plain' },
        body: 'order',
      });
      expect([response.status, await response.text(), runs]).toEqual([201, 'made', 1]);
      // Tried again every 100 ms to 1 s for 3 s, it was told about 6 times.
      expect(failures).toEqual(['complete E_STORE_UNAVAILABLE']);
    } finally {
      http.close();
    }
  });
});
