import type { AddressInfo } from 'node:net';
import express from 'express';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis } from '../../../test/support/redis.js';
import { idempotency } from '../src/express.js';
import { idempotent, redisStore } from '../src/index.js';
import { newKey, send } from './http-support/support.js';

/**
 * The account of a request, as an app reads it from a token's JSON payload (a JWT's claims):
 * JSON.parse gives a lone surrogate for `"\ud83d"`, and a display name cut by `slice()` in the
 * middle of an emoji holds one too ("ann😀".slice(0, 4) is "ann\ud83d").
 */
function tokenOf(account: string): string {
  return Buffer.from(JSON.stringify({ sub: account })).toString('base64url');
}

function accountOf(req: express.Request): string {
  return (JSON.parse(Buffer.from(req.get('x-token') ?? '', 'base64url').toString()) as { sub: string }).sub;
}

describe.skipIf(!redisAvailable())('redisStore keys of scopes and keys with lone surrogates', () => {
  let server: RedisServer;
  const clients: Redis[] = [];
  beforeAll(async () => {
    [server] = (await startRedis(1)) as [RedisServer];
  });
  afterAll(async () => {
    for (const client of clients) client.disconnect();
    await server?.stop();
  });
  const connect = () => {
    const client = new Redis(server.url, { maxRetriesPerRequest: 1 });
    clients.push(client);
    return client;
  };

  it("does not replay one account's response to another whose scope differs only in a lone surrogate (Express 5)", async () => {
    const app = express();
    app.use(idempotency({ store: redisStore({ client: connect() }), scope: accountOf }));
    app.use(express.json());
    const ran: string[] = [];
    app.post('/orders', (req, res) => {
      ran.push(accountOf(req));
      res.status(201).json({ order: ran.length, for: accountOf(req), card: `card of ${ran.length}` });
    });
    const http = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => http.once('listening', resolve));
    try {
      const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/orders`;
      const key = newKey();
      // Two accounts: "ann😀" and "ann🎉" cut to four UTF-16 units. Same key (a client library's
      // counter, a UUID reused by a buggy client) and the same body.
      const ann = await send(url, { key, body: { item: 1 }, headers: { 'x-token': tokenOf('ann\ud83d') } });
      const other = await send(url, { key, body: { item: 1 }, headers: { 'x-token': tokenOf('ann\ud83c') } });
      expect(ann.status).toBe(201);
      expect(other.headers.get('idempotent-replayed')).toBeNull();
      expect(other.json()).toMatchObject({ order: 2 });
      expect(ran).toEqual(['ann\ud83d', 'ann\ud83c']);
      // And U+FFFD itself, a character an account name may hold, is an account of its own.
      const third = await send(url, { key, body: { item: 1 }, headers: { 'x-token': tokenOf('ann\ufffd') } });
      expect(third.headers.get('idempotent-replayed')).toBeNull();
      expect(ran).toHaveLength(3);
      // Each still replays its own.
      const again = await send(url, { key, body: { item: 1 }, headers: { 'x-token': tokenOf('ann\ud83c') } });
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(again.json()).toMatchObject({ order: 2 });
    } finally {
      await new Promise((resolve) => http.close(resolve));
    }
  });

  it('runs idempotent() once per key where two keys differ only in a lone surrogate', async () => {
    const store = redisStore({ client: connect() });
    const runs: string[] = [];
    const fn = idempotent(
      async (input: { id: string }) => {
        runs.push(input.id);
        return input.id;
      },
      { store, key: (input) => input.id, fingerprint: () => 'same' },
    );
    const base = newKey();
    expect(await fn({ id: `${base}\udc00` })).toBe(`${base}\udc00`);
    expect(await fn({ id: `${base}\udfff` })).toBe(`${base}\udfff`);
    expect(runs).toEqual([`${base}\udc00`, `${base}\udfff`]);
    // A key that was well-formed keeps the Redis key it had (records written before stay found).
    expect(store.keyOf('abc')).toBe('holdfast:idem:{ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0}');
  });
});
