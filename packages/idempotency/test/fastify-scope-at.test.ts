import type { AddressInfo } from 'node:net';
import { HoldfastConfigError } from '@holdfast/core';
import fc from 'fast-check';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { type FastifyIdempotencyOptions, idempotency } from '../src/fastify.js';
import { memoryStore } from '../src/index.js';
import { accountScope, authenticateByApiKey } from './http-support/account.js';

// `scopeAt: 'preParsing'`: the scope is asked before the body is read, once a request, so a
// scoped replay can be sent before Fastify parses its body. What must hold: one caller never gets
// another's response (same key, same bytes), every retry gets its own caller's, a scope that finds
// nothing there fails the request instead of naming a shared space, and the default still asks
// after parsing (a scope may read the body).

const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

interface Counts {
  /** Requests whose body Fastify parsed, counted once answered. */
  parsed: number;
  handled: number;
  scoped: number;
}

/** Authentication in `where`, then the plugin, then POST /orders answering `{ id, account }`. */
async function start(
  options: Partial<FastifyIdempotencyOptions> = {},
  where: 'onRequest' | 'preValidation' = 'onRequest',
  route: Record<string, unknown> = {},
): Promise<{ url: string; counts: Counts }> {
  const app = Fastify();
  apps.push(app);
  const counts: Counts = { parsed: 0, handled: 0, scoped: 0 };
  app.addHook('onResponse', async (request) => {
    if (request.body !== undefined) counts.parsed++;
  });
  authenticateByApiKey(app, where);
  await app.register(idempotency, {
    store: memoryStore(),
    scope: accountScope(counts),
    ...options,
  });
  app.post('/orders', { config: { idempotency: route } }, async (request, reply) => {
    counts.handled++;
    return reply.code(201).send({ id: counts.handled, account: request.account });
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  return { url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/orders`, counts };
}

async function post(url: string, account: string, key: string, body: string) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': account, 'idempotency-key': key },
    body,
  });
  const text = await response.text();
  return { status: response.status, replayed: response.headers.get('idempotent-replayed'), text };
}

describe("Fastify scopeAt: 'preParsing'", () => {
  it('keeps two callers of one key and one body apart, and replays each its own before parsing', async () => {
    const { url, counts } = await start({ scopeAt: 'preParsing' });
    const body = '{"amount":4200}';
    const alice = await post(url, 'alice', 'k-1', body);
    const bob = await post(url, 'bob', 'k-1', body);
    expect([alice.status, JSON.parse(alice.text)]).toEqual([201, { id: 1, account: 'alice' }]);
    expect([bob.status, JSON.parse(bob.text)]).toEqual([201, { id: 2, account: 'bob' }]);
    expect(counts).toMatchObject({ parsed: 2, handled: 2 });
    for (let i = 0; i < 3; i++) {
      const again = [await post(url, 'bob', 'k-1', body), await post(url, 'alice', 'k-1', body)];
      expect(again.map((r) => [r.status, r.replayed, r.text])).toEqual([
        [201, 'true', bob.text],
        [201, 'true', alice.text],
      ]);
    }
    // Six replays, none parsed: answered in preParsing. One scope call a request.
    expect(counts).toEqual({ parsed: 2, handled: 2, scoped: 8 });
    // Another body under alice's key: her 422, parsed and decided as usual.
    const changed = await post(url, 'alice', 'k-1', '{"amount":9900}');
    expect(changed.status).toBe(422);
    expect(counts.handled).toBe(2);
  });

  it('by default asks after parsing: the same requests, replayed from preHandler', async () => {
    const { url, counts } = await start();
    const body = '{"amount":4200}';
    const alice = await post(url, 'alice', 'k-1', body);
    const bob = await post(url, 'bob', 'k-1', body);
    expect(JSON.parse(bob.text)).toEqual({ id: 2, account: 'bob' });
    expect((await post(url, 'alice', 'k-1', body)).text).toBe(alice.text);
    expect((await post(url, 'bob', 'k-1', body)).text).toBe(bob.text);
    expect(counts).toEqual({ parsed: 4, handled: 2, scoped: 4 });
  });

  it('fails a request whose scope finds nothing yet (authentication in preValidation): never a shared space', async () => {
    const { url, counts } = await start({ scopeAt: 'preParsing' }, 'preValidation');
    const first = await post(url, 'alice', 'k-1', '{"amount":1}');
    expect(first.status).toBe(500);
    expect(JSON.parse(first.text).message).toMatch(/scope.*returned undefined/);
    // Its own route says preHandler: the scope reads the account preValidation set.
    const { url: late, counts: lateCounts } = await start({ scopeAt: 'preParsing' }, 'preValidation', {
      scopeAt: 'preHandler',
    });
    const a = await post(late, 'alice', 'k-1', '{"amount":1}');
    const b = await post(late, 'bob', 'k-1', '{"amount":1}');
    expect([a.status, b.status, JSON.parse(b.text).account]).toEqual([201, 201, 'bob']);
    expect((await post(late, 'alice', 'k-1', '{"amount":1}')).text).toBe(a.text);
    expect(counts.handled).toBe(0);
    expect(lateCounts.handled).toBe(2);
  });

  it('waits for a scope that returns a promise, and hands its error to the error handler', async () => {
    const { url, counts } = await start({
      scopeAt: 'preParsing',
      scope: async (request: FastifyRequest) => {
        await new Promise((resolve) => setTimeout(resolve, 5));
        if (request.account === 'mallory') throw Object.assign(new Error('account suspended'), { statusCode: 403 });
        return request.account;
      },
    });
    const body = '{"amount":4200}';
    const alice = await post(url, 'alice', 'k-1', body);
    const bob = await post(url, 'bob', 'k-1', body);
    expect(JSON.parse(bob.text)).toEqual({ id: 2, account: 'bob' });
    const again = await post(url, 'alice', 'k-1', body);
    expect([again.status, again.replayed, again.text]).toEqual([201, 'true', alice.text]);
    const refused = await post(url, 'mallory', 'k-1', body);
    expect([refused.status, JSON.parse(refused.text).message]).toEqual([403, 'account suspended']);
    // A promise: no early replay (parsed), and the handler ran twice.
    expect(counts).toMatchObject({ parsed: 3, handled: 2 });
  });

  it('names a bad scopeAt, of the plugin when registered and of a route when declared', async () => {
    const app = Fastify();
    apps.push(app);
    const refused = await app
      .register(idempotency, { store: memoryStore(), scope: 'global', scopeAt: 'onRequest' as 'preParsing' })
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    expect(refused).toBeInstanceOf(HoldfastConfigError);
    expect(String((refused as Error).message)).toMatch(/scopeAt.*'preHandler' or 'preParsing'/);

    const other = Fastify();
    apps.push(other);
    await other.register(idempotency, { store: memoryStore(), scope: 'global' });
    expect(() =>
      other.post('/x', { config: { idempotency: { scopeAt: 'early' as 'preParsing' } } }, async () => 'ok'),
    ).toThrow(/route POST \/x.*scopeAt/s);
  });

  it('gives each caller its own answer over any sequence of callers, keys and bodies (property)', async () => {
    for (const scopeAt of ['preParsing', 'preHandler'] as const) {
      await fc.assert(
        fc.asyncProperty(
          fc.array(
            fc.record({
              account: fc.constantFrom('alice', 'bob'),
              key: fc.constantFrom('k-1', 'k-2'),
              body: fc.constantFrom('{"amount":1}', '{"amount":2}'),
            }),
            { minLength: 1, maxLength: 10 },
          ),
          async (requests) => {
            const { url, counts } = await start({ scopeAt });
            // The model: a caller's key holds the first body it came with and that run's answer.
            const model = new Map<string, { body: string; text: string }>();
            for (const { account, key, body } of requests) {
              const got = await post(url, account, key, body);
              const held = model.get(`${account}\0${key}`);
              if (held === undefined) {
                expect(got.status).toBe(201);
                expect(JSON.parse(got.text)).toEqual({ id: counts.handled, account });
                model.set(`${account}\0${key}`, { body, text: got.text });
              } else if (held.body === body) {
                expect([got.status, got.replayed, got.text]).toEqual([201, 'true', held.text]);
              } else {
                expect(got.status).toBe(422);
              }
            }
            expect(counts.handled).toBe(model.size);
            await apps.pop()?.close();
          },
        ),
        { numRuns: 25 },
      );
    }
  });
});
