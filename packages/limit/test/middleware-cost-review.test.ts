import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { pipeline } from '@holdfast/core';
import express from 'express';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from '../../../test/support/redis.js';
import { loadShedding as expressShedding } from '../src/express.js';
import { shown } from '../src/http.js';
import { bulkhead, type LocalRateLimiter, slidingWindow, tokenBucket } from '../src/index.js';
import { redisRateLimiter } from '../src/redis.js';
import { closeLater, closeServers, type Req, serve } from './serve.js';
import { handClock } from './time.js';

afterEach(closeServers);

const minute = (limit: number, burst?: number) => tokenBucket({ limit, burst, interval: 60_000, policies: false });
const costHeader = (req: Req) => Number(req.headers['x-cost']);

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}/x`, { headers });
  const text = await res.text();
  const body = res.headers.get('content-type')?.startsWith('application/problem+json') ? JSON.parse(text) : text;
  return { status: res.status, body, headers: res.headers };
}

describe.each(['express', 'fastify'] as const)('%s: cost with several limits', (kind) => {
  // README: a bad cost "gets 500 problem+json ... and takes nothing". A cost the first limit holds
  // (10) but the second does not (3) was taken from the first before the second said no.
  it('a cost the second limit cannot take is a 500 that takes nothing from the first', async () => {
    const perUser = minute(10);
    const total = minute(3);
    const url = await serve(kind, { policy: pipeline(perUser, total), key: () => 'k', cost: costHeader });
    const answer = await get(url, { 'x-cost': '5' });
    expect(answer.body).toMatchObject({ status: 500, type: 'urn:holdfast:problem:bad-cost' });
    expect(perUser.take('k').remaining).toBe(9);
  });

  // A request the second limit refuses never ran: what the first took for it is given back, so the
  // outcome does not hang on the order of the pipeline (the first refusing takes nothing from the second).
  it('a request a later limit refuses gives back what the earlier ones took (token bucket, sliding window)', async () => {
    const perUser = minute(10);
    const window = slidingWindow({ limit: 10, interval: 60_000, policies: false });
    const total = tokenBucket({ limit: 2, interval: 60_000, key: () => 'all', policies: false });
    const url = await serve(kind, { policy: pipeline(perUser, window, total), key: () => 'k', cost: costHeader });
    expect((await get(url, { 'x-cost': '2' })).status).toBe(200);
    const refused = await get(url, { 'x-cost': '2' });
    expect(refused.status).toBe(429);
    expect(perUser.take('k').remaining).toBe(7);
    expect(window.take('k').remaining).toBe(7);
  });

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

// A bulkhead after the limit that sheds (503) a request the limit let through: the same.
it('express: a request a bulkhead after the limit sheds gives back what the limit took', async () => {
  const perUser = minute(10);
  const gate = bulkhead({ maxConcurrent: 1, maxQueue: 0 });
  let hold = () => {};
  const holding = new Promise<void>((started) => {
    const app = express();
    app.use(expressShedding({ policy: pipeline(perUser, gate), key: () => 'k', cost: () => 3 }));
    app.get('/x', (_req, res) => {
      hold = () => void res.send('ok');
      started();
    });
    const server = app.listen(0, '127.0.0.1');
    closeLater(() => new Promise((r) => server.close(r)));
    server.once('listening', () => {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      urls.push(url);
      first = fetch(`${url}/x`);
    });
  });
  const urls: string[] = [];
  let first: Promise<Response> | undefined;
  await holding;
  expect((await get(urls[0] as string)).status).toBe(503);
  hold();
  expect((await first)?.status).toBe(200);
  // 3 for the first; the shed request's 3 came back.
  expect(perUser.take('k', 1).remaining).toBe(6);
});

// On Redis: cost goes to take(key, cost), a cost the Redis limit cannot take is the same 500, and
// what the Redis limit took for a request a later limit refused is given back (its refund script).
describe.skipIf(!redisAvailable())('express: cost on a Redis limit', () => {
  let server: RedisServer;
  let client: Redis;
  beforeAll(async () => {
    [server] = (await startRedis(1)) as [RedisServer];
    client = new Redis(server.port, server.host, { maxRetriesPerRequest: 1 });
    client.on('error', () => {});
  }, 30_000);
  afterAll(async () => {
    client.disconnect();
    await stopAllRedis();
  });

  it('takes the cost, refuses a cost past its burst with a 500, and gives back for a later refusal', async () => {
    const shared = redisRateLimiter({ client, limit: 10, interval: 60_000, policies: false, prefix: 'review:cost:' });
    const total = tokenBucket({ limit: 3, interval: 60_000, key: () => 'all', policies: false });
    const app = express();
    app.use(expressShedding({ policy: pipeline(shared, total), key: () => 'k', cost: costHeader }));
    app.get('/x', (_req, res) => void res.send('ok'));
    const listening = app.listen(0, '127.0.0.1');
    await new Promise((r) => listening.once('listening', r));
    closeLater(() => new Promise((r) => listening.close(r)));
    const url = `http://127.0.0.1:${(listening.address() as AddressInfo).port}`;
    const first = await get(url, { 'x-cost': '2' });
    expect([first.status, first.headers.get('ratelimit')]).toEqual([200, '"10-in-60s";r=8;t=12']);
    const key = (shared as unknown as { keyOf(k: string): string }).keyOf('k');
    const afterFirst = Number(await client.get(key));
    expect((await get(url, { 'x-cost': '11' })).body).toMatchObject({
      status: 500,
      type: 'urn:holdfast:problem:bad-cost',
    });
    // Taken by Redis (2 more), refused by the total (1 left of 3): given back.
    expect((await get(url, { 'x-cost': '2' })).status).toBe(429);
    // The give-back reads the server's clock first, then sends its script: it may reach Redis after
    // the 429 reached the client (the fresh-clone CI of 6d99a55: 5 left). Its TAT back where the
    // first request left it, then: 10 - 2 - 1.
    const deadline = Date.now() + 5_000;
    while (Number(await client.get(key)) > afterFirst + 1 && Date.now() < deadline) await sleep(10);
    expect((await shared.take('k', 1)).remaining).toBe(7);
  }, 15_000);
});

