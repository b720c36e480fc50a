import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { idempotency as fastifyIdempotency } from '../src/fastify.js';
import { type IdempotencyStore, memoryStore } from '../src/index.js';
import { closeAll, closers, listenNode } from './http-support/body-apps.js';
import { newKey, send, spy } from './http-support/support.js';

// With an in-process store the record is written while the handler's response is being sent,
// so the response goes out at once, with no wait for the store: the handler sees its response
// ended when send() returns, as without the middleware. A store that answers over the wire (a
// wrapper, Redis) holds the response until the record is written, so a retry sent on receipt
// gets the replay. Either way a retry sent the moment the response arrives gets the replay, and
// a response that cannot be stored frees its key before the retry is read.

afterEach(closeAll);

interface App {
  readonly url: string;
  /** Whether each response had ended when the handler's send returned. */
  readonly endedAtOnce: boolean[];
  calls(): number;
}

async function expressApp(store: IdempotencyStore, body: unknown = { ok: true }): Promise<App> {
  const app = express();
  const endedAtOnce: boolean[] = [];
  let calls = 0;
  app.use(idempotency({ store, scope: 'global' }));
  app.use(express.json());
  app.post('/orders', (_req, res) => {
    calls++;
    res.status(201).json(body);
    endedAtOnce.push(res.writableEnded);
  });
  const port = await listenNode(createServer(app));
  return { url: `http://127.0.0.1:${port}/orders`, endedAtOnce, calls: () => calls };
}

async function fastifyApp(store: IdempotencyStore, body: unknown = { ok: true }): Promise<App> {
  const app = Fastify();
  const endedAtOnce: boolean[] = [];
  let calls = 0;
  await app.register(fastifyIdempotency, { store, scope: 'global' });
  app.post('/orders', (_req, reply) => {
    calls++;
    reply.code(201).send(body);
    endedAtOnce.push(reply.raw.writableEnded);
    return reply;
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  closers.push(() => app.close());
  return {
    url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/orders`,
    endedAtOnce,
    calls: () => calls,
  };
}

describe.each([
  ['Express', expressApp],
  ['Fastify', fastifyApp],
])('%s: the response and the record', (_name, make) => {
  it('memoryStore: the response ends when the handler sends it, and a retry on receipt is a replay', async () => {
    const app = await make(memoryStore());
    for (let i = 0; i < 20; i++) {
      const key = newKey();
      const first = await send(app.url, { key, body: { i } });
      const retry = await send(app.url, { key, body: { i } });
      expect(first.status).toBe(201);
      expect(retry.status).toBe(201);
      expect(retry.headers.get('idempotent-replayed')).toBe('true');
      expect(retry.text).toBe(first.text);
    }
    expect(app.calls()).toBe(20);
    expect(app.endedAtOnce).toEqual(Array(20).fill(true));
  });

  it('a store that is not in-process (a wrapper) holds the response until the record is written', async () => {
    const app = await make(spy(memoryStore()));
    const key = newKey();
    expect((await send(app.url, { key, body: {} })).status).toBe(201);
    const retry = await send(app.url, { key, body: {} });
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    expect(app.calls()).toBe(1);
    expect(app.endedAtOnce).toEqual([false]);
  });

  it('memoryStore that refuses the record (over maxBytes): the key is free for the retry, which runs again', async () => {
    const app = await make(memoryStore({ maxBytes: 2_000 }), { big: 'x'.repeat(4_000) });
    const key = newKey();
    const first = await send(app.url, { key, body: {} });
    const retry = await send(app.url, { key, body: {} });
    expect([first.status, retry.status]).toEqual([201, 201]);
    expect(retry.headers.get('idempotent-replayed')).toBeNull();
    expect(app.calls()).toBe(2);
  });
});
