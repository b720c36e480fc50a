import { connect } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { pipeline, timeout } from '@holdfast/core';
import express from 'express';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { loadShedding as expressShedding } from '../src/express.js';
import { loadShedding as fastifyShedding } from '../src/fastify.js';
import { adaptiveConcurrency, adaptiveThrottle, bulkhead, ipKey, tokenBucket } from '../src/index.js';

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

describe("answers other than the handler's free the place", () => {
  it('Express: a 413 from the body parser after the middleware, a handler that throws, OPTIONS and HEAD', async () => {
    const b = bulkhead({ maxConcurrent: 1, policies: false });
    const app = express();
    app.use(expressShedding({ policy: b, key: () => Symbol('not a string') as never }));
    app.use(express.json({ limit: 10 }));
    app.post('/x', (_req, res) => void res.send('ok'));
    app.get('/throw', () => {
      throw new Error('boom');
    });
    app.get('/x', (_req, res) => void res.send('ok'));
    const url = await listen(app);
    const big = JSON.stringify({ a: 'x'.repeat(1_000) });
    const post = await fetch(`${url}/x`, {
      method: 'POST',
      body: big,
      headers: { 'content-type': 'application/json' },
    });
    expect(post.status).toBe(413);
    expect((await fetch(`${url}/throw`)).status).toBe(500);
    expect((await fetch(`${url}/x`, { method: 'OPTIONS' })).status).toBe(200);
    expect((await fetch(`${url}/x`, { method: 'HEAD' })).status).toBe(200);
    await expect.poll(() => b.running).toBe(0);
    expect((await fetch(`${url}/x`)).status).toBe(200);
  });

  it('Fastify: a 413 from bodyLimit after onRequest, a handler that throws, and a key that throws', async () => {
    const b = bulkhead({ maxConcurrent: 1, policies: false });
    const app = Fastify({ bodyLimit: 10 });
    closers.push(() => app.close());
    await app.register(fastifyShedding, {
      policy: b,
      key: (req) => {
        if (req.url === '/bad-key') throw new Error('no key');
        return 'k';
      },
    });
    app.post('/x', async () => 'ok');
    app.get('/throw', async () => {
      throw new Error('boom');
    });
    app.get('/bad-key', async () => 'ok');
    app.get('/x', async () => 'ok');
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    const post = await fetch(`${url}/x`, {
      method: 'POST',
      body: JSON.stringify({ a: 'x'.repeat(1_000) }),
      headers: { 'content-type': 'application/json' },
    });
    expect(post.status).toBe(413);
    expect((await fetch(`${url}/throw`)).status).toBe(500);
    expect((await fetch(`${url}/bad-key`)).status).toBe(500);
    await expect.poll(() => b.running).toBe(0);
    expect((await fetch(`${url}/x`)).status).toBe(200);
  });
});

describe('Fastify over HTTP/2 (its response emits finish, never prefinish)', () => {
  it('an ended response ends the held call with its status: an adaptive limiter learns from it', async () => {
    const seen: unknown[] = [];
    const limiter = adaptiveConcurrency({
      algorithm: 'aimd',
      initialLimit: 10,
      window: { minTime: 0, minSamples: 1 },
      isDrop: (error) => {
        seen.push((error as { status?: unknown }).status);
        return true;
      },
      policies: false,
    });
    const app = Fastify({ http2: true });
    closers.push(() => app.close());
    await app.register(fastifyShedding, { policy: limiter });
    app.get('/ok', async () => 'ok');
    app.get('/busy', async (_req, reply) => reply.code(503).send('busy'));
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    const client = connect(url);
    closers.unshift(async () => void client.close());
    const get = (path: string) =>
      new Promise<number>((resolve, reject) => {
        const req = client.request({ ':path': path });
        let status = 0;
        req.on('response', (h) => (status = Number(h[':status'])));
        req.on('data', () => {});
        req.on('end', () => resolve(status));
        req.on('error', reject);
      });
    for (let i = 0; i < 5; i++) expect(await get('/ok')).toBe(200);
    for (let i = 0; i < 3; i++) expect(await get('/busy')).toBe(503);
    // Before: each ended response read as a client hanging up: no sample, and no drop seen.
    await expect.poll(() => limiter.snapshot().samples).toBe(8);
    expect(seen).toEqual([503, 503, 503]);
    expect(limiter.inFlight).toBe(0);
  });

  it('a stream reset while queued leaves the queue at once; the running one frees its place when it ends', async () => {
    const b = bulkhead({ maxConcurrent: 1, maxQueue: 1, policies: false });
    let open = () => {};
    const gate = new Promise<void>((r) => (open = r));
    const app = Fastify({ http2: true });
    closers.push(() => app.close());
    await app.register(fastifyShedding, { policy: b });
    app.get('/slow', async () => {
      await gate;
      return 'ok';
    });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    const client = connect(url);
    closers.unshift(async () => void client.close());
    const first = client.request({ ':path': '/slow' });
    first.on('data', () => {});
    const done = new Promise((r) => first.on('end', r));
    await expect.poll(() => b.running).toBe(1);
    const second = client.request({ ':path': '/slow' });
    second.on('error', () => {});
    await expect.poll(() => b.queued).toBe(1);
    second.close();
    await expect.poll(() => b.queued).toBe(0);
    open();
    await done;
    await expect.poll(() => b.running).toBe(0);
  });
});

