import { HoldfastConfigError, type Policy } from '@holdfast/core';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { bulkhead, type LoadSheddingOptions, type LocalRateLimiter, slidingWindow, tokenBucket } from '../src/index.js';
import { redisRateLimiter } from '../src/redis.js';
import { closeServers, type Req, serve } from './serve.js';

type Draft = 'draft-6' | 'draft-7' | 'draft-8';

/** An Integer as RFC 8941 (structured fields) allows it, not negative: at most 15 digits. */
const INT = /^(0|[1-9]\d{0,14})$/;

/**
 * Every rate-limit header (and Retry-After) of `headers`, checked against the grammar of `draft`:
 * each number an integer of at most 15 digits, q and w at least 1. Returns what was wrong.
 */
function malformed(headers: Headers, draft: Draft): string[] {
  const wrong: string[] = [];
  const ints = (name: string, value: string, re: RegExp, positive: number[] = []) => {
    const m = re.exec(value);
    if (m === null) return void wrong.push(`${name}: ${value}`);
    for (let i = 1; i < m.length; i++) {
      const n = m[i] as string;
      if (!INT.test(n) || (positive.includes(i) && Number(n) < 1)) wrong.push(`${name}: ${value}`);
    }
  };
  const items = (name: string, value: string, re: RegExp, positive: number[] = []) => {
    for (const item of value.split(', ')) ints(name, item, re, positive);
  };
  for (const [name, value] of headers) {
    if (name === 'retry-after' || name.startsWith('x-ratelimit-')) ints(name, value, /^(\d+)$/);
    else if (name === 'ratelimit-limit') ints(name, value, /^(\d+)$/, [1]);
    else if (name === 'ratelimit-remaining' || name === 'ratelimit-reset') ints(name, value, /^(\d+)$/);
    else if (name === 'ratelimit-policy') {
      if (draft === 'draft-8') items(name, value, /^"(\d+)-in-(\d+)s";q=(\d+);w=(\d+)$/, [1, 2, 3, 4]);
      else items(name, value, /^(\d+);w=(\d+)$/, [1, 2]);
    } else if (name === 'ratelimit') {
      if (draft === 'draft-8') items(name, value, /^"(\d+)-in-(\d+)s";r=(\d+);t=(\d+)$/, [1, 2]);
      else ints(name, value, /^limit=(\d+), remaining=(\d+), reset=(\d+)$/, [1]);
    }
  }
  return wrong;
}

/** The options a limiter is made with, from sane to absurd. */
const limits = fc.record({
  kind: fc.constantFrom('tokenBucket' as const, 'slidingWindow' as const),
  limit: fc.oneof(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 1, max: 1e9 }), fc.constant(1e9)),
  interval: fc.oneof(
    fc.integer({ min: 1, max: 120_000 }),
    fc.double({ min: 1, max: 1e9, noNaN: true }),
    fc.double({ min: 1e9, max: 1e25, noNaN: true }),
    fc.double({ min: Number.MIN_VALUE, max: 1, noNaN: true }),
    fc.constantFrom(Number.MIN_VALUE, 1e-12, 1e-9, 0.5, 1, 1e15, 1e20, Number.MAX_VALUE),
  ),
  burst: fc.option(fc.oneof(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 1, max: 1e9 })), { nil: undefined }),
  cost: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 20 }), fc.integer({ min: 1, max: 1e9 })),
});

/** Makes the limiter, or returns the construction error (which must name `interval` and its bound). */
function make(o: typeof limits extends fc.Arbitrary<infer T> ? T : never) {
  const common = { limit: o.limit, interval: o.interval, policies: false as const };
  try {
    return o.kind === 'tokenBucket' ? tokenBucket({ ...common, burst: o.burst }) : slidingWindow(common);
  } catch (error) {
    expect(error).toBeInstanceOf(HoldfastConfigError);
    expect((error as HoldfastConfigError).issues[0]?.path).toBe('interval');
    expect((error as Error).message).toMatch(/interval.*(at least 1 ms|at most)/s);
    return undefined;
  }
}

describe('every header the middleware writes is well-formed, whatever the limit (property)', () => {
  // One server per framework and draft (legacy headers on); each run hands it a fresh limiter.
  let current: { policy: Policy; cost: number } = { policy: bulkhead({ maxConcurrent: 1, policies: false }), cost: 1 };
  const urls = new Map<string, string>();
  beforeAll(async () => {
    for (const kind of ['express', 'fastify'] as const) {
      for (const draft of ['draft-6', 'draft-7', 'draft-8'] as const) {
        const options: LoadSheddingOptions<Req> = {
          policy: () => current.policy,
          key: () => 'k',
          cost: () => current.cost,
          standardHeaders: draft,
          legacyHeaders: true,
        };
        urls.set(`${kind} ${draft}`, await serve(kind, options));
      }
    }
  }, 30_000);
  afterAll(closeServers);

  it('RateLimit-Policy, RateLimit, RateLimit-*, X-RateLimit-* and Retry-After hold integers of 15 digits at most', async () => {
    let made = 0;
    await fc.assert(
      fc.asyncProperty(
        limits,
        fc.constantFrom('express', 'fastify'),
        fc.constantFrom('draft-6' as const, 'draft-7' as const, 'draft-8' as const),
        async (o, kind, draft) => {
          const limiter = make(o);
          if (limiter === undefined) return;
          made++;
          current = { policy: limiter, cost: o.cost };
          for (let i = 0; i < 3; i++) {
            const res = await fetch(`${urls.get(`${kind} ${draft}`)}/x`);
            await res.text();
            expect(malformed(res.headers, draft), `${JSON.stringify(o)} ${kind} ${draft}`).toEqual([]);
            // Decided by the limiter: its headers are there (not a vacuous pass).
            if (res.status !== 500) expect(res.headers.get('x-ratelimit-limit')).not.toBeNull();
          }
        },
      ),
      { numRuns: 120 },
    );
    // Most runs made a limiter and sent requests through it (not a property of refusals alone).
    expect(made).toBeGreaterThan(40);
  }, 120_000);
});

