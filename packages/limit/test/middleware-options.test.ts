import { HoldfastConfigError } from '@holdfast/core';
import { afterEach, describe, expect, it } from 'vitest';
import { loadShedding as expressShedding } from '../src/express.js';
import { type LocalRateLimiter, tokenBucket } from '../src/index.js';
import { closeServers, type Req, serve } from './serve.js';

afterEach(closeServers);

const minute = (limit: number) => tokenBucket({ limit, interval: 60_000, policies: false });
const header = (name: string) => (req: Req) => req.headers[name] as string | undefined;

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}/x`, { headers });
  const text = await res.text();
  const limit: Record<string, string> = {};
  for (const [name, value] of res.headers) if (/ratelimit|retry-after/.test(name)) limit[name] = value;
  const body = res.headers.get('content-type')?.startsWith('application/problem+json') ? JSON.parse(text) : text;
  return { status: res.status, type: res.headers.get('content-type'), limit, body };
}

describe.each(['express', 'fastify'] as const)('%s: middleware options', (kind) => {
  // A key function that returned '' (an empty X-Api-Key header) counted the request under the
  // limiter's defaultKey, '' too: every request without a key shared its limit with it, and it got
  // RateLimit headers that told it what the others had spent.
  it('an empty key is a bad request: 400 problem+json that names it; nothing taken, nothing shown', async () => {
    const limiter = minute(5);
    const url = await serve(kind, { policy: limiter, key: header('x-api-key') });
    const answer = await get(url, { 'x-api-key': '' });
    expect(answer.status).toBe(400);
    expect(answer.type).toMatch(/^application\/problem\+json/);
    expect(answer.body).toMatchObject({ status: 400, type: 'urn:holdfast:problem:bad-key', code: 'E_BAD_KEY' });
    expect(answer.body.detail).toMatch(/key/);
    expect(answer.limit).toEqual({});
    // The default key's limit is whole.
    expect(limiter.take().remaining).toBe(4);
    // An async key that comes back empty, too.
    const later = await serve(kind, { policy: minute(5), key: async (req) => header('x-api-key')(req) });
    expect((await get(later, { 'x-api-key': '' })).status).toBe(400);
    // A real key goes on as before.
    expect((await get(url, { 'x-api-key': 'k1' })).status).toBe(200);
  });

  it('cost(req): a request counts that many units, under its key', async () => {
    const limiter = minute(5);
    const url = await serve(kind, { policy: limiter, key: () => 'k', cost: (req) => Number(req.headers['x-cost']) });
    const first = await get(url, { 'x-cost': '3' });
    expect([first.status, first.limit.ratelimit]).toEqual([200, '"5-in-60s";r=2;t=36']);
    const second = await get(url, { 'x-cost': '3' });
    expect(second.status).toBe(429);
    expect((await get(url, { 'x-cost': '2' })).status).toBe(200);
  });

  // A cost from user code that is not a whole number from 1 to what the limiter holds is a server
  // bug: never a silent allow, nor the framework's HTML 500.
  it.each(['abc', '0', '-1', 'Infinity', '1.5', '6'])(
    'a bad cost (%s) is a 500 problem naming cost; nothing taken',
    async (cost) => {
      const limiter: LocalRateLimiter = minute(5);
      const url = await serve(kind, { policy: limiter, key: () => 'k', cost: (req) => Number(req.headers['x-cost']) });
      const answer = await get(url, { 'x-cost': cost });
      expect(answer.status).toBe(500);
      expect(answer.type).toMatch(/^application\/problem\+json/);
      expect(answer.body).toMatchObject({ status: 500, type: 'urn:holdfast:problem:bad-cost', code: 'E_CONFIG' });
      expect(answer.body.detail).toMatch(/cost/);
      expect(limiter.take('k').remaining).toBe(4);
    },
  );

  it('legacyHeaders: X-RateLimit-Limit, -Remaining and -Reset (Unix seconds) as an opt-in', async () => {
    const off = await serve(kind, { policy: minute(3), key: () => 'k' });
    expect(Object.keys((await get(off)).limit).filter((n) => n.startsWith('x-'))).toEqual([]);
    const url = await serve(kind, { policy: minute(3), key: () => 'k', legacyHeaders: true });
    const before = Math.floor(Date.now() / 1000);
    const answer = await get(url);
    expect(answer.limit).toMatchObject({
      'x-ratelimit-limit': '3',
      'x-ratelimit-remaining': '2',
      ratelimit: '"3-in-60s";r=2;t=20',
    });
    const reset = Number(answer.limit['x-ratelimit-reset']);
    expect(reset).toBeGreaterThanOrEqual(before + 20);
    expect(reset).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000) + 21);
    // Alone.
    const only = await serve(kind, { policy: minute(3), key: () => 'k', legacyHeaders: true, standardHeaders: false });
    expect(Object.keys((await get(only)).limit).sort()).toEqual([
      'x-ratelimit-limit',
      'x-ratelimit-remaining',
      'x-ratelimit-reset',
    ]);
  });
});

describe('middleware options are checked when it is made', () => {
  it('cost must be a function; legacyHeaders a boolean', () => {
    const policy = minute(1);
    expect(() => expressShedding({ policy, cost: 2 } as never)).toThrow(HoldfastConfigError);
    expect(() => expressShedding({ policy, cost: 2 } as never)).toThrow(/cost/);
    expect(() => expressShedding({ policy, legacyHeaders: 'yes' } as never)).toThrow(/legacyHeaders/);
  });
});
