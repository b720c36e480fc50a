/**
 * An absolute URL given to a client with base URLs (axios' CVE-2025-27152): a URL from a user
 * (`http://evil.example/`, `https://169.254.169.254/latest/meta-data`) must not take the
 * caller's headers and body to another host. It is refused, unless it lies under one of the
 * base URLs (a pagination `next` link one of them returned): then it is a path under the set.
 */
import { createBus, type HoldfastEvent } from '@holdfast/core';
import { type Failover, failover } from '@holdfast/failover';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type ResilientFetch, type ResilientFetchOptions, resilientFetch } from '../src/index.js';
import { type Upstream, upstream } from './upstream.js';

const made: { dispose(): void }[] = [];
let api: Upstream;
let evil: Upstream;
let down: Upstream;

beforeAll(async () => {
  api = await upstream((req, res) => res.end(`api ${req.method} ${req.path}`));
  evil = await upstream((req, res) => res.end(`evil ${req.path}`));
  down = await upstream((_, res) => {
    res.statusCode = 503;
    res.end('down');
  });
});
afterAll(async () => {
  await Promise.all([api, evil, down].map((s) => s.close()));
});
afterEach(() => {
  for (const thing of made.splice(0)) thing.dispose();
  for (const s of [api, evil, down]) s.seen.length = 0;
});

function client(options: ResilientFetchOptions): ResilientFetch {
  const http = resilientFetch({ bus: createBus(), ...options });
  made.push(http);
  return http;
}

function userSet(urls: string[]): Failover<string> {
  const set = failover<string>({ endpoints: urls, bus: createBus(), ejection: false });
  made.push(set);
  return set;
}

/** A client whose fetch records what it is asked for and sends nothing. */
function recorder(options: ResilientFetchOptions) {
  const sent: string[] = [];
  const http = client({
    ...options,
    fetch: async (input) => {
      sent.push(String(input));
      return new Response('recorded');
    },
  });
  return { http, sent };
}

const refusal = /^fetch: an absolute URL .* is not under the base URLs; refused/;
const key = 's3cret-key';
const secretInit = () => ({
  method: 'POST',
  headers: { 'x-api-key': key, 'idempotency-key': 'k1' },
  body: '{"card":"4242"}',
});

