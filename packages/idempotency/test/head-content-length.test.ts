import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBus } from '@holdfast/core';
import express from 'express';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { idempotency as fastifyIdempotency } from '../src/fastify.js';
import { memoryStore } from '../src/index.js';
import { closeAll, closers, listenNode } from './http-support/body-apps.js';

/**
 * HEAD guarded by choice (`methods`): its response has no body, and its Content-Length is what
 * a GET would send. A replay must say the same, never 0 for a resource that is not empty.
 */
afterEach(closeAll);

const RESOURCE = 'hello, resource'; // 15 bytes

async function expressApp() {
  const app = express();
  app.use(idempotency({ store: memoryStore(), scope: 'global', bus: createBus(), methods: ['GET', 'HEAD'] }));
  const ran = { count: 0 };
  app.get('/thing', (_req, res) => {
    ran.count++;
    res.type('text/plain').send(RESOURCE); // Express answers HEAD with this route, without the body
  });
  app.head('/chunked', (_req, res) => {
    ran.count++;
    res.type('text/plain').end(); // no Content-Length at all: the length is not known
  });
  return { port: await listenNode(createServer(app)), ran };
}

async function fastifyApp() {
  const app = Fastify();
  closers.push(() => app.close());
  await app.register(fastifyIdempotency, {
    store: memoryStore(),
    scope: 'global',
    bus: createBus(),
    methods: ['GET', 'HEAD'],
  });
  const ran = { count: 0 };
  app.get('/thing', async (_request, reply) => {
    ran.count++;
    return reply.type('text/plain').send(RESOURCE); // Fastify's HEAD route runs this, without the body
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  return { port: (app.server.address() as AddressInfo).port, ran };
}

const call = (port: number, method: string, key: string, path = '/thing') =>
  fetch(`http://127.0.0.1:${port}${path}`, { method, headers: { 'idempotency-key': key } });

const seen = async (res: Response) => ({
  status: res.status,
  length: res.headers.get('content-length'),
  replayed: res.headers.get('idempotent-replayed'),
  body: await res.text(),
});

for (const [name, build] of [
  ['express', expressApp],
  ['fastify', fastifyApp],
] as const) {
  describe(`${name}: HEAD`, () => {
    it("a HEAD replayed says the Content-Length the first said (a GET body's), with no body; one run", async () => {
      const { port, ran } = await build();
      const first = await seen(await call(port, 'HEAD', 'h'));
      const replay = await seen(await call(port, 'HEAD', 'h'));
      expect(first).toEqual({ status: 200, length: String(RESOURCE.length), replayed: null, body: '' });
      expect(replay).toEqual({ status: 200, length: String(RESOURCE.length), replayed: 'true', body: '' });
      expect(ran.count).toBe(1);
      // The same resource by GET with its own key: the length HEAD promised.
      const get = await seen(await call(port, 'GET', 'g'));
      expect(get.length).toBe(String(RESOURCE.length));
      expect(get.body).toBe(RESOURCE);
    });

    it('a HEAD with a key first used by GET is a different request: 422, not a replay of the GET', async () => {
      const { port, ran } = await build();
      await (await call(port, 'GET', 'shared')).text();
      const head = await call(port, 'HEAD', 'shared');
      expect(head.status).toBe(422);
      expect(head.headers.get('idempotent-replayed')).toBeNull();
      // And the GET still replays whole.
      expect(await seen(await call(port, 'GET', 'shared'))).toEqual({
        status: 200,
        length: String(RESOURCE.length),
        replayed: 'true',
        body: RESOURCE,
      });
      expect(ran.count).toBe(1);
    });
  });
}

describe('express: a HEAD whose length is not known', () => {
  it('the replay sends no Content-Length either (not 0)', async () => {
    const { port } = await expressApp();
    const first = await call(port, 'HEAD', 'c', '/chunked');
    const replay = await call(port, 'HEAD', 'c', '/chunked');
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.headers.get('content-length')).toBe(first.headers.get('content-length'));
  });
});

describe('express: a guarded HEAD no route serves', () => {
  /**
   * The router's own 404 is told apart by its page, "Cannot POST /path"; a HEAD's has no body
   * (finalhandler ends it empty), so it was stored for the key: the same HEAD, once the route
   * was deployed, got that 404 replayed for ttlMs.
   */
  it('is not stored: the same key, once the route exists, runs it', async () => {
    const app = express();
    app.use(idempotency({ store: memoryStore(), scope: 'global', bus: createBus(), methods: ['HEAD'] }));
    let deployed = false;
    let ran = 0;
    const routes = express.Router();
    routes.head('/late', (_req, res) => {
      ran++;
      res.type('text/plain').set('content-length', '3').end();
    });
    app.use((req, res, next) => (deployed ? routes(req, res, next) : next())); // deployed later
    const port = await listenNode(createServer(app));
    const first = await call(port, 'HEAD', 'late', '/late');
    expect(first.status).toBe(404);
    deployed = true;
    const retry = await seen(await call(port, 'HEAD', 'late', '/late'));
    expect(retry).toEqual({ status: 200, length: '3', replayed: null, body: '' });
    expect(ran).toBe(1);
  });
});
