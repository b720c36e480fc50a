import { randomUUID } from 'node:crypto';
import { connect } from 'node:http2';
import { HoldfastConfigError, type Policy, pipeline, timeout } from '@holdfast/core';
import express from 'express';
import Fastify from 'fastify';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { loadShedding as expressShedding } from '../src/express.js';
import { loadShedding as fastifyShedding } from '../src/fastify.js';
import { bulkhead, type LoadSheddingOptions, slidingWindow, tokenBucket } from '../src/index.js';
import { redisRateLimiter } from '../src/redis.js';
import { closeServers, listen } from './serve.js';

type Req = { headers: Record<string, string | string[] | undefined> };
type Options = Omit<LoadSheddingOptions<Req>, 'policy'> & { policy: Policy } & Record<string, unknown>;
const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
  await closeServers();
});

const byUser = (req: Req) => req.headers['x-user'] as string | undefined;
const minute = { interval: 60_000, policies: false as const };

/** Express with each of `mounts` on /api, or Fastify with each registered in turn; GET /api/x answers 'ok'. */
async function serve(kind: 'express' | 'fastify', mounts: Options[]): Promise<string> {
  if (kind === 'express') {
    const app = express();
    for (const m of mounts) app.use('/api', expressShedding(m as never));
    app.get('/api/x', (_req, res) => void res.send('ok'));
    return listen(app);
  }
  const app = Fastify();
  for (const m of mounts) await app.register(fastifyShedding, m as never);
  app.get('/api/x', async () => 'ok');
  closers.push(() => app.close());
  return app.listen({ port: 0, host: '127.0.0.1' });
}

/** The status and the rate-limit headers (and retry-after) of one GET. */
async function get(url: string, user?: string) {
  const res = await fetch(`${url}/api/x`, { headers: user === undefined ? {} : { 'x-user': user } });
  await res.text();
  const headers: Record<string, string> = {};
  for (const [name, value] of res.headers) if (/ratelimit|retry-after/.test(name)) headers[name] = value;
  return { status: res.status, headers, all: [...res.headers].join('\n') };
}

describe.each(['express', 'fastify'] as const)(
  '%s: RateLimit headers (draft-ietf-httpapi-ratelimit-headers)',
  (kind) => {
    it("draft-8 by default: the request's own limit on each allowed response and on the 429", async () => {
      const url = await serve(kind, [{ policy: tokenBucket({ limit: 3, ...minute }), key: byUser }]);
      const seen = [];
      for (let i = 0; i < 4; i++) seen.push(await get(url, 'alice'));
      // Before: none of these headers was sent.
      expect(seen.map((s) => s.status)).toEqual([200, 200, 200, 429]);
      for (const s of seen) expect(s.headers['ratelimit-policy']).toBe('"3-in-60s";q=3;w=60');
      // A token comes back every 20 s: the whole limit 20 s after one is taken, 60 s after three.
      expect(seen.map((s) => s.headers.ratelimit)).toEqual([
        '"3-in-60s";r=2;t=20',
        '"3-in-60s";r=1;t=40',
        '"3-in-60s";r=0;t=60',
        '"3-in-60s";r=0;t=60',
      ]);
      // Retry-After as before: only on the refusal.
      expect(seen.map((s) => s.headers['retry-after'])).toEqual([undefined, undefined, undefined, '20']);
      // Another user's count is its own.
      expect((await get(url, 'bob')).headers.ratelimit).toBe('"3-in-60s";r=2;t=20');
    });

    it('never shows the key (a token used as the key), nor a limit shared with other clients', async () => {
      const perUser = tokenBucket({ limit: 5, ...minute });
      const total = tokenBucket({ limit: 2, key: () => 'all', ...minute });
      const url = await serve(kind, [{ policy: pipeline(timeout(5_000), perUser, total), key: byUser }]);
      const secret = 'Bearer s3cr3t-t0ken';
      const a = await get(url, secret);
      const b = await get(url, 'bob');
      const c = await get(url, 'carol');
      expect([a.status, b.status, c.status]).toEqual([200, 200, 429]);
      expect(a.all).not.toContain('s3cr3t');
      // Only the per-user limit: the total's count says what other clients did.
      expect(c.headers['ratelimit-policy']).toBe('"5-in-60s";q=5;w=60');
      // Carol's unit went back when the total refused her: her limit is whole (it said r=4;t=12).
      expect(c.headers.ratelimit).toBe('"5-in-60s";r=5;t=0');
      // Without a key every request counts against the defaultKey, shared by all: nothing shown.
      const shared = await serve(kind, [{ policy: tokenBucket({ limit: 2, ...minute }) }]);
      expect((await get(shared, 'alice')).headers).toEqual({});
      expect((await get(shared, 'alice')).headers).toEqual({});
      expect((await get(shared, 'alice')).headers).toEqual({ 'retry-after': '30' });
      // A bulkhead has no rate: nothing shown either.
      const bh = await serve(kind, [{ policy: bulkhead({ maxConcurrent: 1, policies: false }), key: byUser }]);
      expect((await get(bh, 'alice')).headers).toEqual({});
    });

    it('two limits mounted: draft-8 lists both; draft-7 and draft-6 show the one closest to refusing', async () => {
      const perIp = () => tokenBucket({ limit: 10, ...minute });
      const perUser = () => slidingWindow({ limit: 2, interval: 10_000, policies: false });
      const both = (standardHeaders?: LoadSheddingOptions<Req>['standardHeaders']): Options[] => [
        { policy: perIp(), key: () => 'ip', ...(standardHeaders && { standardHeaders }) },
        { policy: perUser(), key: byUser, ...(standardHeaders && { standardHeaders }) },
      ];
      const url8 = await serve(kind, both());
      await get(url8, 'alice');
      const second = await get(url8, 'alice');
      // A sliding window of 2 per 10 s kept at its limit lets 1 per 10 s through (ratelimit-window.test.ts).
      expect(second.headers['ratelimit-policy']).toBe('"10-in-60s";q=10;w=60, "1-in-10s";q=1;w=10');
      expect(second.headers.ratelimit).toMatch(/^"10-in-60s";r=8;t=12, "1-in-10s";r=0;t=(1\d|20)$/);
      const refused = await get(url8, 'alice');
      expect(refused.status).toBe(429);
      expect(refused.headers.ratelimit).toMatch(/^"10-in-60s";r=7;t=18, "1-in-10s";r=0;t=(1\d|20)$/);

      const url7 = await serve(kind, both('draft-7'));
      expect((await get(url7, 'alice')).headers).toEqual({
        'ratelimit-policy': '10;w=60, 1;w=10',
        ratelimit: expect.stringMatching(/^limit=1, remaining=1, reset=(1\d|20)$/),
      });
      const url6 = await serve(kind, both('draft-6'));
      await get(url6, 'alice');
      const six = await get(url6, 'alice');
      expect(six.headers).toEqual({
        'ratelimit-policy': '10;w=60, 1;w=10',
        'ratelimit-limit': '1',
        'ratelimit-remaining': '0',
        'ratelimit-reset': expect.stringMatching(/^(1\d|20)$/),
      });
      const off = await serve(kind, [{ policy: perIp(), key: byUser, standardHeaders: false }]);
      expect((await get(off, 'alice')).headers).toEqual({});
    });
  },
);

