/**
 * Findings of the outside review of issue 15 that concern @holdfast/fetch (moved here from
 * test/review-faces.test.ts once fixed), with the cases around them: options refused where they
 * are given, redirects fetch refuses, a Retry-After past the deadline, wrappers that keep their
 * function's identity, and the body's deadline timer.
 */
import { createBus, HoldfastConfigError, ManualClock } from '@holdfast/core';
import { memoryStore } from '@holdfast/idempotency';
import { afterEach, describe, expect, it } from 'vitest';
import { retry as retryDecorator, timeout as timeoutDecorator } from '../src/decorators.js';
import {
  type ResilientFetch,
  type ResilientFetchOptions,
  resilientFetch,
  withBreaker,
  withIdempotency,
  withRetry,
  withTimeout,
} from '../src/index.js';
import { type Handler, type Upstream, upstream } from './upstream.js';

const open: Upstream[] = [];
const made: ResilientFetch[] = [];

afterEach(async () => {
  for (const http of made.splice(0)) http.dispose();
  await Promise.all(open.splice(0).map((s) => s.close()));
});

async function server(handler: Handler): Promise<Upstream> {
  const s = await upstream(handler);
  open.push(s);
  return s;
}

function client(options: ResilientFetchOptions = {}): ResilientFetch {
  const http = resilientFetch({ bus: createBus(), ...options });
  made.push(http);
  return http;
}

/** The HoldfastConfigError `make` throws, or a failure of the test. */
function refusal(make: () => unknown): HoldfastConfigError {
  try {
    (make() as ResilientFetch | undefined)?.dispose?.();
  } catch (error) {
    if (error instanceof HoldfastConfigError) return error;
    throw error;
  }
  throw new Error('accepted');
}

const hits = (s: Upstream, path: string) => s.seen.filter((r) => r.path === path).length;

describe('resilientFetch options with baseUrls are checked where they are given', () => {
  it('retry.backoff is checked the same way with or without baseUrls (review finding 12)', () => {
    const bad = { retry: { backoff: { initialDelay: 5_000, maxDelay: 100 } } };
    expect(refusal(() => resilientFetch(bad)).message).toMatch(/retry\.backoff\.maxDelay must be >=/);
    expect(refusal(() => resilientFetch({ ...bad, baseUrls: ['http://127.0.0.1:1'] })).message).toMatch(
      /retry\.backoff\.maxDelay must be >=/,
    );
  });

  it('retry.backoff and retry.jitter are taken with baseUrls: they time the wait before the set runs again', () => {
    // Once every endpoint was tried, the set runs again after the backoff (base-url-retries.test.ts).
    client({
      baseUrls: ['http://127.0.0.1:1', 'http://127.0.0.1:2'],
      retry: { backoff: { initialDelay: 50 }, jitter: 'full', maxAttempts: 4, statuses: [503] },
    });
  });

  it('baseUrls with credentials are refused at creation, named by index, without the password (finding 13)', () => {
    const error = refusal(() =>
      resilientFetch({ baseUrls: ['http://127.0.0.1:1', 'https://svc:hunter2@127.0.0.1:2/v1'], breaker: false }),
    );
    expect(error.issues.map((i) => i.path)).toEqual(['baseUrls.1']);
    expect(error.message).toContain('baseUrls.1 must not carry credentials');
    expect(error.message).toContain('***@127.0.0.1:2');
    expect(`${error.message} ${JSON.stringify(error.issues)}`).not.toMatch(/hunter2|svc:/);
    // A user name alone is refused too: fetch refuses it as well.
    expect(refusal(() => resilientFetch({ baseUrls: ['http://svc@127.0.0.1:1'] })).message).toContain('baseUrls.0');
  });
});

describe('redirects fetch refuses are not retried and do not open the breaker (finding 14)', () => {
  it('a Location with credentials, a non-http Location, redirect: error and a loop: one request each, breaker closed', async () => {
    const s = await server((req, res) => {
      const { port } = new URL(`http://${req.headers.host}`);
      if (req.path === '/to-credentials') res.writeHead(302, { location: `http://u:p@127.0.0.1:${port}/ok` });
      else if (req.path === '/to-ftp') res.writeHead(302, { location: `ftp://127.0.0.1:${port}/file` });
      else if (req.path === '/to-data') res.writeHead(302, { location: 'data:text/plain,hi' });
      else if (req.path === '/loop') res.writeHead(302, { location: '/loop' });
      else if (req.path === '/moved') res.writeHead(302, { location: '/ok' });
      else res.writeHead(200);
      res.end();
    });
    // A breaker that opens after two failures in a row: refused redirects counted as failures would open it.
    const http = client({
      budget: false,
      retry: { maxAttempts: 3, backoff: { initialDelay: 1, maxDelay: 2 } },
      breaker: { defaults: { consecutiveFailures: 2 } },
    });
    const calls: [string, RequestInit?][] = [
      ['/to-credentials'],
      ['/to-ftp'],
      ['/to-data'],
      ['/moved', { redirect: 'error' }],
      ['/to-credentials'],
      ['/to-ftp'],
    ];
    const outcomes: string[] = [];
    for (const [path, init] of calls) {
      outcomes.push(
        await http(`${s.url}${path}`, init).then(
          (r) => `status ${r.status}`,
          (e: Error) => e.name,
        ),
      );
    }
    expect(outcomes).toEqual(calls.map(() => 'TypeError'));
    expect({
      credentials: hits(s, '/to-credentials'),
      ftp: hits(s, '/to-ftp'),
      data: hits(s, '/to-data'),
      moved: hits(s, '/moved'),
    }).toEqual({ credentials: 2, ftp: 2, data: 1, moved: 1 });
    // The redirect loop: fetch's 20 hops, once, not once per retry.
    await expect(http(`${s.url}/loop`)).rejects.toThrow(/redirect count exceeded/);
    expect(hits(s, '/loop')).toBe(21);
    // The host answered every time: its breaker is closed and the next call goes through.
    const res = await http(`${s.url}/moved`);
    expect([res.status, res.redirected, new URL(res.url).pathname]).toEqual([200, true, '/ok']);
  });
});