describe('an absolute URL to another host, with base URLs', () => {
  for (const via of ['baseUrls', 'failover'] as const) {
    it(`is refused with a TypeError, never sent there with the caller's headers and body (${via})`, async () => {
      const bases = [`${api.url}/v1`];
      const http = client(via === 'baseUrls' ? { baseUrls: bases } : { failover: userSet(bases) });
      for (const url of [`${evil.url}/steal`, `http://localhost:${evil.port}/`, `${evil.url.toUpperCase()}/x`]) {
        const error = await http(url, secretInit()).catch((e: unknown) => e);
        expect(error, url).toBeInstanceOf(TypeError);
        expect((error as Error).message, url).toMatch(refusal);
        expect((error as { code?: string }).code, url).toBe('E_ABSOLUTE_URL');
      }
      expect(evil.seen.map((s) => `${s.path} ${s.headers['x-api-key']}`)).toEqual([]);
      expect(api.seen).toEqual([]);
    });
  }

  it('a Request or a URL object is refused as the string is', async () => {
    const http = client({ baseUrls: [`${api.url}/v1`] });
    await expect(http(new Request(`${evil.url}/r`, secretInit()))).rejects.toThrow(refusal);
    await expect(http(new URL(`${evil.url}/u`), secretInit())).rejects.toThrow(refusal);
    expect(evil.seen).toEqual([]);
  });

  it('metadata, data: and file: URLs are refused before any fetch', async () => {
    const { http, sent } = recorder({ baseUrls: ['https://pay.internal/v1'] });
    for (const url of [
      'https://169.254.169.254/latest/meta-data',
      'http://[fd00:ec2::254]/latest/meta-data/',
      'data://,x',
      'file:///etc/passwd',
      'javascript://pay.internal/v1/x',
      ' http://evil.example/x',
      'ht\ttp://evil.example/x',
      'http:\\\\evil.example\\x',
    ]) {
      await expect(http(url), url).rejects.toThrow(refusal);
    }
    expect(sent).toEqual([]);
  });

  it('is tried once at most: no retry, no breaker failure, no budget, no event', async () => {
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('*', (e) => events.push(e));
    const http = client({ baseUrls: [`${api.url}/v1`, `${down.url}/v1`], bus, hedge: { delay: 1 } });
    for (let i = 0; i < 20; i++) await expect(http(`${evil.url}/x`)).rejects.toThrow(refusal);
    expect(events.map((e) => e.type)).toEqual([]);
    const snap = http.snapshot() as { budget: { calls: number }; breakers: unknown };
    expect(snap.budget.calls).toBe(0);
    expect(JSON.stringify(snap.breakers)).not.toContain(String(evil.port));
  });

  it('names the URL as every error does: no credentials, no secret parameters', async () => {
    const { http } = recorder({ baseUrls: ['https://pay.internal/v1'] });
    const error = await http('https://admin:hunter2@evil.example/x?api_key=abc123&page=2').catch((e: Error) => e);
    expect((error as Error).message).toMatch(refusal);
    expect((error as Error).message).toContain('evil.example');
    expect((error as Error).message).not.toMatch(/hunter2|abc123/);
  });

  it('names it as URL reads it: no newline, carriage return, NUL or escape of the input forges a log line', async () => {
    const { http, sent } = recorder({ baseUrls: ['https://pay.internal/v1'] });
    for (const url of [
      'http://evil.example/\n[ERROR] payment 42 refunded',
      'foo://x/\r\nforged\u0000',
      'x://h/\u001b[31mred',
      'javascript:/\\\n',
    ]) {
      const error = await http(url).catch((e: Error) => e);
      expect((error as Error).message, JSON.stringify(url)).toMatch(refusal);
      const controls = [...(error as Error).message].filter((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f);
      expect(controls, JSON.stringify(url)).toEqual([]);
    }
    expect(sent).toEqual([]);
  });

  it('`allowAbsoluteUrls: true` sends it where it says, for callers who mean it', async () => {
    const http = client({ baseUrls: [`${down.url}/v1`, `${api.url}/v1`], allowAbsoluteUrls: true, breaker: false });
    expect(await (await http(`${evil.url}/meant`)).text()).toBe('evil /meant');
    // Sent outside the set: the down base URL was not tried for it, the other host tried once.
    expect([down.seen.length, api.seen.length, evil.seen.length]).toEqual([0, 0, 1]);
    // One under a base URL is still the path under the set: it fails over.
    for (let i = 0; i < 3; i++) expect(await (await http(`${down.url}/v1/x`)).text()).toBe('api GET /v1/x');
  });
});

describe('`allowAbsoluteUrls: true`, a URL under none of the base URLs', () => {
  it('is a call of its own host: its failures are never held against a base URL, and it pays into the budget', async () => {
    const bus = createBus();
    const types: string[] = [];
    bus.on('*', (e) => types.push(e.type));
    const http = client({
      baseUrls: [`${api.url}/v1`, `${evil.url}/v1`],
      allowAbsoluteUrls: true,
      bus,
      retry: { maxAttempts: 2, backoff: { type: 'constant', initialDelay: 1 } },
    });
    for (let i = 0; i < 12; i++) await http(`${down.url}/x`).catch(() => undefined);
    const snap = http.snapshot() as {
      failover: { endpoints: { ejections: number; health: string }[] };
      budget: { calls: number };
      breakers: { breakers: Record<string, unknown> };
    };
    expect(types.filter((t) => t.startsWith('failover.'))).toEqual([]);
    expect(snap.failover.endpoints.map((e) => e.ejections)).toEqual([0, 0]);
    expect(snap.budget.calls).toBe(12);
    expect(Object.keys(snap.breakers.breakers)).toEqual([`127.0.0.1:${down.port}`]);
    expect([api.seen.length, evil.seen.length]).toEqual([0, 0]);
  });
});

describe('an absolute URL under one of the base URLs', () => {
  it('is a path under the set: a next link from one base URL fails over to another', async () => {
    const bases = [`${down.url}/v1`, `${api.url}/v1/`];
    const http = client({ baseUrls: bases, breaker: false });
    for (let i = 0; i < 4; i++) {
      const res = await http(`${down.url}/v1/charges?page=2`);
      expect(await res.text()).toBe('api GET /v1/charges?page=2');
    }
    for (const s of down.seen) expect(s.path).toBe('/v1/charges?page=2');
  });

  it('is a path under a failover set of the user’s too', async () => {
    const http = client({ failover: userSet([`${api.url}/v1`]) });
    expect(await (await http(`${api.url}/v1/orders/7?expand=1`)).text()).toBe('api GET /v1/orders/7?expand=1');
  });

  it('is a path under a user’s set whose targets are URL objects, as a path is', async () => {
    const set = failover<string>({
      endpoints: [{ name: 'api', target: new URL(`${api.url}/v1`) as unknown as string }],
      bus: createBus(),
      ejection: false,
    });
    made.push(set);
    const http = client({ failover: set });
    expect(await (await http('/orders/7')).text()).toBe('api GET /v1/orders/7');
    expect(await (await http(`${api.url}/v1/orders/8`)).text()).toBe('api GET /v1/orders/8');
    await expect(http(`${evil.url}/v1/orders/9`)).rejects.toThrow(refusal);
    expect(evil.seen).toEqual([]);
  });

  it('same origin: scheme and host case, default ports, IPv6 forms and trailing slashes do not matter', async () => {
    const bases = ['http://pay.internal/v1', 'https://[::1]:8443/api/', 'https://b.example:443/b'];
    const { http, sent } = recorder({ baseUrls: bases });
    const same: [string, string][] = [
      ['HTTP://PAY.internal/v1/x', 'http://pay.internal/v1/x'],
      ['http://pay.internal:80/v1/x?page=2', 'http://pay.internal/v1/x?page=2'],
      ['http://pay.internal/v1', 'http://pay.internal/v1'],
      ['http://pay.internal/v1/', 'http://pay.internal/v1/'],
      ['https://[0:0:0:0:0:0:0:1]:8443/api/y', 'https://[::1]:8443/api/y'],
      ['https://[::1]:8443/api', 'https://[::1]:8443/api'],
      ['https://b.example/b/z', 'https://b.example/b/z'],
      ['https://B.EXAMPLE:443/b?x=%20', 'https://b.example/b?x=%20'],
      ['http://pay.internal/v1//x?a=1&a=2', 'http://pay.internal/v1//x?a=1&a=2'],
    ];
    for (const [url, expected] of same) {
      sent.length = 0;
      expect((await http(url)).status, url).toBe(200);
      // Sent under one of the base URLs: the one it names, or another, the same path under it.
      expect(sent, url).toHaveLength(1);
      const to = new URL(sent[0] as string);
      const rest = (u: URL, base: string) => u.pathname.slice(new URL(base).pathname.replace(/\/$/, '').length);
      const from = new URL(expected);
      const baseOf = (u: URL) => bases.find((b) => new URL(b).origin === u.origin) as string;
      expect(rest(to, baseOf(to)) + to.search, url).toBe(rest(from, baseOf(from)) + from.search);
    }
  });

  it('not the same origin or not under the base path: refused', async () => {
    const { http, sent } = recorder({ baseUrls: ['http://pay.internal/v1', 'https://[::1]:8443/api/'] });
    for (const url of [
      'https://pay.internal/v1/x', // another scheme
      'http://pay.internal:8080/v1/x', // another port
      'http://pay.internal./v1/x', // another name for it, perhaps: not ours to guess
      'http://user:pw@pay.internal/v1/x', // credentials: fetch refuses them, and they would be dropped
      'http://pay.internal/v10/x',
      'http://pay.internal/',
      'http://pay.internal/v1/../admin',
      'http://pay.internal/v1/%2e%2e/admin',
      'http://pay.internal.evil.example/v1/x',
      'http://evil.example/http://pay.internal/v1/x',
      'https://[::2]:8443/api/x',
    ]) {
      await expect(http(url), url).rejects.toThrow(refusal);
    }
    expect(sent).toEqual([]);
  });
});

describe('absolute URLs, property, against real servers', () => {
  it('no generated URL other than one under a base URL reaches another server', async () => {
    const scheme = fc.constantFrom('http://', 'HTTP://', 'https://', 'http:\\\\', 'http:/\\', 'data://', 'file://');
    const userinfo = fc.constantFrom('', '', '', 'u@', 'u:p@', `127.0.0.1:${api.port}@`);
    const host = fc.constantFrom(
      `127.0.0.1:${api.port}`,
      `127.0.0.1:${api.port}`,
      `127.1:${api.port}`,
      `0x7f.0.0.1:${api.port}`,
      `127.0.0.1:${evil.port}`,
      `localhost:${evil.port}`,
      `localhost:${api.port}`,
      `2130706433:${evil.port}`,
      `[::ffff:127.0.0.1]:${evil.port}`,
      `127.0.0.1:${api.port}.`,
      '127.0.0.1',
    );
    const piece = fc.constantFrom(
      '/v1',
      '/v10',
      '/',
      '//',
      '\\',
      '/..',
      '/%2e%2e',
      '/x',
      '?q=1',
      '#f',
      '@',
      '%2f',
      '\t',
    );
    const url = fc
      .tuple(scheme, userinfo, host, fc.array(piece, { maxLength: 5 }))
      .map(([s, u, h, p]) => `${s}${u}${h}${p.join('')}`);
    const http = client({ baseUrls: [`${api.url}/v1`], retry: false, breaker: false });
    const outcomes = { sent: 0, refused: 0 };
    await fc.assert(
      fc.asyncProperty(url, async (u) => {
        const before = { api: api.seen.length, evil: evil.seen.length };
        let body: string | undefined;
        try {
          body = await (await http(u, { headers: { 'x-api-key': key } })).text();
          outcomes.sent++;
        } catch (error) {
          outcomes.refused++;
          expect(error, u).toBeInstanceOf(TypeError);
          expect((error as Error).message, u).toMatch(/^fetch: an absolute URL .* is not under the base URLs; refused/);
        }
        expect(evil.seen.length, `${JSON.stringify(u)} reached the other server`).toBe(before.evil);
        if (body !== undefined) {
          expect(api.seen.length, u).toBe(before.api + 1);
          const path = (api.seen.at(-1) as { path: string }).path;
          // One URL cannot read (`file://h:1/`: no port there) is a path, whose dot segments may
          // leave the base path, as any path's may (base-path.test.ts); never its host.
          if (URL.canParse(u)) {
            expect(path === '/v1' || path.startsWith('/v1/') || path.startsWith('/v1?'), `${u} -> ${path}`).toBe(true);
          }
        }
      }),
      { numRuns: 400 },
    );
    // Both sides were exercised: URLs under the base URL went, the others were refused.
    expect(outcomes.sent).toBeGreaterThan(20);
    expect(outcomes.refused).toBeGreaterThan(20);
  });
});
