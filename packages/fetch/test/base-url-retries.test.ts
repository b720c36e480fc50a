/**
 * With base URLs, a call is tried on another endpoint at once; once every endpoint was tried (one
 * base URL, or fewer than maxAttempts), the set runs again after a backoff, as a call without base
 * URLs is retried: a single base URL must not cost a service its retries. No call sends more than
 * maxAttempts tries, however many endpoints there are.
 */
import { describe, expect, it } from 'vitest';
import { perTest } from './upstream.js';

const { server, client, made } = perTest({ breaker: false, budget: false });

const fast = { backoff: { type: 'constant', initialDelay: 1 } } as const;

describe('retries with base URLs', () => {
  it('one base URL: a GET answered 503 twice is tried again there and gets its 200, as without base URLs', async () => {
    const s = await server((_, res, n) => {
      res.writeHead(n <= 2 ? 503 : 200);
      res.end(`try ${n}`);
    });
    for (const http of [client({ baseUrls: [`${s.url}/v1`], retry: fast }), client({ retry: fast })]) {
      const before = s.seen.length;
      const url = http === made[0] ? '/orders' : `${s.url}/v1/orders`;
      const res = await http(url);
      expect(res.status).toBe(200);
      if (http === made[0]) expect(s.seen.length - before).toBe(3);
    }
  });

  it('one base URL, always 503: exactly maxAttempts tries, and the last 503 is returned', async () => {
    const s = await server((_, res) => {
      res.writeHead(503);
      res.end();
    });
    const http = client({ baseUrls: [s.url], retry: { maxAttempts: 4, ...fast } });
    const res = await http('/x');
    expect([res.status, s.seen.length]).toEqual([503, 4]);
  });

  it('two base URLs, both 503: maxAttempts 3 tries in all, not 3 a run', async () => {
    const a = await server((_, res) => {
      res.writeHead(503);
      res.end();
    });
    const b = await server((_, res) => {
      res.writeHead(503);
      res.end();
    });
    const http = client({ baseUrls: [a.url, b.url], retry: fast });
    const res = await http('/x');
    expect([res.status, a.seen.length + b.seen.length]).toEqual([503, 3]);
  });

  it('a POST without a key is still sent once, whatever the set', async () => {
    const s = await server((_, res) => {
      res.writeHead(503);
      res.end();
    });
    const http = client({ baseUrls: [s.url], retry: fast });
    const res = await http('/pay', { method: 'POST', body: '{}' });
    expect([res.status, s.seen.length]).toEqual([503, 1]);
  });
});

describe('the backoff between runs of the set', () => {
  it('is the one given: a wait that would end past the total deadline is not made, the 503 returned at once', async () => {
    const s = await server((_, res) => {
      res.writeHead(503);
      res.end();
    });
    // A 60 s backoff against a 2 s total: without the backoff (retry's default 100 ms), 3 tries.
    // No jitter: full jitter waits anywhere in [0, 60 s], under 2 s one time in 30 (seen: 2 tries).
    const http = client({
      baseUrls: [s.url],
      retry: { backoff: { initialDelay: 60_000 }, jitter: 'none' },
      timeout: { total: 2_000 },
    });
    const res = await http('/x');
    expect([res.status, s.seen.length]).toEqual([503, 1]);
  });
});
