import { connect } from 'node:http2';
import { pipeline } from '@holdfast/core';
import express from 'express';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { loadShedding } from '../src/express.js';
import { loadShedding as fastifyShedding } from '../src/fastify.js';
import { slidingWindow, tokenBucket } from '../src/index.js';

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

describe('RateLimit headers: two limits of one quota and window', () => {
  // Two limits of 2 in 60 s (a token bucket and a sliding window, both per user) were two items
  // both named "2-in-60s": a client reading RateLimit by policy name got either one.
  it('draft-8 names each policy once, showing the one closest to refusing', async () => {
    const minute = { interval: 60_000, policies: false as const };
    // Both shown as "1-in-60s" (a sliding window of 2 kept at its limit lets 1 through a window).
    const a = tokenBucket({ limit: 1, ...minute });
    const b = slidingWindow({ limit: 2, ...minute });
    b.take('u'); // b is one call further along for user u
    const app = express();
    app.use(loadShedding({ policy: pipeline(a, b), key: (req) => req.headers['x-user'] as string }));
    app.get('/x', (_req, res) => void res.send('ok'));
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    closers.push(() => new Promise((r) => server.close(r)));
    const { port } = server.address() as { port: number };
    const res = await fetch(`http://127.0.0.1:${port}/x`, { headers: { 'x-user': 'u' } });
    await res.text();
    expect(res.status).toBe(200);
    const names = (h: string | null) =>
      String(h)
        .split(', ')
        .map((item) => item.split(';')[0]);
    expect(names(res.headers.get('ratelimit-policy'))).toEqual(['"1-in-60s"']);
    expect(res.headers.get('ratelimit')).toMatch(/^"1-in-60s";r=0;t=\d+$/);
  });
});
