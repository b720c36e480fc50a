import { connect } from 'node:http2';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { loadShedding as fastifyShedding } from '../src/fastify.js';
import { tokenBucket } from '../src/index.js';

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

describe('RateLimit headers: hostile review', () => {
  // Http2ServerResponse.setHeader returns undefined (not the response): a chained
  // setHeader(...).setHeader(...) threw, and every request limited under draft-6 got a 500.
  it.each(['draft-6', 'draft-7', 'draft-8'] as const)('%s over HTTP/2 (Fastify http2): 200 then 429', async (draft) => {
    const app = Fastify({ http2: true });
    closers.push(() => app.close());
    const policy = tokenBucket({ limit: 1, interval: 60_000, policies: false });
    await app.register(fastifyShedding, { policy, key: () => 'k', standardHeaders: draft });
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
    const first = await headers();
    expect(first[':status']).toBe(200);
    const second = await headers();
    expect(second[':status']).toBe(429);
    if (draft === 'draft-6') expect(second).toMatchObject({ 'ratelimit-limit': '1', 'ratelimit-remaining': '0' });
    else expect(String(second.ratelimit)).toMatch(/r=0|remaining=0/);
  });
});
