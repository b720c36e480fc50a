import type { AddressInfo } from 'node:net';
import express from 'express';
import fc from 'fast-check';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { loadShedding as expressShedding } from '../src/express.js';
import { loadShedding as fastifyShedding } from '../src/fastify.js';
import { shown } from '../src/http.js';
import { type LocalRateLimiter, slidingWindow, tokenBucket } from '../src/index.js';
import { handClock } from './time.js';

/** What the middleware hears of a limiter: its quota, coming back over `window` ms. */
const quotaOf = (l: LocalRateLimiter) => l as unknown as { quota: number; window: number; steady: number };

const limits = fc.record({
  kind: fc.constantFrom('tokenBucket' as const, 'slidingWindow' as const),
  limit: fc.integer({ min: 1, max: 20 }),
  // At most one unit per ms: the limiters' retryAfter is whole ms, the greedy client below waits that.
  interval: fc.oneof(fc.integer({ min: 20, max: 999 }), fc.integer({ min: 20, max: 5_000 })),
  burst: fc.option(fc.integer({ min: 1, max: 20 }), { nil: undefined }),
});

describe('RateLimit headers: windows that are not whole seconds', () => {
  // A limit of 5 per 100 ms was shown as "5-in-1s";q=5;w=1: a tenth of the rate it allows, in a
  // window in which it lets 50 through.
  it('the policy shown is what the limiter allows: q in w seconds, no more, and r and t hold', () => {
    fc.assert(
      fc.property(limits, ({ kind, limit, interval, burst }) => {
        const clock = handClock(0);
        const l =
          kind === 'tokenBucket'
            ? tokenBucket({ limit, interval, burst, clock, policies: false })
            : slidingWindow({ limit, interval, clock, policies: false });
        const { quota, window, steady } = quotaOf(l);
        const [q, w, r, t] = shown(quota, window, l.take('k'), steady);
        expect(Number.isInteger(w) && w >= 1 && Number.isInteger(q) && q >= 1).toBe(true);
        // Not more than it allows: a client that keeps to q in w seconds, on a fresh key, is never refused.
        const gap = (w * 1000) / q;
        for (let i = 1; i <= 3 * q; i++) {
          clock.t = i * gap;
          expect(l.take('k'), `unit ${i} at ${clock.t} ms`).toMatchObject({ allowed: true });
        }
        // Nor a window that does not exist: a client as greedy as the limiter lets it be gets, on a
        // fresh key, no more than q in w seconds beyond the quota it starts with (q rounded down
        // loses at most a tenth).
        const start = (clock.t = Math.ceil(clock.t) + 1000);
        let allowed = 0;
        for (let d = l.take('g'); ; d = l.take('g')) {
          if (d.allowed) allowed++;
          else clock.t += d.retryAfter;
          if (clock.t >= start + w * 1000) break;
        }
        expect(allowed).toBeLessThanOrEqual(quota + q / 0.9 + 1);
        // r more go at once; t seconds later the whole quota is back.
        const now = clock.t;
        const [, , left] = shown(quota, window, l.take('r'), steady);
        for (let i = 0; i < left; i++) expect(l.take('r').allowed).toBe(true);
        const [, , , back] = shown(quota, window, l.take('t'), steady);
        clock.t = now + back * 1000;
        expect(l.take('t', quota).allowed).toBe(true);
        expect(r).toBeLessThanOrEqual(q);
        expect(t).toBeGreaterThanOrEqual(0);
      }),
      { numRuns: 200 },
    );
  }, 30_000);

  it('5 per 100 ms is "50-in-1s"; r is what goes now (at most 5)', () => {
    const l = tokenBucket({ limit: 5, interval: 100, policies: false, clock: handClock(0) });
    const { quota, window } = quotaOf(l);
    expect(shown(quota, window, l.take('k'))).toEqual([50, 1, 4, 1]);
    // A sliding window kept at its limit takes one less each window (the previous one's weight
    // leaves no room for the last): 2 per 10 s is 1 in 10 s; 1 per second goes every other second.
    const sliding = (limit: number, interval: number) => {
      const s = slidingWindow({ limit, interval, policies: false, clock: handClock(0) });
      const { quota, window, steady } = quotaOf(s);
      return shown(quota, window, s.take('k'), steady).slice(0, 2);
    };
    expect(sliding(2, 10_000)).toEqual([1, 10]);
    expect(sliding(1, 1_000)).toEqual([1, 2]);
    expect(sliding(100, 60_000)).toEqual([99, 60]);
    expect(sliding(5, 100)).toEqual([40, 1]);
    // Whole seconds stay as they were.
    const m = tokenBucket({ limit: 3, interval: 60_000, policies: false, clock: handClock(0) });
    expect(shown(quotaOf(m).quota, quotaOf(m).window, m.take('k'))).toEqual([3, 60, 2, 20]);
  });
});

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

describe.each(['express', 'fastify'] as const)('%s: a 100 ms window in the headers', (kind) => {
  it('draft-8 and draft-6 show 50 in 1 s', async () => {
    const make = (standardHeaders: 'draft-8' | 'draft-6') => ({
      policy: tokenBucket({ limit: 5, interval: 100, policies: false }),
      key: () => 'k',
      standardHeaders,
    });
    const urls: string[] = [];
    for (const draft of ['draft-8', 'draft-6'] as const) {
      if (kind === 'express') {
        const app = express();
        app.use(expressShedding(make(draft)));
        app.get('/x', (_req, res) => void res.send('ok'));
        const server = app.listen(0, '127.0.0.1');
        await new Promise((r) => server.once('listening', r));
        closers.push(() => new Promise((r) => server.close(r)));
        urls.push(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
      } else {
        const app = Fastify();
        await app.register(fastifyShedding, make(draft));
        app.get('/x', async () => 'ok');
        closers.push(() => app.close());
        urls.push(await app.listen({ port: 0, host: '127.0.0.1' }));
      }
    }
    const [eight, six] = await Promise.all(urls.map((u) => fetch(`${u}/x`)));
    expect(eight?.headers.get('ratelimit-policy')).toBe('"50-in-1s";q=50;w=1');
    expect(eight?.headers.get('ratelimit')).toBe('"50-in-1s";r=4;t=1');
    expect(six?.headers.get('ratelimit-policy')).toBe('50;w=1');
    expect(six?.headers.get('ratelimit-limit')).toBe('50');
  });
});
