/**
 * Outside review s37b of @holdfast/fetch: attacks on the fixes of 6e59c230 (review s37).
 * Each test not marked GUARD FAILS on the code as reviewed and reproduces one bug; GUARD tests
 * pin what held.
 */
import { createHash } from 'node:crypto';
import { createBus, HoldfastConfigError } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { resilientFetch } from '../src/index.js';
import { perTest } from './upstream.js';

const t = perTest({ bus: createBus() });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const code = (error: { code?: string; name?: string }) => error.code ?? error.name;
/** A body read, or 'hung' if it is still not read after `ms`. */
const within = (read: Promise<string>, ms: number) =>
  Promise.race([read.then((text) => `read ${text}`, code), sleep(ms).then(() => 'hung')]);
type Caps = { concurrency: Record<string, { running: number }> };

describe('the body as a byte stream (whenBodyEnds, owned)', () => {
  it("s37b-1: a chunk that fills its buffer is transferred, not copied: the producer's bytes are detached", async () => {
    // A `fetch` of the user's (a mock, a cache) that serves the same bytes each time.
    const shared = new TextEncoder().encode('hello');
    const serve = () =>
      new Response(
        new ReadableStream<Uint8Array>({
          start(c) {
            c.enqueue(shared);
            c.close();
          },
        }),
      );
    const plain = [await serve().text(), await serve().text()];
    expect(plain).toEqual(['hello', 'hello']);
    const http = t.client({ retry: false, timeout: { total: 1_000 }, fetch: async () => serve() });
    const first = await (await http('http://127.0.0.1:1/a')).text();
    const after = shared.byteLength;
    const second = await within((await http('http://127.0.0.1:1/b')).text(), 2_000);
    // Actual: [hello, 0, hung]: enqueue() on the byte stream detached `shared`; the second body
    // is then one empty chunk, which stalls the read for good (s37b-2).
    expect([first, after, second]).toEqual(['hello', 5, 'read hello']);
  });

  it('s37b-2: an empty chunk from the source stalls the body for good, past timeout.total (pull is not called again)', async () => {
    const serve = () =>
      new Response(
        new ReadableStream<Uint8Array>({
          start(c) {
            c.enqueue(new Uint8Array(0));
            c.enqueue(new TextEncoder().encode('hello'));
            c.close();
          },
        }),
      );
    expect(await serve().text()).toBe('hello');
    const http = t.client({ retry: false, timeout: { total: 1_000 }, fetch: async () => serve() });
    const started = performance.now();
    const outcome = await within((await http('http://127.0.0.1:1/a')).text(), 2_000);
    // Actual: 'hung', past the total too: "an empty one is skipped: pull comes again" is not so
    // (a byte stream pulls again only if asked during the pull), and the deadline aborts only the
    // source, which nobody reads any more.
    expect(outcome).toBe('read hello');
    expect(performance.now() - started).toBeLessThan(500);
  });

  it('GUARD: 10 MB through the cap reads byte for byte', async () => {
    const big = Buffer.alloc(10 * 1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31 + (i >> 9)) & 255;
    const s = await t.server((_, res) => {
      res.writeHead(200, { 'content-length': String(big.length) });
      res.end(big);
    });
    const http = t.client({ concurrency: { bulkhead: { maxConcurrent: 1 } } });
    const ours = Buffer.from(await (await http(`${s.url}/x`)).arrayBuffer());
    const hash = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    expect(hash(ours)).toBe(hash(big));
  });
});

describe('one total from the call start', () => {
  it("s37b-3: a Request's body read is not counted by the retry: a Retry-After past the deadline ends in E_TIMEOUT, not the 503", async () => {
    const s = await t.server((_, res, n) => {
      if (n === 1) {
        res.writeHead(503, { 'retry-after': '1' });
        res.end('busy');
      } else res.end('ok');
    });
    const http = t.client({ timeout: { perTry: 1_500, total: 1_500 } });
    let chunks = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(c) {
        await sleep(140);
        if (chunks++ < 5) c.enqueue(new TextEncoder().encode('x'));
        else c.close();
      },
    });
    // ~700 ms to read the body; the 503's Retry-After (1 s) would end at ~1700 ms, past the total.
    const request = new Request(`${s.url}/upload`, { method: 'PUT', body, duplex: 'half' } as RequestInit);
    const outcome = await http(request).then((res) => res.status, code);
    // README: "a 503 whose Retry-After is past the deadline comes back at once, not as a TimeoutError".
    // Actual: 'E_TIMEOUT': the retry's maxElapsed (#totalMs) starts when the retry does, after the read.
    expect(outcome).toBe(503);
  });
});

