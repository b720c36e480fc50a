/**
 * Outside review s37 of @holdfast/fetch: a hostile server, a hostile caller and production.
 * Every test here FAILS on the code as reviewed: each reproduces one bug (see the report).
 */
import { createBus, HoldfastConfigError, ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { resilientFetch } from '../src/index.js';
import { closedPort, perTest } from './upstream.js';

const t = perTest({ bus: createBus() });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('timeout.total bounds the whole call', () => {
  it('s37-1: a Request whose body takes 400 ms to read, answered 400 ms later, is cut at total: 600', async () => {
    const s = await t.server((_, res) => setTimeout(() => res.end('late'), 400));
    const http = t.client({ retry: false, timeout: { total: 600 } }); // perTry 5_000 > total is refused now
    let chunks = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(c) {
        await sleep(100);
        if (chunks++ < 4) c.enqueue(new TextEncoder().encode('x'));
        else c.close();
      },
    });
    const request = new Request(`${s.url}/upload`, { method: 'PUT', body, duplex: 'half' } as RequestInit);
    const started = performance.now();
    const outcome = await http(request).then(
      async (res) => `answered ${await res.text()} after ${Math.round(performance.now() - started)} ms`,
      (error: { code?: string }) => error.code,
    );
    // Actual: 'answered late after ~900 ms': the read and the exchange each get a full total.
    expect(outcome).toBe('E_TIMEOUT');
  });

  it('s37-2: timeout: 45_000 (per try) is silently capped at the default total of 30 s', async () => {
    let http: ReturnType<typeof resilientFetch>;
    const clock = new ManualClock();
    try {
      http = resilientFetch({
        bus: createBus(),
        clock,
        retry: false,
        timeout: 45_000,
        fetch: (_url, init) =>
          new Promise((_, reject) => init?.signal?.addEventListener('abort', () => reject(init.signal?.reason))),
      });
    } catch (error) {
      // Refusing a per-try limit above the total is an acceptable fix too.
      expect(error).toBeInstanceOf(HoldfastConfigError);
      return;
    }
    let outcome = 'pending';
    http('http://127.0.0.1:1/slow-report').then(
      () => {
        outcome = 'answered';
      },
      (error: Error & { code?: string }) => {
        outcome = `${error.code} ${error.message}`;
      },
    );
    await clock.advance(31_000);
    http.dispose();
    // Actual: 'E_TIMEOUT fetch.total: timed out after 30000 ms', 31 s into a 45 s try.
    expect(outcome).toBe('pending');
  });
});

describe('a Request with init, as fetch reads it', () => {
  it("s37-3: init.headers replace the Request's headers (fetch drops its Authorization); resilientFetch merges them", async () => {
    const s = await t.server((req, res) => res.end(JSON.stringify(req.headers)));
    const http = t.client({});
    const request = new Request(`${s.url}/h`, { headers: { authorization: 'Bearer SECRET', 'x-a': '1' } });
    const plain = (await (await fetch(request, { headers: { 'x-b': '2' } })).json()) as Record<string, string>;
    const ours = (await (await http(request, { headers: { 'x-b': '2' } })).json()) as Record<string, string>;
    expect(plain.authorization).toBeUndefined();
    // Actual: 'Bearer SECRET' and x-a sent along.
    expect({ authorization: ours.authorization, a: ours['x-a'], b: ours['x-b'] }).toEqual({
      authorization: plain.authorization,
      a: plain['x-a'],
      b: plain['x-b'],
    });
  });
});

describe('the concurrency cap per host', () => {
  it('s37-4: maxConcurrent 1 and responses whose body streams for 300 ms: the host sees 3 requests at once', async () => {
    const s = await t.server((_, res) => {
      res.writeHead(200);
      res.write('first part, ');
      setTimeout(() => res.end('last part'), 300);
    });
    const http = t.client({ concurrency: { bulkhead: { maxConcurrent: 1, maxQueue: 10 } } });
    const bodies = await Promise.all([1, 2, 3].map(async () => (await http(`${s.url}/export`)).text()));
    expect(bodies).toEqual(Array(3).fill('first part, last part'));
    // Actual: 3. The slot is released when the headers arrive, not when the request ends.
    expect(s.maxInFlight).toBe(1);
  });
});

