import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBus, HoldfastConfigError, healthReport, ManualClock, policies } from '@holdfast/core';
import { retry } from '@holdfast/retry';
import { afterEach, describe, expect, it } from 'vitest';
import { type ResilientFetch, type ResilientFetchOptions, resilientFetch } from '../src/index.js';
import { type Handler, upstream } from './upstream.js';

const open: { close(): Promise<void> }[] = [];
const made: ResilientFetch[] = [];

afterEach(async () => {
  for (const http of made.splice(0)) http.dispose();
  await Promise.all(open.splice(0).map((s) => s.close()));
});

async function server(handler: Handler) {
  const s = await upstream(handler);
  open.push(s);
  return s;
}

function client(options: ResilientFetchOptions = {}) {
  const bus = createBus();
  const events: unknown[] = [];
  bus.on('*', (e) => events.push(e));
  const http = resilientFetch({ bus, retry: { backoff: { initialDelay: 1, maxDelay: 5 } }, ...options });
  made.push(http);
  return { http, events };
}

/** Headers and a first chunk at once, then nothing more until the connection closes. */
const stalls: Handler = (_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.write('first chunk;');
};

describe('resilientFetch matches fetch where it adds no resilience: the body', () => {
  it('a caller abort after the headers stops the body read with the caller reason, as plain fetch does', async () => {
    const s = await server(stalls);
    const { http } = client();
    for (const send of [globalThis.fetch, http]) {
      const controller = new AbortController();
      const res = await send(s.url, { signal: controller.signal });
      expect(res.status).toBe(200);
      const reason = new Error('caller left');
      const body = res.text();
      controller.abort(reason);
      await expect(body).rejects.toBe(reason);
    }
  });

  it('timeout.total covers the body read', async () => {
    const s = await server(stalls);
    const clock = new ManualClock(0);
    const { http } = client({ clock, timeout: { total: 1_000 } });
    const res = await http(s.url); // the headers arrive while the clock stands still
    expect(res.status).toBe(200);
    const body = expect(res.text()).rejects.toMatchObject({ code: 'E_TIMEOUT', name: 'TimeoutError' });
    await clock.advance(999);
    expect(clock.pending).toBe(1); // the body deadline: what is left of the total
    await clock.advance(1);
    await body;
  });
});

describe('resilientFetch and redirects', () => {
  it('follows fetch rules: a redirect loop fails after the same requests as plain fetch, and is not retried', async () => {
    const s = await server((req, res) => {
      res.writeHead(302, { location: req.path });
      res.end();
    });
    await expect(globalThis.fetch(`${s.url}/loop`)).rejects.toThrow('fetch failed');
    const plain = s.seen.length;
    expect(plain).toBe(21); // one request and 20 redirects
    s.seen.length = 0;
    const { http } = client();
    await expect(http(`${s.url}/loop`)).rejects.toMatchObject({
      name: 'TypeError',
      message: 'fetch failed: redirect count exceeded',
    });
    expect(s.seen.length).toBe(plain); // not 3 × 21 = 63
  });

  it("redirect: 'manual' returns the 302 itself, as fetch does", async () => {
    const s = await server((_req, res) => {
      res.writeHead(302, { location: '/elsewhere' });
      res.end();
    });
    const { http } = client();
    const res = await http(s.url, { redirect: 'manual' });
    expect(res.status).toBe(302);
    expect(s.seen).toHaveLength(1);
  });
});

describe('resilientFetch and credentials on a redirect to another origin', () => {
  const headers = { authorization: 'Bearer hunter2', cookie: 'sid=hunter2', 'x-api-key': 'hunter2' };
  async function twoOrigins() {
    const other = await server((_req, res) => res.end('other'));
    // 127.0.0.1 and localhost: another origin, the same machine.
    const otherUrl = `http://localhost:${other.port}/landing`;
    const first = await server((_req, res) => {
      res.writeHead(302, { location: otherUrl });
      res.end();
    });
    return { first, other };
  }

  it('follow: as fetch, authorization and cookie are dropped and a custom credential header goes along (the README says so)', async () => {
    const { first, other } = await twoOrigins();
    const { http } = client();
    expect(await (await http(`${first.url}/start`, { headers })).text()).toBe('other');
    await (await globalThis.fetch(`${first.url}/start`, { headers })).text();
    const [ours, plain] = other.seen.map((r) => r.headers);
    for (const seen of [ours, plain]) {
      expect(seen?.authorization).toBeUndefined();
      expect(seen?.cookie).toBeUndefined();
      expect(seen?.['x-api-key']).toBe('hunter2');
    }
  });

  it("redirect: 'error' and 'manual' send nothing to the other origin and are not retried", async () => {
    const { first, other } = await twoOrigins();
    const { http } = client();
    await expect(http(`${first.url}/start`, { headers, redirect: 'error' })).rejects.toMatchObject({
      name: 'TypeError',
    });
    expect((await http(`${first.url}/start`, { headers, redirect: 'manual' })).status).toBe(302);
    expect(other.seen).toHaveLength(0);
    expect(first.seen).toHaveLength(2);
  });
});

