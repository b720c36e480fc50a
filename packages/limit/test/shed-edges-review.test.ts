import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { loadShedding as expressShedding } from '../src/express.js';
import { loadShedding as fastifyShedding } from '../src/fastify.js';
import { bulkhead, tokenBucket } from '../src/index.js';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((c) => c()));
});

async function listen(app: express.Express): Promise<string> {
  const server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  closers.push(
    () =>
      new Promise((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('one policy met twice by one request (a middleware mounted twice, the plugin registered twice)', () => {
  it('Express: the same middleware on the app and on a path takes one place, not two', async () => {
    const b = bulkhead({ maxConcurrent: 1, policies: false });
    const shed = expressShedding({ policy: b });
    const app = express();
    app.use(shed);
    app.use('/api', shed);
    app.get('/api/x', (_req, res) => void res.json({ running: b.running }));
    const url = await listen(app);
    const res = await fetch(`${url}/api/x`);
    expect([res.status, await res.json()]).toEqual([200, { running: 1 }]);
    expect(b.running).toBe(0);
  });

  it('Express: two middlewares over one rate limit and key count a request once', async () => {
    const limit = tokenBucket({ limit: 4, interval: 60_000, policies: false });
    const app = express();
    app.use(expressShedding({ policy: limit, key: () => 'k' }));
    const router = express.Router();
    router.use(expressShedding({ policy: limit, key: () => 'k' }));
    router.get('/x', (_req, res) => void res.send('ok'));
    app.use('/r', router);
    const url = await listen(app);
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await fetch(`${url}/r/x`)).status);
    expect(statuses).toEqual([200, 200, 200, 200, 429]);
  });

  it('Express: another key under the same limiter is another count (a per-IP and a per-user limit on one limiter)', async () => {
    const limit = tokenBucket({ limit: 2, interval: 60_000, policies: false });
    const app = express();
    app.use(expressShedding({ policy: limit, key: () => 'ip:1' }));
    app.use(expressShedding({ policy: limit, key: () => 'user:1' }));
    app.get('/x', (_req, res) => void res.send('ok'));
    const url = await listen(app);
    for (let i = 0; i < 2; i++) expect((await fetch(`${url}/x`)).status).toBe(200);
    expect((await fetch(`${url}/x`)).status).toBe(429);
    expect(limit.snapshot()).toMatchObject({ keys: 2, allowed: 4, rejected: 1 });
  });

  it('Fastify: the plugin registered on the root and again in an encapsulated child with one bulkhead takes one place', async () => {
    const b = bulkhead({ maxConcurrent: 1, policies: false });
    const app = Fastify();
    closers.push(() => app.close());
    await app.register(fastifyShedding, { policy: b });
    await app.register(async (child) => {
      await child.register(fastifyShedding, { policy: b });
      child.get('/child', async () => ({ running: b.running }));
    });
    app.get('/root', async () => ({ running: b.running }));
    for (const path of ['/root', '/child']) {
      const res = await app.inject(path);
      expect([path, res.statusCode, res.json()]).toEqual([path, 200, { running: 1 }]);
    }
    expect(b.running).toBe(0);
  });
});