describe('the per-host cap holds a place until the body ends', () => {
  it("s37b-4: two hedged answers settling together: the loser's place is never given back", async () => {
    // A fetch of the user's that coalesces identical requests (one upstream answer for both).
    const pending: ((r: Response) => void)[] = [];
    const cancelled: number[] = [];
    const http = t.client({
      hedge: { delay: 30, budget: { ratio: 1 } },
      concurrency: { bulkhead: { maxConcurrent: 2 } },
      timeout: { total: 400 },
      fetch: () => new Promise<Response>((resolve) => pending.push(resolve)),
    });
    const call = http('http://127.0.0.1:1/x');
    await sleep(80);
    expect(pending).toHaveLength(2);
    pending.forEach((answer, i) => {
      answer(
        new Response(
          new ReadableStream<Uint8Array>({
            pull(c) {
              c.enqueue(new TextEncoder().encode(`body ${i}`));
              c.close();
            },
            cancel() {
              cancelled.push(i);
            },
          }),
        ),
      );
    });
    expect(await (await call).text()).toBe('body 0');
    await sleep(600); // past the total, too
    const running = (http.snapshot() as Caps).concurrency['127.0.0.1:1']?.running;
    // Actual: running 1, loser never cancelled: its Response passed holding() but was dropped by
    // a policy above (the retry's invokeIn, aborted scope) with no discard; its release waits for
    // `reading`, which never aborts once the winner's body ended (#coverBody cleared the timer).
    expect({ running, cancelled }).toEqual({ running: 0, cancelled: [1] });
  });

  it('GUARD: a clone read alone frees the place', async () => {
    const s = await t.server((_, res) => res.end('hello'));
    const http = t.client({ concurrency: { bulkhead: { maxConcurrent: 1 } }, timeout: { total: 5_000 } });
    const res = await http(`${s.url}/a`);
    expect(await res.clone().text()).toBe('hello');
    await sleep(10);
    expect((await http(`${s.url}/b`)).status).toBe(200);
    expect(await res.text()).toBe('hello');
  });

  it('GUARD: the caller aborting mid-body frees the place once (no maxConcurrent + 1)', async () => {
    const s = await t.server((req, res) => {
      res.writeHead(200);
      res.write('part ');
      if (req.path !== '/a') setTimeout(() => res.end('end'), 100);
    });
    const http = t.client({ concurrency: { bulkhead: { maxConcurrent: 1, maxQueue: 5 } }, timeout: { total: 5_000 } });
    const ac = new AbortController();
    const reader = (await http(`${s.url}/a`, { signal: ac.signal })).body?.getReader();
    await reader?.read();
    ac.abort();
    await reader?.read().catch(() => {});
    await sleep(20);
    const bodies = await Promise.all([1, 2, 3].map(async (i) => (await http(`${s.url}/b${i}`)).text()));
    expect(bodies).toEqual(Array(3).fill('part end'));
    expect(s.maxInFlight).toBe(1);
    expect((http.snapshot() as Caps).concurrency[s.host]?.running).toBe(0);
  });

  it('GUARD: a HEAD (Content-Length 1234, no body) frees the place at once', async () => {
    const s = await t.server((_, res) => {
      res.writeHead(200, { 'content-length': '1234' });
      res.end();
    });
    const http = t.client({ concurrency: { bulkhead: { maxConcurrent: 1 } } });
    await http(`${s.url}/a`, { method: 'HEAD' });
    expect((await http(`${s.url}/b`, { method: 'HEAD' })).status).toBe(200);
  });
});

describe('hedging waits out Retry-After', () => {
  it('GUARD: a Retry-After far past the total: the 503 comes back at once', async () => {
    const s = await t.server((_, res) => {
      res.writeHead(503, { 'retry-after': '3600' });
      res.end('busy');
    });
    const http = t.client({ hedge: { delay: 50 }, timeout: { total: 2_000 } });
    const started = performance.now();
    expect((await http(`${s.url}/x`)).status).toBe(503);
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(s.seen).toHaveLength(1);
  });

  it("GUARD: the caller's abort during the wait ends the call with its reason", async () => {
    const s = await t.server((_, res) => {
      res.writeHead(503, { 'retry-after': '2' });
      res.end('busy');
    });
    const http = t.client({ hedge: { delay: 50 }, timeout: { total: 5_000 } });
    const ac = new AbortController();
    const call = http(`${s.url}/x`, { signal: ac.signal }).then((r) => r.status, code);
    await sleep(300);
    ac.abort(Object.assign(new Error('stop'), { code: 'E_STOP' }));
    expect(await call).toBe('E_STOP');
    expect(s.seen).toHaveLength(1);
  });
});

describe('fetch(request, init) as fetch reads it', () => {
  it("s37b-5: init.body null keeps the Request's body (fetch sends it); resilientFetch sends none", async () => {
    const s = await t.server((req, res) => res.end(`${req.method} [${req.body}]`));
    const request = () => new Request(`${s.url}/put`, { method: 'PUT', body: 'x' });
    const plain = await (await fetch(request(), { body: null })).text();
    expect(plain).toBe('PUT [x]');
    const http = t.client({});
    // Actual: 'PUT []' (request.ts planOf: `init?.body !== undefined` takes null as a body).
    expect(await (await http(request(), { body: null })).text()).toBe(plain);
  });
});

describe('timeout.total covers the body', () => {
  it("s37b-6: throwOnHttpError: the HttpError's response (a retried status) is never cut: its body hangs", async () => {
    const s = await t.server((_, res) => {
      res.writeHead(503);
      res.write('partial');
    });
    const http = t.client({ retry: false, throwOnHttpError: true, timeout: { total: 500 } });
    const error = (await http(`${s.url}/x`).catch((e: unknown) => e)) as { response: Response };
    // A 404 so thrown is cut at the total (E_TIMEOUT); a 503 (in `statuses`) is not.
    // Actual: 'hung' (fetch()'s catch throws before #coverBody, having unfollowed the caller too).
    expect(await within(error.response.text(), 1_500)).toBe('E_TIMEOUT');
  });

  it('GUARD: timeout 0, negative, NaN, Infinity are refused', () => {
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => resilientFetch({ timeout: bad })).toThrow(HoldfastConfigError);
      expect(() => resilientFetch({ timeout: { total: bad } })).toThrow(HoldfastConfigError);
    }
  });
});
