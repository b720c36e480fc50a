/**
 * A path joined to a base URL keeps the base URL's path, as axios joins a path to its baseURL:
 * `http://h/v1` and `/users` make `http://h/v1/users` (URL's own rules make `http://h/users`),
 * for every base URL of the set, while a path that names another host is still refused.
 */
import { createBus } from '@holdfast/core';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { type ResilientFetch, type ResilientFetchOptions, resilientFetch } from '../src/index.js';
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

describe('a path joined to a base URL with a path of its own', () => {
  it('keeps the base path, on every base URL, the one a call fails over to included', async () => {
    const down = await server((_, res) => {
      res.writeHead(503);
      res.end();
    });
    const up = await server((req, res) => res.end(req.path));
    const http = client({ baseUrls: [`${down.url}/v1`, `${up.url}/api/v2/`], budget: false, breaker: false });
    const cases: [string, string][] = [
      ['/users', '/users'],
      ['users', '/users'],
      ['/users/7?expand=1', '/users/7?expand=1'],
      ['\\users', '/users'],
      ['', '/'],
      ['/', '/'],
      ['?q=1', '/?q=1'],
      [' /padded', '/padded'],
    ];
    const got: string[] = [];
    for (const [p] of cases) got.push(await (await http(p)).text());
    // Before the fix: "/users" went to /users on each host, the base path dropped.
    expect(got).toEqual(cases.map(([, rest]) => `/api/v2${rest}`));
    expect(down.seen.length).toBeGreaterThan(0);
    // An empty path asks for the base URL itself: `/v1`, not `/v1/`.
    const downPaths = cases.map(([p, rest]) => (p === '' ? '/v1' : `/v1${rest}`));
    for (const seen of down.seen) expect(downPaths).toContain(seen.path);
  });

  it('a path that names another host is still refused, and so is an absolute URL to another host', async () => {
    const api = await server((req, res) => res.end(`api ${req.path}`));
    const other = await server((req, res) => res.end(`other ${req.path}`));
    const http = client({ baseUrls: [`${api.url}/v1`] });
    const elsewhere = `localhost:${other.port}`;
    for (const p of [`//${elsewhere}/x`, `/\\${elsewhere}/x`, ` //${elsewhere}/x`, `http:${elsewhere}/x`]) {
      await expect(http(p), p).rejects.toThrow(/names a host .* leads to /);
      // A TypeError, as fetch's refusals are, with a code to tell it by.
      await expect(http(p), p).rejects.toMatchObject({ name: 'TypeError', code: 'E_PATH_NAMES_HOST' });
    }
    await expect(http(`${other.url}/abs`)).rejects.toThrow(/absolute URL .* is not under the base URLs; refused/);
    await expect(http(`${other.url}/abs`)).rejects.toMatchObject({ name: 'TypeError', code: 'E_ABSOLUTE_URL' });
    // What follows the slashes is a path, never a scheme of its own.
    expect(await (await http('/https:evil.example/x')).text()).toBe('api /v1/https:evil.example/x');
    expect(other.seen.map((s) => s.path)).toEqual([]);
  });
});

describe('a path with a colon before any slash', () => {
  it('goes under the base URL, as axios and ky join it: URL rules alone read `user:42` as a scheme', async () => {
    const api = await server((req, res) => res.end(`api ${req.path}`));
    const http = client({ baseUrls: [`${api.url}/v1`] });
    for (const p of ['user:42', 'c:/x', 'urn:isbn:0451450523', 'a1+b.c-d:e', 'mailto:ops@example.com', 'x:']) {
      const res = await http(p);
      expect(`${res.status} ${await res.text()}`, p).toBe(`200 api /v1/${p}`);
    }
    expect(api.seen.length).toBe(6);
  });
});

describe('a URL of a scheme fetch does not speak, without base URLs', () => {
  it('is refused as fetch refuses it: tried once, no breaker failure, no retry budget spent', async () => {
    const bus = createBus();
    const seen: string[] = [];
    bus.on('*', (e) => seen.push(e.type));
    const http = client({ bus });
    for (const url of ['user:42', 'c:/x', 'ftp://127.0.0.1:1/x']) {
      const error = await http(url).catch((e: unknown) => e);
      expect(error, url).toBeInstanceOf(TypeError);
      expect((error as Error).message).toBe('fetch failed: unknown scheme');
    }
    const wasted = ['retry.attempt', 'retry.budgetExhausted', 'breaker.failure'];
    expect(seen.filter((t) => wasted.includes(t))).toEqual([]);
  });
});

describe('the join, property', () => {
  /** A client over `bases` whose fetch records the URL it is given; calls spread over the bases. */
  function recorder(bases: string[]) {
    const sent: string[] = [];
    const http = client({
      baseUrls: bases,
      fetch: async (input) => {
        sent.push(String(input));
        return new Response(null, { status: 204 });
      },
    });
    return { http, sent };
  }
  /** The base URL a sent URL went to, by its origin. */
  const baseOf = (url: string) => bases.find((b) => new URL(b).origin === new URL(url).origin) ?? 'none';
  const bases = ['http://a.example:8080/api/', 'https://b.example', 'http://10.0.0.1/v1/x'];
  const basePath = (base: string) => new URL(base).pathname.replace(/\/$/, '');

  it('whatever the path, it is refused or sent under a base URL', async () => {
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
      'user',
      'c',
      'urn',
      '+',
    );
    const path = fc.array(char, { maxLength: 12 }).map((parts) => parts.join(''));
    const { http, sent } = recorder(bases);
    await fc.assert(
      fc.asyncProperty(path, async (p) => {
        sent.length = 0;
        const refused = await http(p).then(
          () => false,
          (e: Error) => /names a host|Invalid URL|is not under the base URLs/.test(e.message) || e.message,
        );
        if (refused === true) {
          expect(sent).toEqual([]);
          return;
        }
        expect(refused).toBe(false);
        expect(sent).toHaveLength(1);
        const to = new URL(sent[0] as string);
        const base = baseOf(to.href);
        expect(to.origin).toBe(new URL(base).origin);
        // Dot segments (`..`, `%2e%2e`) are resolved as in any URL: they may leave the base path, never its host.
        if (!/[.%]/.test(p)) expect(`${to.pathname}/`.startsWith(`${basePath(base)}/`), to.href).toBe(true);
      }),
      { numRuns: 400 },
    );
  });

  it('a path from the root: the base path, then the path as it reads from the root', async () => {
    const char = fc.constantFrom('/', '\\', ' ', ':', '@', '?', '#', '%', '-', 'a', 'x', '1', 'é');
    const path = fc.array(char, { maxLength: 12 }).map((parts) => `/${parts.join('')}`);
    const { http, sent } = recorder(bases);
    await fc.assert(
      fc.asyncProperty(path, async (p) => {
        sent.length = 0;
        const refused = await http(p).then(
          () => false,
          () => true,
        );
        if (refused || !URL.canParse(p, 'http://o')) return; // names a host, or no path URL reads
        const alone = new URL(p, 'http://o');
        const base = baseOf(sent[0] as string);
        expect(sent.map((u) => new URL(u).href)).toEqual([
          new URL(`${basePath(base)}${alone.href.slice(alone.origin.length)}`, base).href,
        ]);
      }),
      { numRuns: 400 },
    );
  });
});