describe('absurd intervals are refused when the limiter is made, naming interval and the bound', () => {
  it.each([
    ['tokenBucket', () => tokenBucket({ limit: 1, interval: 1e20, policies: false }), /at most 1e15 ms/],
    [
      'tokenBucket, its burst',
      () => tokenBucket({ limit: 1, burst: 1e9, interval: 1e7, policies: false }),
      /x burst \/ limit must be at most 1e15 ms \(is 10000000000000000\)/,
    ],
    ['slidingWindow', () => slidingWindow({ limit: 1, interval: 1e20, policies: false }), /at most 1e15 ms/],
    ['tokenBucket', () => tokenBucket({ limit: 1, interval: 1e-10, policies: false }), /at least 1 ms/],
    ['slidingWindow', () => slidingWindow({ limit: 5, interval: 0.5, policies: false }), /at least 1 ms/],
  ])('%s', (_name, build, bound) => {
    expect(build).toThrow(HoldfastConfigError);
    expect(build).toThrow(/interval/);
    expect(build).toThrow(bound);
  });

  it('redisRateLimiter below 1 ms too (above, its 1e15 ms bound stands)', () => {
    const client = { status: 'end', call: async () => 0, once: () => {}, removeListener: () => {} };
    const build = (interval: number) => () => redisRateLimiter({ client, limit: 1, interval, policies: false });
    expect(build(1e-10)).toThrow(/interval.*at least 1 ms/s);
    expect(build(1e20)).toThrow(/interval/);
    expect(build(1)).not.toThrow();
  });

  it('the bounds themselves are allowed, and headers at them are well-formed', async () => {
    const url = await serve('express', [
      { policy: tokenBucket({ limit: 1, interval: 1e15, policies: false }), key: () => 'k', legacyHeaders: true },
      { policy: slidingWindow({ limit: 1e9, interval: 1, policies: false }), key: () => 'k', legacyHeaders: true },
    ]);
    const res = await fetch(`${url}/x`);
    await res.text();
    expect(res.status).toBe(200);
    expect(malformed(res.headers, 'draft-8')).toEqual([]);
    expect(res.headers.get('ratelimit-policy')).toBe(
      '"1-in-1000000000000s";q=1;w=1000000000000, "999999999000-in-1s";q=999999999000;w=1',
    );
  });
});

// What a Redis decision says comes from the server (its clock stepped back, a key another limiter
// or a person wrote), not from the options: a wait of 1e20 ms was t=100000000000000000.
it('a Redis decision past any bound still shows 15 digits at most', async () => {
  for (const reply of [-1e20, 1e18]) {
    const client = { status: 'ready', call: async () => reply, once() {}, removeListener() {} };
    const policy = redisRateLimiter({ client, limit: 10, interval: 60_000, policies: false });
    const url = await serve('express', { policy, key: () => 'k', legacyHeaders: true });
    const res = await fetch(`${url}/x`);
    await res.text();
    expect(res.status).toBe(reply < 0 ? 429 : 200);
    expect(malformed(res.headers, 'draft-8')).toEqual([]);
    expect(res.headers.get('ratelimit')).toBe(
      // A reply past what the key holds shows what it holds (see header-give-back-review.test.ts).
      reply < 0 ? '"10-in-60s";r=0;t=999999999999999' : '"10-in-60s";r=9;t=6',
    );
  }
  await closeServers();
});

