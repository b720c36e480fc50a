import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { redisAvailable } from '../../../test/support/redis.js';
import { idempotency } from '../src/express.js';
import { idempotency as idempotencyFastify } from '../src/fastify.js';
import { idempotent, memoryStore, redisStore } from '../src/index.js';
import { useRedisServer } from './http-support/stores.js';
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
  const { connect } = useRedisServer();

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

/**
 * A scope that fails with a value that is no Error: a hand-rolled promisify that rejects with the
 * callback's `err` when it is null (`err !== undefined ? reject(err) : ...`), `throw undefined`,
 * or a string. Express's `next()` and Fastify's hook `done()` take a falsy error for none (and
 * Express takes 'route' and 'router' for its own signals): the request went on to the handler
 * with its key never claimed, and every retry ran the handler again.
 */
describe('a scope that fails with something other than an Error', () => {
  const lookup = (user: string | undefined, callback: (err: Error | null, id?: string) => void) =>
    setImmediate(() => (user === undefined ? callback(null) : callback(null, user)));
  // The account lookup's callback says "no such account" with (null, undefined): this wrapper
  // rejects with that null.
  const scopeOf = (user: string | undefined) =>
    new Promise<string>((resolve, reject) =>
      lookup(user, (err, id) => (err !== null || id === undefined ? reject(err) : resolve(id))),
    );

  for (const [what, thrown] of [
    ['null', () => scopeOf(undefined)],
    ['undefined', () => Promise.reject(undefined)],
    ["the string 'route'", () => Promise.reject('route')],
    [
      '0, thrown at once',
      () => {
        throw 0;
      },
    ],
  ] as const) {
    it(`Express 5: never runs the handler unclaimed when scope fails with ${what}`, async () => {
      const app = express();
      app.use(idempotency({ store: memoryStore(), scope: thrown as () => string }));
      app.use(express.json());
      let runs = 0;
      app.post('/charges', (_req, res) => {
        runs++;
        res.status(201).json({ charge: runs });
      });
      const errors: unknown[] = [];
      app.use((error: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
        errors.push(error);
        res.status(500).json({ error: 'scope failed' });
      });
      const http = app.listen(0, '127.0.0.1');
      await new Promise((resolve) => http.once('listening', resolve));
      try {
        const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/charges`;
        const key = newKey();
        const first = await send(url, { key, body: { amount: 1 } });
        const retry = await send(url, { key, body: { amount: 1 } });
        expect(runs).toBe(0);
        expect([first.status, retry.status]).toEqual([500, 500]);
        expect(errors).toHaveLength(2);
        expect(String((errors[0] as Error).message)).toMatch(/scope/);
      } finally {
        await new Promise((resolve) => http.close(resolve));
      }
    });

    it(`Fastify 5: never runs the handler unclaimed when scope fails with ${what}`, async () => {
      const app = Fastify();
      await app.register(idempotencyFastify, { store: memoryStore(), scope: thrown as () => string });
      let runs = 0;
      app.post('/charges', async (_request, reply) => {
        runs++;
        return reply.code(201).send({ charge: runs });
      });
      await app.listen({ port: 0, host: '127.0.0.1' });
      try {
        const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/charges`;
        const key = newKey();
        const first = await send(url, { key, body: { amount: 1 } });
        const retry = await send(url, { key, body: { amount: 1 } });
        expect(runs).toBe(0);
        expect([first.status, retry.status]).toEqual([500, 500]);
        expect(first.text).toMatch(/scope/);
      } finally {
        await app.close();
      }
    });
  }
});

/**
 * A text parser before the middleware (no `captureRawBody`) hands it the body as a string: one
 * sent as UTF-16 decodes to lone surrogates, which the fingerprint hashed as UTF-8, where each reads
 * as U+FFFD. Two different bodies under one key were one request: the second got the first's
 * response replayed, not 422.
 */
it('Express 5 after express.text(): another UTF-16 body under the same key gets 422, not the first one’s replay', async () => {
  const app = express();
  app.use(express.text({ type: 'text/plain' }));
  app.use(idempotency({ store: memoryStore(), scope: 'global' }));
  const bodies: number[][] = [];
  app.post('/notes', (req, res) => {
    bodies.push([...(req.body as string)].map((c) => c.charCodeAt(0)));
    res.status(201).json({ note: bodies.length });
  });
  const http = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => http.once('listening', resolve));
  try {
    const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/notes`;
    const key = newKey();
    const post = (bytes: number[]) =>
      fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'text/plain; charset=utf-16le', 'idempotency-key': key },
        body: Buffer.from(bytes),
      });
    const first = await post([0x00, 0xd8]);
    expect(first.status).toBe(201);
    expect(bodies).toEqual([[0xd800]]);
    const other = await post([0x00, 0xdc]);
    expect(other.headers.get('idempotent-replayed')).toBeNull();
    expect(other.status).toBe(422);
    // The same body again still replays.
    const again = await post([0x00, 0xd8]);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(bodies).toHaveLength(1);
  } finally {
    await new Promise((resolve) => http.close(resolve));
  }
});