describe('ipKey and translated IPv4 clients', () => {
  it('behind a stateless NAT64 (SIIT-DC, 64:ff9b::/96) each IPv4 client keeps its own key, not one /56 for all', () => {
    expect(ipKey('64:ff9b::198.51.100.7')).toBe('198.51.100.7');
    expect(ipKey('64:FF9B:0:0:0:0:c633:6407')).toBe('198.51.100.7');
    expect(ipKey('[64:ff9b::c633:6407]:443')).toBe('198.51.100.7');
    expect(ipKey('64:ff9b::203.0.113.9')).toBe('203.0.113.9');
    // Outside the /96 (64:ff9b:1::/48 and the rest): a network, as before.
    expect(ipKey('64:ff9b:1::198.51.100.7')).toBe('64:ff9b:1:0:0:0:0:0/56');
    expect(ipKey('64:ff9b::1:198.51.100.7')).toBe('64:ff9b:0:0:0:0:0:0/56');
  });
});

describe('the key reaches a rate limiter inside a pipeline', () => {
  it('pipeline(bulkhead, tokenBucket) keyed per user: each user has a limit of its own, not one for all', async () => {
    const perUser = tokenBucket({ limit: 1, interval: 60_000, policies: false });
    const app = Fastify();
    closers.push(() => app.close());
    await app.register(fastifyShedding, {
      policy: pipeline(bulkhead({ maxConcurrent: 10, policies: false }), perUser),
      key: (req) => String(req.headers['x-user']),
    });
    app.get('/x', async () => 'ok');
    const get = async (user: string) => (await app.inject({ url: '/x', headers: { 'x-user': user } })).statusCode;
    expect([await get('alice'), await get('bob'), await get('alice')]).toEqual([200, 200, 429]);
    expect(perUser.snapshot().keys).toBe(2);
  });

  it('execute(fn, { key, cost }) on a pipeline: a limiter after a bulkhead or a timeout counts the call under its key and cost', async () => {
    const perUser = tokenBucket({ limit: 3, interval: 60_000, policies: false });
    const p = pipeline(timeout(5_000), bulkhead({ maxConcurrent: 2, policies: false }), perUser);
    await p.execute(async () => 'ok', { key: 'alice', cost: 3 } as never);
    await p.execute(async () => 'ok', { key: 'bob' } as never);
    expect(perUser.take('alice').allowed).toBe(false);
    expect(perUser.take('bob').remaining).toBe(1);
  });
});

describe('a 429 is one client told to slow down, not the service refusing', () => {
  it('one client rate limited inside an adaptive limiter or throttle does not shrink the limit, nor shed everyone', async () => {
    const adaptive = adaptiveConcurrency({
      algorithm: 'aimd',
      initialLimit: 20,
      window: { minTime: 0, minSamples: 1 },
      policies: false,
    });
    const throttle = adaptiveThrottle({ random: () => 0, policies: false });
    const app = Fastify();
    closers.push(() => app.close());
    await app.register(fastifyShedding, { policy: pipeline(throttle, adaptive) });
    await app.register(async (child) => {
      const perClient = tokenBucket({ limit: 1, interval: 60_000, policies: false });
      await child.register(fastifyShedding, { policy: perClient, key: (req) => String(req.headers['x-client']) });
      child.get('/api', async () => 'ok');
    });
    const get = async (client: string) =>
      (await app.inject({ url: '/api', headers: { 'x-client': client } })).statusCode;
    const abuser: number[] = [];
    for (let i = 0; i < 30; i++) abuser.push(await get('abuser'));
    expect(abuser.filter((s) => s === 429)).toHaveLength(29);
    // Before: each 429 was a drop and a backend refusal: the limit fell to 1, and others got 503.
    expect(adaptive.limit).toBeGreaterThanOrEqual(20);
    expect(throttle.probability).toBe(0);
    expect([await get('alice'), await get('bob')]).toEqual([200, 200]);
  });
});

describe('a request shed further in never reached its handler', () => {
  it("a route's own bulkhead shedding with 503 is no refusal for a throttle around the whole app", async () => {
    const throttle = adaptiveThrottle({ random: () => 0, policies: false });
    const app = Fastify();
    closers.push(() => app.close());
    await app.register(fastifyShedding, { policy: throttle });
    let open = () => {};
    const gate = new Promise<void>((r) => (open = r));
    const reports = bulkhead({ maxConcurrent: 1, policies: false });
    await app.register(async (child) => {
      await child.register(fastifyShedding, { policy: reports });
      child.get('/reports', async () => {
        await gate;
        return 'pdf';
      });
    });
    app.get('/cheap', async () => 'ok');
    const first = Promise.resolve(app.inject('/reports'));
    await expect.poll(() => reports.running).toBe(1);
    const shed: number[] = [];
    for (let i = 0; i < 20; i++) shed.push((await app.inject('/reports')).statusCode);
    open();
    expect((await first).statusCode).toBe(200);
    expect(shed.filter((s) => s === 503)).toHaveLength(20);
    // Before: each shed 503 counted as the service refusing: the throttle shed /cheap too.
    expect(throttle.probability).toBe(0);
    expect((await app.inject('/cheap')).statusCode).toBe(200);
  });
});