describe('a Retry-After past the total deadline (finding 15)', () => {
  it('returns the 503 at once, as fetch would, instead of waiting into a TimeoutError', async () => {
    const s = await server((_req, res) => {
      res.writeHead(503, { 'retry-after': '3600', 'content-type': 'text/plain' });
      res.end('come back in an hour');
    });
    const http = client({ breaker: false, budget: false, timeout: { total: 300 } });
    const res = await http(`${s.url}/busy`);
    expect([res.status, res.headers.get('retry-after'), await res.text()]).toEqual([
      503,
      '3600',
      'come back in an hour',
    ]);
    expect(s.seen).toHaveLength(1);
  });

  it('a Retry-After within the deadline is still waited for and retried', async () => {
    let n = 0;
    const s = await server((_req, res) => {
      if (++n === 1) res.writeHead(503, { 'retry-after': '0' }).end('busy');
      else res.writeHead(200).end('ok');
    });
    const http = client({ breaker: false, budget: false, timeout: { total: 5_000 } });
    const res = await http(`${s.url}/busy`);
    expect([res.status, await res.text(), s.seen.length]).toEqual([200, 'ok', 2]);
  });
});

describe("wrappers and decorated methods keep the wrapped function's name and length (findings 17, 18)", () => {
  it('withRetry, withBreaker, withTimeout and withIdempotency', () => {
    async function loadUser(id: string, tenant: string) {
      return `${tenant}/${id}`;
    }
    const wrapped = [
      withRetry(loadUser, { budget: false }),
      withBreaker(loadUser, { policies: false }),
      withTimeout(loadUser, 1_000),
      withIdempotency(loadUser, { store: memoryStore(), key: (id) => id }),
    ];
    expect(wrapped.map((f) => [f.name, f.length])).toEqual(wrapped.map(() => ['loadUser', 2]));
  });

  it('a decorated method, static or not, keeps its name and length and still works', async () => {
    class Inventory {
      factor = 2;
      @retryDecorator({ budget: false })
      static async count(sku: string) {
        return sku.length;
      }
      @timeoutDecorator(1_000)
      async stock(sku: string, warehouse: string) {
        return this.factor * sku.length + warehouse.length;
      }
    }
    expect([await Inventory.count('ab'), await new Inventory().stock('ab', 'w')]).toEqual([2, 5]);
    expect([Inventory.count.name, Inventory.count.length]).toEqual(['count', 1]);
    expect([Inventory.prototype.stock.name, Inventory.prototype.stock.length]).toEqual(['stock', 2]);
  });
});

describe('the total-deadline timer of the body read is cleared once the body is done', () => {
  const body: Handler = (req, res) => {
    if (req.path === '/empty') res.writeHead(204).end();
    else if (req.path === '/moved') res.writeHead(302, { location: '/big' }).end();
    else res.writeHead(200, { 'content-type': 'text/plain' }).end('x'.repeat(100_000));
  };

  it('read to the end, cancelled, empty (204, HEAD), or after a redirect: no timer is left', async () => {
    const s = await server(body);
    const clock = new ManualClock(0);
    const http = client({ clock, timeout: { perTry: 5_000, total: 60_000 } });
    const pending: Record<string, number> = {};

    const read = await http(`${s.url}/big`);
    pending.beforeRead = clock.pending; // the body's deadline, while the body is unread
    expect((await read.text()).length).toBe(100_000);
    pending.afterText = clock.pending;

    const cancelled = await http(`${s.url}/big`);
    await cancelled.body?.cancel();
    pending.afterCancel = clock.pending;

    await http(`${s.url}/empty`);
    await http(`${s.url}/big`, { method: 'HEAD' });
    pending.afterEmpty = clock.pending;

    const moved = await http(`${s.url}/moved`);
    expect([moved.redirected, new URL(moved.url).pathname, moved.type]).toEqual([true, '/big', 'basic']);
    await moved.arrayBuffer();
    pending.afterRedirect = clock.pending;

    for (let i = 0; i < 50; i++) await (await http(`${s.url}/big`)).text();
    pending.after50 = clock.pending;
    expect(pending).toEqual({
      beforeRead: 1,
      afterText: 0,
      afterCancel: 0,
      afterEmpty: 0,
      afterRedirect: 0,
      after50: 0,
    });
  });

  it('a caller abort during the body still rejects with its reason, and clears the timer', async () => {
    const s = await server((_req, res) => {
      res.writeHead(200);
      res.write('first chunk');
    });
    const clock = new ManualClock(0);
    const http = client({ clock, timeout: { perTry: 5_000, total: 60_000 } });
    const controller = new AbortController();
    const res = await http(s.url, { signal: controller.signal });
    const reason = new Error('caller left');
    const text = res.text();
    controller.abort(reason);
    await expect(text).rejects.toBe(reason);
    expect(clock.pending).toBe(0);
  });
});
