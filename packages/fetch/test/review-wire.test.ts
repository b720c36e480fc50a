/**
 * Hostile review of resilientFetch (review-fetch): what a server may put on the wire, what a
 * `Request` carries besides its URL, paths that lead away from the base URLs, and base URLs
 * that lose part of themselves. Each case failed before its fix.
 */
import { getEventListeners } from 'node:events';
import { createServer, type Server } from 'node:net';
import { createBus, HoldfastConfigError } from '@holdfast/core';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { type ResilientFetch, type ResilientFetchOptions, resilientFetch } from '../src/index.js';
import { hostOfPath } from '../src/request.js';
import { type Handler, type Upstream, upstream } from './upstream.js';

const open: Upstream[] = [];
const raw: Server[] = [];
const made: ResilientFetch[] = [];

afterEach(async () => {
  for (const http of made.splice(0)) http.dispose();
  for (const s of raw.splice(0)) s.close();
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

/** A TCP server that answers every request with `statusLine`, then `body` (or stalls after the headers). */
async function wire(statusLine: string, body: string | 'stall'): Promise<string> {
  const s = createServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', () => {
      if (body === 'stall') socket.write(`${statusLine}\r\nContent-Length: 100\r\n\r\nfirst`);
      else socket.end(`${statusLine}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
    });
  });
  raw.push(s);
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as { port: number };
  return `http://127.0.0.1:${port}/`;
}

const seen = (r: Response) => r.text().then((text) => ({ status: r.status, statusText: r.statusText, ok: r.ok, text }));

describe('responses fetch accepts from the wire are returned as fetch returns them', () => {
  const lines = ['HTTP/1.1 600 Custom', 'HTTP/1.1 999 Odd', 'HTTP/1.1 200 O\u0001K', 'HTTP/1.1 503 Busy\u007f'];
  for (const line of lines) {
    it(`${JSON.stringify(line)}: the same status, reason and body as fetch`, async () => {
      const url = await wire(line, 'hi');
      const http = client({ retry: false });
      const caller = new AbortController();
      const plain = await seen(await fetch(url));
      // Before the fix: RangeError 'init["status"] must be in the range of 200 to 599, inclusive.'
      // or TypeError 'Invalid statusText', for a response fetch itself returns.
      const ours = await seen(await http(url, { signal: caller.signal }));
      expect(ours).toEqual(plain);
    });
  }

  it('such a response whose body stalls is still cut by timeout.total, with nothing left on the signal', async () => {
    const url = await wire('HTTP/1.1 600 Custom', 'stall');
    const http = client({ retry: false, timeout: { total: 300 } });
    const caller = new AbortController();
    const res = await http(url, { signal: caller.signal });
    expect(res.status).toBe(600);
    await expect(res.text()).rejects.toMatchObject({ code: 'E_TIMEOUT' });
    expect(getEventListeners(caller.signal, 'abort')).toHaveLength(0);
  });
});

describe("a Request's own options are kept, as fetch keeps them", () => {
  const moved: Handler = (req, res) => {
    if (req.path === '/moved') res.writeHead(302, { location: '/internal' }).end();
    else res.end('internal');
  };

  it("redirect: 'manual' on the Request returns the 302; the Location is not requested", async () => {
    const s = await server(moved);
    const http = client();
    // Before the fix: 200 from /internal, the redirect followed.
    const res = await http(new Request(`${s.url}/moved`, { redirect: 'manual' }));
    expect([res.status, s.seen.map((x) => x.path)]).toEqual([302, ['/moved']]);
  });

  it("redirect: 'error' on the Request rejects; the Location is not requested", async () => {
    const s = await server(moved);
    const http = client();
    await expect(http(new Request(`${s.url}/moved`, { redirect: 'error' }))).rejects.toThrow(/redirect/);
    expect(s.seen.map((x) => x.path)).toEqual(['/moved']);
  });

  it('the init given beside the Request still wins, as in fetch', async () => {
    const s = await server(moved);
    const http = client();
    const res = await http(new Request(`${s.url}/moved`, { redirect: 'manual' }), { redirect: 'follow' });
    expect([res.status, await res.text()]).toEqual([200, 'internal']);
  });
});

describe('with base URLs, a path that names another host is refused, never sent there', () => {
  it('//host/x, /\\host/x, a tab between the slashes and http:host: no request leaves, the error names it', async () => {
    const api = await server((_, res) => res.end('api'));
    const other = await server((_, res) => res.end('other'));
    const http = client({ baseUrls: [api.url] });
    const elsewhere = `localhost:${other.port}`;
    const paths = [`//${elsewhere}/steal`, `/\\${elsewhere}/steal`, `/\t/${elsewhere}/steal`, `\\\\${elsewhere}/steal`];
    const outcomes: string[] = [];
    for (const path of paths) {
      // Before the fix: each went to the other host, Authorization header and all.
      outcomes.push(
        await http(path, { headers: { authorization: 'Bearer s3cret' } }).then(
          async (r) => `sent: ${await r.text()}`,
          (e: Error) => `${e.name}: ${/names a host .* leads to /.test(e.message)} ${e.message.includes('s3cret')}`,
        ),
      );
    }
    expect(outcomes).toEqual(paths.map(() => 'TypeError: true false'));
    expect([api.seen.length, other.seen.length]).toEqual([0, 0]);
  });

  it('an http: path against an https base URL is refused too', async () => {
    const http = client({ baseUrls: ['https://127.0.0.1:1'], retry: false });
    await expect(http('http:127.0.0.1:1/x')).rejects.toThrow(/names a host .* leads to /);
  });

  it('a path and a relative path go under the base path (base-path.test.ts), an absolute URL only under it', async () => {
    const api = await server((req, res) => res.end(req.path));
    const http = client({ baseUrls: [`${api.url}/v1/`] });
    const paths = ['/orders', 'orders?x=1', `${api.url}/v1/abs`];
    const got = await Promise.all(paths.map(async (p) => (await http(p)).text()));
    expect(got).toEqual(['/v1/orders', '/v1/orders?x=1', '/v1/abs']);
    await expect(http(`${api.url}/abs`)).rejects.toThrow(/absolute URL .* is not under the base URLs; refused/);
  });
});

describe('hostOfPath, property', () => {
  it('whatever the path, one it lets through joins onto the base host, or is an absolute URL that goes where it says', () => {
    const char = fc.constantFrom(
      '/',
      '\\',
      '\t',
      '\n',
      ' ',
      ':',
      '@',
      '.',
      '?',
      '#',
      '%',
      'h',
      'x',
      '1',
      'http',
      'https',
    );
    const path = fc.array(char, { maxLength: 12 }).map((parts) => parts.join(''));
    const bases = ['http://base.example:8080/api/', 'https://base.example/', 'http://10.0.0.1/v1'];
    fc.assert(
      fc.property(path, fc.constantFrom(...bases), (p, base) => {
        let joined: URL;
        try {
          joined = new URL(p, base);
        } catch {
          return; // refused by URL itself
        }
        if (hostOfPath(p) !== undefined) return;
        const absolute = URL.canParse(p) && new URL(p).href === joined.href;
        expect(joined.host === new URL(base).host || absolute).toBe(true);
      }),
      { numRuns: 5_000 },
    );
  });
});

describe('base URLs are refused where joining a path would lose part of them', () => {
  const refusal = (options: ResilientFetchOptions) => {
    try {
      resilientFetch({ bus: createBus(), ...options }).dispose();
      return 'accepted';
    } catch (error) {
      return error instanceof HoldfastConfigError ? error.message : `not a config error: ${String(error)}`;
    }
  };

  it('a query or a fragment (joining a path drops it: an api_key there was never sent)', () => {
    expect(refusal({ baseUrls: ['http://127.0.0.1:1/?api_key=abc'] })).toMatch(
      /^resilientFetch: baseUrls\.0 must not carry a query or a fragment.*\(got "http:\/\/127\.0\.0\.1:1\/\?api_key=\*\*\*"\)$/,
    );
    expect(refusal({ baseUrls: ['http://127.0.0.1:1', 'http://127.0.0.1:2/#x'] })).toMatch(
      /^resilientFetch: baseUrls\.1 must not carry a query or a fragment/,
    );
  });

  it('two base URLs on one host are named as baseUrls, not as failover endpoints', () => {
    // Before the fix: 'failover: endpoints.1.name is not unique: endpoint 0 has the same name (got "a:1")'.
    expect(refusal({ baseUrls: ['http://a:1/x', 'http://A:1/y'] })).toMatch(
      /^resilientFetch: baseUrls\.1 must be on another host than baseUrls\.0 \(a:1\)/,
    );
  });
});

describe('a request fetch refuses before sending it is the caller’s mistake, not the host’s', () => {
  const mistakes: [string, RequestInit][] = [
    ['a GET with a body', { method: 'GET', body: 'oops' }],
    ['TRACE', { method: 'TRACE' }],
    ['a method that is no token', { method: 'bad method' }],
    ['a stream body without duplex', { method: 'PUT', body: new Blob(['x']).stream() }],
  ];

  it('30 of each: rejected with fetch’s TypeError, never retried; the host’s breaker stays closed for everyone', async () => {
    const s = await server((_, res) => res.end('ok'));
    const http = client();
    const outcomes = new Set<string>();
    for (const [what, init] of mistakes) {
      for (let i = 0; i < 30; i++) {
        const fresh = init.body instanceof ReadableStream ? { ...init, body: new Blob(['x']).stream() } : init;
        outcomes.add(
          await http(s.url, fresh).then(
            () => `${what}: sent`,
            (e: Error) => `${what}: ${e.name}`,
          ),
        );
      }
    }
    expect([...outcomes]).toEqual(mistakes.map(([what]) => `${what}: TypeError`));
    // Before the fix: 'E_CIRCUIT_OPEN: fetch:127.0.0.1:…: circuit is open', for a host that never saw a request.
    const good = await http(s.url).then(
      (r) => r.text(),
      (e: { code?: string }) => e.code,
    );
    expect([good, s.seen.length]).toEqual(['ok', 1]);
  });

  it('with base URLs: no endpoint is held to blame, the next good call goes through', async () => {
    const a = await server((_, res) => res.end('a'));
    const b = await server((_, res) => res.end('b'));
    const http = client({ baseUrls: [a.url, b.url] });
    for (let i = 0; i < 30; i++) await http('/x', { method: 'GET', body: 'oops' }).catch(() => {});
    const endpoints = (http.snapshot() as { failover: { endpoints: { ejections: number }[] } }).failover.endpoints;
    const breakers = (http.snapshot() as { breakers: { breakers: Record<string, { state: string }> } }).breakers;
    expect(endpoints.map((e) => e.ejections)).toEqual([0, 0]);
    expect(Object.values(breakers.breakers).map((b) => b.state)).toEqual(['closed', 'closed']);
    expect((await http('/x')).status).toBe(200);
    expect(a.seen.length + b.seen.length).toBe(1);
  });
});
