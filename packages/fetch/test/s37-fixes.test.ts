/**
 * Around the fixes of review s37: what the review's own tests (review-s37.test.ts) leave open.
 */
import { createBus, HoldfastConfigError, ManualClock } from '@holdfast/core';
import { failover } from '@holdfast/failover';
import { describe, expect, it } from 'vitest';
import { resilientFetch } from '../src/index.js';
import { perTest } from './upstream.js';

const t = perTest({ bus: createBus() });

describe('options refused at construction', () => {
  it.each(['Content-Type', 'authorization', 'Cookie', 'traceparent'])(
    'idempotencyHeader %s: every request carrying it would count as keyed',
    (name) => {
      expect(() => resilientFetch({ idempotencyHeader: name })).toThrow(HoldfastConfigError);
      expect(() => resilientFetch({ idempotencyHeader: name })).toThrow(
        /idempotencyHeader must be a header of its own/,
      );
    },
  );

  it('a header of its own is taken', () => {
    resilientFetch({ idempotencyHeader: 'X-Request-Key', bus: createBus() }).dispose();
  });

  it('timeout.perTry past timeout.total, named', () => {
    expect(() => resilientFetch({ timeout: { perTry: 60_000, total: 1_000 } })).toThrow(
      /timeout\.perTry must be <= timeout\.total \(1000 ms\)/,
    );
    resilientFetch({ timeout: { perTry: 1_000, total: 1_000 }, bus: createBus() }).dispose();
  });

  it('a per-try limit past the default total, alone, is the total too', async () => {
    const clock = new ManualClock();
    const http = resilientFetch({
      bus: createBus(),
      clock,
      retry: false,
      timeout: { perTry: 45_000 },
      fetch: (_url, init) =>
        new Promise((_, reject) => init?.signal?.addEventListener('abort', () => reject(init.signal?.reason))),
    });
    let outcome = 'pending';
    http('http://127.0.0.1:1/slow-report').catch((error: Error) => {
      outcome = error.message;
    });
    await clock.advance(44_000);
    expect(outcome).toBe('pending');
    await clock.advance(2_000);
    expect(outcome).toMatch(/timed out after 45000 ms/);
    http.dispose();
  });
});

describe("init.headers replace a Request's", () => {
  it('the idempotency key with them: the one init gives, or under auto a fresh one', async () => {
    const s = await t.server((req, res) => res.end(String(req.headers['idempotency-key'])));
    const request = () =>
      new Request(`${s.url}/orders`, { method: 'POST', body: 'o', headers: { 'idempotency-key': 'k1' } });
    const given = t.client({});
    expect(await (await given(request(), { headers: { 'idempotency-key': 'k2' } })).text()).toBe('k2');
    expect(await (await given(request(), { headers: { 'x-other': '1' } })).text()).toBe('undefined');
    const auto = t.client({ idempotencyKey: 'auto' });
    expect(await (await auto(request(), { headers: { 'x-other': '1' } })).text()).toMatch(/^[\da-f-]{36}$/);
  });
});

describe('the concurrency cap holds a place until the body ends', () => {
  const streaming = () =>
    t.server((_, res) => {
      res.writeHead(200);
      res.write('never ends');
    });

  it("a body never read frees its host's place when the call's total runs out", async () => {
    const s = await streaming();
    const http = t.client({
      concurrency: { bulkhead: { maxConcurrent: 1, maxQueue: 1 } },
      timeout: { perTry: 300, total: 300 },
    });
    const unread = await http(`${s.url}/a`);
    expect(unread.status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 150));
    const started = performance.now();
    const next = await http(`${s.url}/b`);
    // Queued behind the unread body until its total ran out (~150 ms later), within its own total.
    expect(performance.now() - started).toBeGreaterThan(75);
    await next.body?.cancel();
    await expect(unread.text()).rejects.toMatchObject({ code: 'E_TIMEOUT' });
  });

  it('a body cancelled frees it at once', async () => {
    const s = await streaming();
    const http = t.client({ concurrency: { bulkhead: { maxConcurrent: 1 } }, timeout: { total: 60_000 } });
    const first = await http(`${s.url}/a`);
    // No queue: a second call while the first body streams is refused here, sending nothing.
    await expect(http(`${s.url}/b`)).rejects.toMatchObject({ code: 'E_BULKHEAD_FULL' });
    await first.body?.cancel();
    await new Promise((resolve) => setTimeout(resolve, 10));
    const second = await http(`${s.url}/c`);
    expect(second.status).toBe(200);
    await second.body?.cancel();
    expect(s.seen.map((r) => r.path)).toEqual(['/a', '/c']);
  });

  it('a failed try frees it at once: its retry on the same host is not refused', async () => {
    const s = await t.server((_, res, n) => {
      if (n === 1) {
        res.writeHead(503, { 'retry-after': '0' });
        res.end('busy');
      } else res.end('ok');
    });
    const http = t.client({ concurrency: { bulkhead: { maxConcurrent: 1 } } });
    expect(await (await http(`${s.url}/x`)).text()).toBe('ok');
  });
});

