import { createBus, type EventOf, HoldfastConfigError } from '@holdfast/core';
import { afterEach, describe, expect, it } from 'vitest';
import { HttpError, type ResilientFetch, type ResilientFetchOptions, resilientFetch } from '../src/index.js';
import { reply, sequence, type Upstream, upstream } from './upstream.js';

const open: { close(): Promise<void> }[] = [];
const made: ResilientFetch[] = [];

async function server(...handlers: Parameters<typeof sequence>): Promise<Upstream> {
  const s = await upstream(handlers.length > 0 ? sequence(...handlers) : undefined);
  open.push(s);
  return s;
}

function client(options: ResilientFetchOptions = {}) {
  const bus = createBus();
  const attempts: EventOf<'retry.attempt'>[] = [];
  bus.on('retry.attempt', (e) => attempts.push(e));
  const http = resilientFetch({ bus, retry: { backoff: { initialDelay: 1, maxDelay: 5 } }, ...options });
  made.push(http);
  return { http, bus, attempts };
}

afterEach(async () => {
  for (const http of made.splice(0)) http.dispose();
  await Promise.all(open.splice(0).map((s) => s.close()));
});

describe('resilientFetch: what is retried', () => {
  it('retries a GET that gets 503, and returns the response that succeeded', async () => {
    const s = await server(reply(503), reply(503), reply(200, {}, 'fine'));
    const { http, attempts } = client();
    const res = await http(`${s.url}/stock`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('fine');
    expect(s.seen.map((r) => r.method)).toEqual(['GET', 'GET', 'GET']);
    expect(attempts.map((e) => e.attempt)).toEqual([2, 3]);
  });

  it('returns the last 503 when retries run out, body intact, as fetch would', async () => {
    const s = await server(reply(503, {}, 'busy'));
    const { http } = client();
    const res = await http(s.url);
    expect(res.status).toBe(503);
    expect(await res.text()).toBe('busy');
    expect(s.seen).toHaveLength(3);
  });

  it('never retries a POST without an Idempotency-Key', async () => {
    const s = await server(reply(503));
    const { http, attempts } = client();
    const res = await http(s.url, { method: 'POST', body: '{"sku":"a"}' });
    expect(res.status).toBe(503);
    expect(s.seen).toHaveLength(1);
    expect(attempts).toHaveLength(0);
  });

  it('retries a POST that carries an Idempotency-Key, sending the same key and body each time', async () => {
    const s = await server(reply(502), reply(201));
    const { http } = client();
    const res = await http(s.url, { method: 'POST', body: 'order-1', headers: { 'Idempotency-Key': 'k-1' } });
    expect(res.status).toBe(201);
    expect(s.seen.map((r) => [r.headers['idempotency-key'], r.body])).toEqual([
      ['k-1', 'order-1'],
      ['k-1', 'order-1'],
    ]);
  });

  it("idempotencyKey: 'auto' gives each logical POST one fresh key, reused across its retries", async () => {
    const s = await server(reply(503), reply(201), reply(201));
    const { http } = client({ idempotencyKey: 'auto' });
    await http(s.url, { method: 'POST', body: 'a' });
    await http(s.url, { method: 'POST', body: 'b' });
    const keys = s.seen.map((r) => r.headers['idempotency-key']);
    expect(keys).toHaveLength(3);
    expect(keys[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(keys[1]).toBe(keys[0]);
    expect(keys[2]).not.toBe(keys[0]);
  });

  it('does not retry a 404 or a 500 on a POST, and returns them', async () => {
    const s = await server(reply(404));
    const { http } = client();
    expect((await http(s.url)).status).toBe(404);
    expect(s.seen).toHaveLength(1);
  });

  it('retries a refused connection for a GET, then rejects with E_RETRY_EXHAUSTED caused by the network error', async () => {
    const s = await server();
    const url = s.url;
    await s.close();
    open.length = 0;
    const { http, attempts } = client({ breaker: false });
    await expect(http(url)).rejects.toMatchObject({
      code: 'E_RETRY_EXHAUSTED',
      // The root cause is named, not hidden two causes down.
      cause: {
        name: 'TypeError',
        message: expect.stringMatching(/^fetch failed: connect ECONNREFUSED 127\.0\.0\.1:\d+$/),
        code: 'ECONNREFUSED',
      },
    });
    expect(attempts).toHaveLength(2);
  });

  it('replays a Request object with a body on each retry', async () => {
    const s = await server(reply(503), reply(200));
    const { http } = client();
    const request = new Request(`${s.url}/items`, { method: 'PUT', body: 'payload', headers: { 'x-trace': 't1' } });
    expect((await http(request)).status).toBe(200);
    expect(s.seen.map((r) => [r.method, r.path, r.body, r.headers['x-trace']])).toEqual([
      ['PUT', '/items', 'payload', 't1'],
      ['PUT', '/items', 'payload', 't1'],
    ]);
  });
});

describe('resilientFetch: Retry-After', () => {
  it('waits as long as Retry-After says (seconds form)', async () => {
    const s = await server(reply(429, { 'retry-after': '0' }), reply(503, { 'retry-after': '1' }), reply(200));
    const { http, attempts } = client({ retry: { backoff: { initialDelay: 1, maxDelay: 2_000 } } });
    expect((await http(s.url)).status).toBe(200);
    expect(attempts.map((e) => e.delay)).toEqual([0, 1_000]);
  });

  it('reads the HTTP-date form', async () => {
    const at = new Date(Date.now() + 60_000).toUTCString();
    const s = await server(reply(503, { 'retry-after': at }), reply(200));
    const { http, attempts } = client({ retry: { backoff: { initialDelay: 1, maxDelay: 30 } } });
    // A minute away, longer than maxDelay: no retry sooner (it would be refused too), the 503 returned.
    expect((await http(s.url)).status).toBe(503);
    expect(attempts).toEqual([]);
    expect(s.seen).toHaveLength(1);
  });
});

describe('resilientFetch: aborting', () => {
  it("stops the call and its retries at once, rejecting with the caller's reason", async () => {
    const s = await server(() => {}); // never answers
    const { http } = client();
    const controller = new AbortController();
    const call = http(s.url, { signal: controller.signal });
    while (s.seen.length === 0) await new Promise((r) => setTimeout(r, 5));
    controller.abort(new Error('user left'));
    await expect(call).rejects.toThrow('user left');
    await new Promise((r) => setTimeout(r, 50));
    expect(s.seen).toHaveLength(1);
  });

  it('times out each try and moves on to the next', async () => {
    const s = await server(() => {}, reply(200));
    // The first try hangs; the second must answer within its own limit, even on a loaded machine.
    const { http } = client({ timeout: { perTry: 400, total: 5_000 } });
    expect((await http(s.url)).status).toBe(200);
    expect(s.seen).toHaveLength(2);
  });
});

describe('resilientFetch: breakers per host', () => {
  it('opens the breaker of the failing host only', async () => {
    const sick = await server(reply(500));
    const well = await server(reply(200));
    const bus = createBus();
    const opened: string[] = [];
    bus.on('breaker.open', (e) => opened.push(e.source));
    const http = resilientFetch({ bus, retry: false, breaker: { defaults: { consecutiveFailures: 3 } } });
    made.push(http);
    for (let i = 0; i < 3; i++) expect((await http(sick.url)).status).toBe(500);
    await expect(http(sick.url)).rejects.toMatchObject({ code: 'E_CIRCUIT_OPEN' });
    expect(sick.seen).toHaveLength(3);
    expect((await http(well.url)).status).toBe(200);
    expect(opened).toEqual([`fetch:${sick.host}`]);
  });
});

describe('resilientFetch: breakers and retries together', () => {
  it('does not retry against a host whose breaker is open', async () => {
    const sick = await server(reply(503));
    const { http, attempts } = client({ breaker: { defaults: { consecutiveFailures: 2 } } });
    // 503, retried once, 503 again: the breaker opens; the third try is refused, not retried.
    await expect(http(sick.url)).rejects.toMatchObject({ code: 'E_CIRCUIT_OPEN' });
    expect(sick.seen).toHaveLength(2);
    expect(attempts).toHaveLength(2);
    attempts.length = 0;
    await expect(http(sick.url)).rejects.toMatchObject({ code: 'E_CIRCUIT_OPEN' });
    expect(attempts).toHaveLength(0);
    expect(sick.seen).toHaveLength(2);
  });
});

describe('resilientFetch: throwOnHttpError', () => {
  it('throws an HttpError that names method, URL and status, with the response unread', async () => {
    const s = await server(reply(404, {}, 'no such order'));
    const { http } = client({ throwOnHttpError: true });
    const error = await http(`${s.url}/orders/9`, { method: 'DELETE' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HttpError);
    expect(error).toMatchObject({
      code: 'E_HTTP_STATUS',
      status: 404,
      message: `DELETE ${s.url}/orders/9: 404 Not Found`,
    });
    expect(await (error as HttpError).response.text()).toBe('no such order');
  });
});

describe('resilientFetch: baseUrls', () => {
  it('fails over to another base URL when one refuses connections', async () => {
    const a = await server(reply(200, {}, 'a'));
    const b = await server(reply(200, {}, 'b'));
    const { http } = client({ baseUrls: [a.url, b.url], retry: {} }); // no backoff: failover does not wait
    await a.close();
    const bodies: string[] = [];
    for (let i = 0; i < 6; i++) bodies.push(await (await http('/ping', { method: 'POST' })).text());
    expect(bodies).toEqual(['b', 'b', 'b', 'b', 'b', 'b']);
    expect(b.seen.every((r) => r.path === '/ping')).toBe(true);
  });
});

describe('resilientFetch: options', () => {
  it('names a bad option and its value', () => {
    expect(() => resilientFetch({ timeout: -1 })).toThrow(HoldfastConfigError);
    // Of neither accepted shape: it said only "timeout Invalid input".
    expect(() => resilientFetch({ timeout: '5s' as never })).toThrow(
      'resilientFetch: timeout must be ms (a number) or { perTry, total } (got "5s")',
    );
    expect(() => resilientFetch({ timeout: { perTry: 0 } })).toThrow(/^resilientFetch: timeout\.perTry Too small/);
    expect(() => resilientFetch({ baseUrls: ['ftp://x'] })).toThrow(
      /resilientFetch: baseUrls\.0 .*\(got "ftp:\/\/x"\)/,
    );
    expect(() => resilientFetch({ retrys: false } as never)).toThrow(
      'resilientFetch: retrys is not a known option (got false)',
    );
  });
});