// The give-back is a call of its own: on a connection gone since the decision it would wait in
// ioredis' offline queue (one per refused request, for as long as the outage lasts).
it('express: no give-back is sent to Redis on a client that is not ready; the limit errs strict', async () => {
  const sent: string[] = [];
  const client = {
    status: 'ready',
    call: async (command: string) => {
      sent.push(command);
      // Allowed, 5 left: and the connection drops as the reply comes.
      client.status = 'reconnecting';
      return 5;
    },
    once() {},
    removeListener() {},
  };
  const shared = redisRateLimiter({ client, limit: 10, interval: 60_000, policies: false });
  const total = tokenBucket({ limit: 1, interval: 60_000, key: () => 'all', policies: false });
  total.take();
  const app = express();
  app.use(expressShedding({ policy: pipeline(shared, total), key: () => 'k' }));
  app.get('/x', (_req, res) => void res.send('ok'));
  const listening = app.listen(0, '127.0.0.1');
  await new Promise((r) => listening.once('listening', r));
  closeLater(() => new Promise((r) => listening.close(r)));
  expect((await get(`http://127.0.0.1:${(listening.address() as AddressInfo).port}`)).status).toBe(429);
  expect(sent).toEqual(['evalsha']);
});

// README: q in w is a rate spread evenly, not q at once each w (what the headers do not promise).
it('q sent at once each w seconds is refused in part: a burst below q, a sliding window', () => {
  const bursts = (l: LocalRateLimiter, clock: { t: number }) => {
    const m = l as unknown as { quota: number; window: number; steady: number };
    const [q, w] = shown(m.quota, m.window, l.take('x'), m.steady);
    const refused: number[] = [];
    for (let round = 0; round < 4; round++) {
      clock.t = 30_001 + round * w * 1000;
      let no = 0;
      for (let i = 0; i < q; i++) if (!l.take('k').allowed) no++;
      refused.push(no);
    }
    return [`"${q}-in-${w}s"`, refused];
  };
  let clock = handClock(30_000);
  expect(bursts(tokenBucket({ limit: 10, interval: 1000, burst: 1, clock, policies: false }), clock)).toEqual([
    '"10-in-1s"',
    [9, 9, 9, 9],
  ]);
  clock = handClock(30_000);
  expect(bursts(slidingWindow({ limit: 100, interval: 60_000, clock, policies: false }), clock)).toEqual([
    '"99-in-60s"',
    [0, 49, 24, 37],
  ]);
  // Spread evenly, none is (test/ratelimit-window.test.ts checks that over random limits).
});