describe("a redirect's target is another host", () => {
  it('s37-5a: a healthy host that redirects to a down host gets its own breaker opened: its other paths fail', async () => {
    const down = await closedPort();
    const a = await t.server((req, res) => {
      if (req.path === '/moved') {
        res.writeHead(302, { location: `${down}/elsewhere` });
        res.end();
      } else res.end('ok');
    });
    const http = t.client({ retry: false, breaker: { defaults: { consecutiveFailures: 3 } } });
    for (let i = 0; i < 3; i++) await http(`${a.url}/moved`).catch(() => {});
    const status = await http(`${a.url}/healthy`).then(
      (r) => r.status,
      (e: { code?: string }) => e.code,
    );
    // Actual: E_CIRCUIT_OPEN: the failures of the Location's host are held against a.
    expect(status).toBe(200);
  });

  it('s37-5b: a healthy host that redirects to a host answering 503 gets its own breaker opened', async () => {
    const b = await t.server((_, res) => {
      res.writeHead(503);
      res.end('busy');
    });
    const a = await t.server((req, res) => {
      if (req.path === '/moved') {
        res.writeHead(302, { location: `${b.url}/elsewhere` });
        res.end();
      } else res.end('ok');
    });
    const http = t.client({ retry: false, breaker: { defaults: { consecutiveFailures: 3 } } });
    for (let i = 0; i < 3; i++) await http(`${a.url}/moved`).then((r) => r.body?.cancel());
    const status = await http(`${a.url}/healthy`).then(
      (r) => r.status,
      (e: { code?: string }) => e.code,
    );
    // Actual: E_CIRCUIT_OPEN.
    expect(status).toBe(200);
  });
});

describe('hedging', () => {
  it('s37-6: a 503 with Retry-After: 1 is sent again 50 ms later by the hedge ("a failure is not hedged")', async () => {
    const started = performance.now();
    const arrivals: number[] = [];
    const s = await t.server((_, res, n) => {
      arrivals.push(Math.round(performance.now() - started));
      if (n === 1) {
        res.writeHead(503, { 'retry-after': '1' });
        res.end('busy');
      } else res.end('ok');
    });
    // delay 200, not 50: on a loaded machine the 503 itself may take past 50 ms, and a request not
    // answered after `delay` is hedged, as the contract says (seen once in a full run).
    const http = t.client({ hedge: { delay: 200 } });
    const res = await http(`${s.url}/x`);
    await res.text();
    expect(arrivals).toHaveLength(2);
    // Actual: the second request ~50 ms after the first, while the server asked for 1 s.
    expect((arrivals[1] as number) - (arrivals[0] as number)).toBeGreaterThanOrEqual(900);
  });

  it("s37-7: two hedged attempts both answered 503 with a body that never ends: the first one's connection is left open", async () => {
    const s = await t.server((_, res, n) => {
      const stalled503 = (ms: number) =>
        setTimeout(() => {
          res.writeHead(503, { 'content-length': '100000' });
          res.write('partial');
        }, ms);
      if (n === 1) stalled503(150);
      else if (n === 2) stalled503(50);
      else res.end('ok');
    });
    const http = t.client({
      hedge: { delay: 50, budget: { ratio: 1 } },
      retry: { maxAttempts: 3, backoff: { type: 'constant', initialDelay: 300 }, jitter: 'none' },
      timeout: { perTry: 2_000, total: 3_000 },
    });
    const res = await http(`${s.url}/x`);
    expect(await res.text()).toBe('ok');
    await sleep(300);
    // Actual: 1: a 503 overwritten in Call.last without discard; nothing ever cuts it.
    expect(s.inFlight).toBe(0);
  });
});

describe('the Response returned is as fetch returns it', () => {
  it('s37-8: its body is a byte stream: a BYOB reader works on fetch, not on resilientFetch', async () => {
    const s = await t.server((_, res) => res.end('hello world'));
    const http = t.client({});
    const plain = await fetch(`${s.url}/x`);
    const plainRead = await plain.body?.getReader({ mode: 'byob' }).read(new Uint8Array(64));
    expect(plainRead?.value?.byteLength).toBe(11);
    const res = await http(`${s.url}/x`);
    // Actual: TypeError: The argument 'stream' must be a byte stream.
    const read = await res.body?.getReader({ mode: 'byob' }).read(new Uint8Array(64));
    expect(read?.value?.byteLength).toBe(11);
  });

  it('s37-9: res.clone() keeps url, redirected and type, as fetch’s does', async () => {
    const s = await t.server((req, res) => {
      if (req.path === '/r') {
        res.writeHead(302, { location: '/final' });
        res.end();
      } else res.end('hi');
    });
    const http = t.client({});
    const plain = (await fetch(`${s.url}/r`)).clone();
    const ours = (await http(`${s.url}/r`)).clone();
    expect([plain.url, plain.redirected, plain.type]).toEqual([`${s.url}/final`, true, 'basic']);
    // Actual: ['', false, 'default'].
    expect([ours.url, ours.redirected, ours.type]).toEqual([plain.url, plain.redirected, plain.type]);
  });
});