describe('the Response returned', () => {
  it('reads as a byte stream through the cap too, chunk boundaries and all', async () => {
    const big = 'x'.repeat(200_000);
    const s = await t.server((_, res) => res.end(big));
    const http = t.client({ concurrency: { bulkhead: { maxConcurrent: 1 } } });
    const reader = (await http(`${s.url}/x`)).body?.getReader({ mode: 'byob' });
    let size = 0;
    for (;;) {
      const { done, value } = (await reader?.read(new Uint8Array(1_000))) ?? { done: true };
      if (done) break;
      size += value?.byteLength ?? 0;
    }
    expect(size).toBe(big.length);
  });

  it('has headers as immutable as fetch’s, its clone too; blob() still reads its type', async () => {
    const s = await t.server((_, res) => {
      res.setHeader('content-type', 'text/plain');
      res.end('hi');
    });
    const http = t.client({});
    const plain = await fetch(`${s.url}/x`);
    expect(() => plain.headers.set('x-a', '1')).toThrow(TypeError);
    const res = await http(`${s.url}/x`);
    expect(() => res.headers.set('x-a', '1')).toThrow(TypeError);
    const clone = res.clone();
    expect(() => clone.headers.set('x-a', '1')).toThrow(TypeError);
    expect([await clone.text(), (await res.blob()).type]).toEqual(['hi', 'text/plain']);
  });
});

describe('hedging beside a slow retry', () => {
  it('a hedge due during a Retry-After waits for the retry, then its delay, and may still win', async () => {
    const started = performance.now();
    const arrivals: number[] = [];
    const s = await t.server((_, res, n) => {
      arrivals.push(performance.now() - started);
      if (n === 1) {
        res.writeHead(503, { 'retry-after': '1' });
        res.end('busy');
      } else if (n === 2) setTimeout(() => res.end('slow'), 1_000);
      else res.end('fast');
    });
    const http = t.client({ hedge: { delay: 200 } });
    const res = await http(`${s.url}/x`);
    expect(await res.text()).toBe('fast');
    const [first = 0, retried = 0, hedged = 0] = arrivals;
    expect(retried - first).toBeGreaterThanOrEqual(900);
    // Its delay past the retry's start, not at once with it (arrivals: a few ms either way).
    expect(hedged - retried).toBeGreaterThanOrEqual(100);
    expect(hedged - retried).toBeLessThan(900);
  });

  it('a hedge waiting for a retry that never comes (no endpoint left) ends with the call, not at its total', async () => {
    const s = await t.server((_, res) => {
      res.writeHead(503);
      res.end('busy');
    });
    const set = failover<string>({ endpoints: [{ name: 'a', target: s.url }], retry: false, bus: createBus() });
    const http = t.client({
      failover: set,
      hedge: { delay: 50 },
      retry: { maxAttempts: 3, backoff: { type: 'constant', initialDelay: 300 }, jitter: 'none' },
      timeout: { total: 10_000 },
    });
    const started = performance.now();
    const call = http('/x').then(
      (res) => res.status,
      (error: { code?: string }) => error.code,
    );
    // During the backoff (the hedge is due, and waits for the retry): the one endpoint is drained,
    // so the retry finds none and sends nothing.
    await new Promise((resolve) => setTimeout(resolve, 150));
    void set.drain('a');
    expect(await call).toBe('E_NO_HEALTHY_ENDPOINT');
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(s.seen).toHaveLength(1);
    set.dispose();
  });
});
