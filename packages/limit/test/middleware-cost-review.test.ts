import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { loadShedding as expressShedding } from '../src/express.js';
import { loadShedding as fastifyShedding } from '../src/fastify.js';
import { type LoadSheddingOptions, tokenBucket } from '../src/index.js';

type Req = { headers: Record<string, string | string[] | undefined> };
const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

const minute = (limit: number, burst?: number) => tokenBucket({ limit, burst, interval: 60_000, policies: false });
const costHeader = (req: Req) => Number(req.headers['x-cost']);

async function serve(kind: 'express' | 'fastify', options: LoadSheddingOptions<Req>): Promise<string> {
  if (kind === 'express') {
    const app = express();
    app.use(expressShedding(options as never));
    app.get('/x', (_req, res) => void res.send('ok'));
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    closers.push(() => new Promise((r) => server.close(r)));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }
  const app = Fastify();
  await app.register(fastifyShedding, options as never);
  app.get('/x', async () => 'ok');
  closers.push(() => app.close());
  return app.listen({ port: 0, host: '127.0.0.1' });
}

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}/x`, { headers });
  const text = await res.text();
  const body = res.headers.get('content-type')?.startsWith('application/problem+json') ? JSON.parse(text) : text;
  return { status: res.status, body, headers: res.headers };
}

describe.each(['express', 'fastify'] as const)('%s: cost with several limits', (kind) => {
  // The key may be async (a session looked up); a cost looked up the same way (a plan's price) was
  // a 500 for every request, and one that rejected was an unhandled rejection: a crash under
  // Node's default --unhandled-rejections=throw.
  it('an async cost is awaited; one that rejects fails the request, never unhandled', async () => {
    const limiter = minute(5);
    const unhandled: unknown[] = [];
    const note = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', note);
    try {
      const url = await serve(kind, {
        policy: limiter,
        key: () => 'k',
        cost: async (req) => {
          if (req.headers['x-cost'] === 'boom') throw new Error('plan lookup failed');
          return costHeader(req);
        },
      });
      expect((await get(url, { 'x-cost': '3' })).status).toBe(200);
      expect(limiter.take('k', 1).remaining).toBe(1);
      const failed = await get(url, { 'x-cost': 'boom' });
      expect(failed.status).toBe(500);
      await new Promise((r) => setImmediate(r));
      expect(unhandled).toEqual([]);
      expect(limiter.take('k', 1).remaining).toBe(0);
    } finally {
      process.off('unhandledRejection', note);
    }
  });
});