describe.each(['express', 'fastify'] as const)('%s: X-RateLimit-Limit, -Remaining and -Reset agree', (kind) => {
  afterEach(closeServers);

  /** X-RateLimit-Limit, -Remaining and -Reset (and the status) of one GET. */
  const legacyOf = async (url: string) => {
    const res = await fetch(`${url}/x`);
    await res.text();
    const h = (n: string) => Number(res.headers.get(`x-ratelimit-${n}`));
    return { status: res.status, limit: h('limit'), remaining: h('remaining'), reset: h('reset') };
  };

  // As express-rate-limit: the requests the window allows; a fresh client's first request leaves
  // Limit - 1. A token bucket of 10 a second with a burst of 1 said Limit 10 (9 of 10 sent at once
  // refused); a sliding window of 100 a minute said Limit 99 and Remaining 99 after one request.
  it.each([
    [
      'a token bucket, burst below the rate',
      () => tokenBucket({ limit: 10, interval: 1000, burst: 1, policies: false }),
      1,
    ],
    ['5 per 100 ms', () => tokenBucket({ limit: 5, interval: 100, policies: false }), 5],
    ['a sliding window of 100 a minute', () => slidingWindow({ limit: 100, interval: 60_000, policies: false }), 100],
    [
      'a token bucket, burst above the rate',
      () => tokenBucket({ limit: 1, interval: 60_000, burst: 10, policies: false }),
      10,
    ],
  ])('%s: Limit is what goes at once on a fresh key', async (_name, policy, expected) => {
    const url = await serve(kind, { policy: policy(), key: () => 'k', legacyHeaders: true });
    const first = await legacyOf(url);
    expect([first.limit, first.remaining]).toEqual([expected, expected - 1]);
  });

  it('property: Remaining sent at once all go; none is ever past Limit', async () => {
    let current: LocalRateLimiter = tokenBucket({ limit: 1, policies: false });
    const url = await serve(kind, {
      policy: () => current,
      key: () => 'k',
      legacyHeaders: true,
      standardHeaders: false,
    });
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('tokenBucket' as const, 'slidingWindow' as const),
        fc.integer({ min: 1, max: 12 }),
        fc.option(fc.integer({ min: 1, max: 12 }), { nil: undefined }),
        fc.integer({ min: 1, max: 5 }),
        async (which, limit, burst, spent) => {
          // An hour: nothing comes back while the test runs.
          const minute = { limit, interval: 3_600_000, policies: false as const };
          current = which === 'tokenBucket' ? tokenBucket({ ...minute, burst }) : slidingWindow(minute);
          // What a key holds: a fresh key's remaining after one unit, and that unit.
          const held = current.take('probe').remaining + 1;
          for (let i = 0; i < Math.min(spent, held) - 1; i++) current.take('k');
          const first = await legacyOf(url);
          expect(first.status).toBe(200);
          expect(first.limit).toBe(held);
          expect(first.remaining).toBeLessThanOrEqual(first.limit - 1);
          for (let i = 0; i < first.remaining; i++) {
            const next = await legacyOf(url);
            expect(next.status).toBe(200);
            expect(next.limit).toBe(first.limit);
          }
          expect((await legacyOf(url)).status).toBe(429);
        },
      ),
      { numRuns: 40 },
    );
  }, 60_000);
});

describe.each(['express', 'fastify'] as const)('%s: two middlewares with different standardHeaders', (kind) => {
  afterEach(closeServers);
  const minute = (limit: number) => tokenBucket({ limit, interval: 60_000, policies: false });
  /** The rate-limit headers of one GET. */
  const headersOf = async (url: string) => {
    const res = await fetch(`${url}/x`);
    await res.text();
    return Object.fromEntries([...res.headers].filter(([n]) => /ratelimit/.test(n)));
  };

  // Before: draft-8 then draft-6 wrote RateLimit in draft 8 (the first limit only), RateLimit-Policy
  // in draft 6 (both) and RateLimit-Limit: a mix no client can read.
  it('the later one writes in the earlier one style, listing both limits', async () => {
    const url = await serve(kind, [
      { policy: minute(10), key: () => 'k', standardHeaders: 'draft-8' },
      { policy: minute(2), key: () => 'k', standardHeaders: 'draft-6' },
    ]);
    expect(await headersOf(url)).toEqual({
      'ratelimit-policy': '"10-in-60s";q=10;w=60, "2-in-60s";q=2;w=60',
      ratelimit: '"10-in-60s";r=9;t=6, "2-in-60s";r=1;t=30',
    });
    const seven = await serve(kind, [
      { policy: minute(10), key: () => 'k', standardHeaders: 'draft-7' },
      { policy: minute(2), key: () => 'k', standardHeaders: 'draft-8' },
    ]);
    expect(await headersOf(seven)).toEqual({
      'ratelimit-policy': '10;w=60, 2;w=60',
      ratelimit: 'limit=2, remaining=1, reset=30',
    });
  });

  // A limit the request met is a limit it can be refused by: shown, whichever middleware it is in,
  // once one asked for headers (as X-RateLimit-* were already).
  it('one with standardHeaders false, before or after: its limit is listed in the other one draft', async () => {
    for (const order of [
      ['draft-6', false],
      [false, 'draft-6'],
    ] as const) {
      const url = await serve(kind, [
        { policy: minute(10), key: () => 'k', standardHeaders: order[0] },
        { policy: minute(2), key: () => 'k', standardHeaders: order[1] },
      ]);
      expect(await headersOf(url), String(order)).toEqual({
        'ratelimit-policy': '10;w=60, 2;w=60',
        'ratelimit-limit': '2',
        'ratelimit-remaining': '1',
        'ratelimit-reset': '30',
      });
    }
    const none = await serve(kind, [
      { policy: minute(10), key: () => 'k', standardHeaders: false },
      { policy: minute(2), key: () => 'k', standardHeaders: false },
    ]);
    expect(await headersOf(none)).toEqual({});
  });
});