describe('RateLimit headers: options, Redis and HTTP/2', () => {
  it('a Redis limit shows its decision; when Redis cannot be reached (fail-open) nothing is shown', async () => {
    const client = new Redis({ host: '127.0.0.1', port: 6379, lazyConnect: true });
    closers.push(() => client.quit());
    await client.connect();
    const live = redisRateLimiter({
      client,
      limit: 2,
      interval: 60_000,
      prefix: `test:hdr:${randomUUID()}:`,
      policies: false,
    });
    const url = await serve('express', [{ policy: live, key: byUser }]);
    expect((await get(url, 'alice')).headers).toEqual({
      'ratelimit-policy': '"2-in-60s";q=2;w=60',
      ratelimit: '"2-in-60s";r=1;t=30',
    });
    const gone = { status: 'end', call: async () => 0, once: () => {}, removeListener: () => {} };
    const open = redisRateLimiter({ client: gone, limit: 2, interval: 60_000, policies: false });
    const down = await serve('express', [{ policy: open, key: byUser }]);
    const answer = await get(down, 'alice');
    // Its decision (allowed, 0 left) says nothing of the limit: not shown as one spent.
    expect([answer.status, answer.headers]).toEqual([200, {}]);
  });

  it('a standardHeaders that is not a draft we write is refused when the middleware is made', () => {
    const policy = tokenBucket({ limit: 1, policies: false });
    expect(() => expressShedding({ policy, standardHeaders: 'draft-9' } as never)).toThrow(HoldfastConfigError);
    expect(() => expressShedding({ policy, standardHeaders: 'draft-9' } as never)).toThrow(/standardHeaders/);
  });

  it('over HTTP/2 (Fastify http2) on the allowed response and the 429', async () => {
    const app = Fastify({ http2: true });
    closers.push(() => app.close());
    await app.register(fastifyShedding, { policy: tokenBucket({ limit: 1, ...minute }), key: () => 'k' });
    app.get('/x', async () => 'ok');
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    const client = connect(url);
    closers.unshift(async () => void client.close());
    const headers = () =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        const req = client.request({ ':path': '/x' });
        let h: Record<string, unknown> = {};
        req.on('response', (got) => (h = got));
        req.on('data', () => {});
        req.on('end', () => resolve(h));
        req.on('error', reject);
      });
    expect(await headers()).toMatchObject({ ':status': 200, ratelimit: '"1-in-60s";r=0;t=60' });
    expect(await headers()).toMatchObject({ ':status': 429, ratelimit: '"1-in-60s";r=0;t=60', 'retry-after': '60' });
  });
});