describe('resilientFetch errors name their root cause', () => {
  it('a refused connection says ECONNREFUSED in its message and code', async () => {
    const probe: Server = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as AddressInfo;
    await new Promise((resolve) => probe.close(resolve));
    const { http } = client({ retry: false, breaker: false });
    await expect(http(`http://127.0.0.1:${port}/x`)).rejects.toMatchObject({
      name: 'TypeError',
      message: `fetch failed: connect ECONNREFUSED 127.0.0.1:${port}`,
      code: 'ECONNREFUSED',
    });
    const retried = client({ breaker: false });
    await expect(retried.http(`http://127.0.0.1:${port}/x`)).rejects.toMatchObject({
      code: 'E_RETRY_EXHAUSTED',
      message: `fetch.retry: gave up after 3 attempts: fetch failed: connect ECONNREFUSED 127.0.0.1:${port}`,
    });
  });
});

describe('resilientFetch keeps secrets in the process', () => {
  it('URL credentials and secret query parameters never reach messages, events, snapshot() or global snapshots', async () => {
    const s = await server((_req, res) => {
      res.writeHead(503);
      res.end('busy');
    });
    const port = new URL(s.url).port;
    const secrets = ['hunter2', 'abc123', 's3ss10n'];
    const { http, events } = client({ throwOnHttpError: true, secretParams: ['session'] });
    const messages: string[] = [];
    const collect = async (call: Promise<unknown>) => {
      const error = (await call.then(
        () => new Error('no error'),
        (e: unknown) => e,
      )) as Error;
      for (let e: unknown = error; e instanceof Error; e = e.cause)
        messages.push(`${e.message} ${String((e as { url?: string }).url)}`);
    };
    await collect(http(`${s.url}/orders?token=abc123&session=s3ss10n&page=2`));
    // Credentials: fetch refuses them; the refusal must not repeat them.
    await collect(http(`http://admin:hunter2@127.0.0.1:${port}/orders`));
    // A base URL with credentials is refused at creation, and the refusal does not repeat them.
    await collect(Promise.resolve().then(() => client({ baseUrls: [`http://admin:hunter2@127.0.0.1:${port}`] })));
    expect(messages.at(-1)).toMatch(/^resilientFetch: baseUrls\.0 must not carry credentials/);
    const withBase = client({ baseUrls: [`http://127.0.0.1:${port}`], retry: { maxAttempts: 2 } });
    await collect(withBase.http('/orders?api_key=abc123'));
    const everything = JSON.stringify({
      messages,
      events: [...events, ...withBase.events],
      snapshots: [http.snapshot(), withBase.http.snapshot()],
      global: policies.snapshots(),
      health: healthReport(),
    });
    expect(messages.join('\n')).toContain('token=***');
    expect(messages.join('\n')).toContain('page=2');
    for (const secret of secrets) expect(everything).not.toContain(secret);
  });
});

describe('resilientFetch, retry() and @idempotent options are checked where they are given, by their public names', () => {
  const refused = (make: () => unknown) => {
    try {
      make();
    } catch (error) {
      if (error instanceof HoldfastConfigError) return error.message;
      throw error;
    }
    throw new Error('not refused');
  };

  it('refuses delays a timer cannot wait (over 2^31-1 ms)', () => {
    const tooLong = 2 ** 31;
    expect(refused(() => retry({ backoff: { initialDelay: tooLong } }))).toMatch(
      /^retry: backoff\.initialDelay must be <= 2147483647 ms/,
    );
    expect(refused(() => retry({ maxElapsed: tooLong }))).toMatch(/^retry: maxElapsed must be <= 2147483647/);
    expect(refused(() => resilientFetch({ retry: { backoff: { maxDelay: tooLong } } }))).toMatch(
      /^resilientFetch: retry\.backoff\.maxDelay must be <= 2147483647/,
    );
    expect(refused(() => resilientFetch({ timeout: { total: tooLong } }))).toMatch(
      /^resilientFetch: timeout\.total must be <= 2147483647/,
    );
    expect(refused(() => resilientFetch({ timeout: tooLong }))).toMatch(
      /^resilientFetch: timeout must be <= 2147483647|^resilientFetch: timeout/,
    );
  });

  it('refuses a bad idempotencyHeader, and names options of what it builds by the path they were given at', () => {
    expect(refused(() => resilientFetch({ idempotencyHeader: 'Idempotency Key' }))).toMatch(
      /^resilientFetch: idempotencyHeader must be an HTTP header name/,
    );
    expect(refused(() => resilientFetch({ idempotencyHeader: 'Key\r\nX-Evil: 1' }))).toMatch(/idempotencyHeader/);
    expect(refused(() => resilientFetch({ breaker: { bogus: 1 } as never }))).toMatch(
      /^resilientFetch: breaker\.bogus is not a known option/,
    );
    expect(refused(() => resilientFetch({ retry: { backoff: { initialDelay: 50, maxDelay: 10 } } }))).toMatch(
      /^resilientFetch: retry\.backoff\.maxDelay must be >= backoff\.initialDelay/,
    );
    expect(refused(() => resilientFetch({ secretParams: [''] }))).toMatch(/^resilientFetch: secretParams\.0/);
  });
});