// Two middlewares on one request (the app's and a route's), the first with legacyHeaders: the
// second limit's decision left X-RateLimit-* at the first's, and a client keeping to its
// Remaining was refused by the second.
it('express: X-RateLimit-* follow every limit the request met, whichever middleware asked for them', async () => {
  const app = express();
  app.use(expressShedding({ policy: minute(10), key: () => 'k', legacyHeaders: true }));
  app.use('/x', expressShedding({ policy: minute(2), key: () => 'k' }));
  app.get('/x', (_req, res) => void res.send('ok'));
  const listening = app.listen(0, '127.0.0.1');
  await new Promise((r) => listening.once('listening', r));
  closeLater(() => new Promise((r) => listening.close(r)));
  const answer = await get(`http://127.0.0.1:${(listening.address() as AddressInfo).port}`);
  expect(answer.headers.get('ratelimit')).toBe('"10-in-60s";r=9;t=6, "2-in-60s";r=1;t=30');
  expect([answer.headers.get('x-ratelimit-limit'), answer.headers.get('x-ratelimit-remaining')]).toEqual(['2', '1']);
});

// A sliding window kept at its limit leaves room for `limit - cost` a window, not `limit - 1`:
// with cost 5, a client keeping to "99-in-60s" in units was refused 15 times in 395, with cost
// 50, 19 times in 39. The rate shown is the one the request's cost can keep to.
describe('a sliding window with a cost: the rate shown is one a client of that cost keeps to', () => {
  const DECIDED = Symbol.for('holdfast.limit.decided');
  /** q and w the headers show for a call of `cost` on `l` (what the middleware hears). */
  const policyOf = async (l: LocalRateLimiter, cost: number) => {
    let seen: [number, number] = [0, 0];
    const hear = (_l: unknown, quota: number, window: number, d: { remaining: number; reset: number }, s: number) => {
      const [q, w] = shown(quota, window, d, s);
      seen = [q, w];
    };
    await l.execute(async () => {}, { key: 'probe', cost, [DECIDED]: hear } as never);
    return seen;
  };

  it('100 a minute at cost 5 is "95-in-60s"', async () => {
    const url = await serve('express', {
      policy: slidingWindow({ limit: 100, interval: 60_000, policies: false }),
      key: () => 'k',
      cost: () => 5,
    });
    expect((await get(url)).headers.get('ratelimit-policy')).toBe('"95-in-60s";q=95;w=60');
  });

  it('property: a client keeping to q in w, in requests of its cost, is never refused', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 30 }),
        fc.integer({ min: 1, max: 30 }),
        fc.integer({ min: 20, max: 5_000 }),
        fc.integer({ min: 0, max: 10_000 }),
        async (limit, wanted, interval, start) => {
          const cost = Math.min(wanted, limit);
          const clock = handClock(start);
          const l = slidingWindow({ limit, interval, clock, policies: false });
          const [q, w] = await policyOf(l, cost);
          const gap = (cost * w * 1000) / q;
          for (let i = 0; i < 60; i++) {
            clock.t = start + i * gap;
            expect(
              l.take('k', cost).allowed,
              `${cost} of ${limit} per ${interval} ms, "${q}-in-${w}s", request ${i}`,
            ).toBe(true);
          }
        },
      ),
      { numRuns: 500 },
    );
  }, 30_000);
});
