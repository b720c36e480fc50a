/**
 * An absolute URL is "under" a base URL (`http://h/v1`) only if its path is under the base path.
 * URL's rules resolve `..` and `%2e%2e`, but keep `%2F` and `%5C` as data: `/v1/..%2fadmin` is
 * one segment to URL, and `/admin` to the many servers and proxies that decode `%2F` (or `%5C`,
 * or `%252F` twice) before they resolve dot segments. Such a URL is refused as any other URL
 * outside the base URLs is: against a real server that decodes, it reached /admin with the
 * caller's headers. Encoded slashes that stay under the base path (`a%2Fb`, as GitLab's API
 * takes a project's path) are sent as they are.
 */
import { posix } from 'node:path';
import { createBus } from '@holdfast/core';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type ResilientFetch, type ResilientFetchOptions, resilientFetch } from '../src/index.js';
import { type Upstream, upstream } from './upstream.js';

/** What a server that decodes percent-escapes (as a proxy in front of another does, twice) routes on. */
function decoded(path: string): string {
  let p = path.split('?')[0] as string;
  for (let previous = ''; previous !== p; ) {
    previous = p;
    p = p.replace(/%([0-9a-f]{2})/gi, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
  }
  return posix.normalize(p.replace(/\\/g, '/').replace(/\/\.\.;[^/]*/g, '/..'));
}

const made: ResilientFetch[] = [];
let api: Upstream;
beforeAll(async () => {
  api = await upstream((req, res) => {
    const at = decoded(req.path);
    res.end(
      at === '/v1' || at.startsWith('/v1/') ? `v1 ${at}` : `OUTSIDE /v1: ${at} (api key ${req.headers['x-api-key']})`,
    );
  });
});
afterAll(() => api.close());
afterEach(() => {
  for (const http of made.splice(0)) http.dispose();
  api.seen.length = 0;
});

function client(options: ResilientFetchOptions = {}): ResilientFetch {
  const http = resilientFetch({ bus: createBus(), baseUrls: [`${api.url}/v1`], retry: false, ...options });
  made.push(http);
  return http;
}

const headers = { 'x-api-key': 's3cret-key' };

describe('an absolute URL whose path leaves the base path once a server decodes it', () => {
  const escapes = [
    '/v1/..%2fadmin',
    '/v1/..%2Fadmin',
    '/v1/..%5cadmin',
    '/v1/..%5Cadmin',
    '/v1/x/..%2f..%2fadmin',
    '/v1/..%252fadmin',
    '/v1/..%25252Fadmin',
    '/v1/%2e%2e%2fadmin',
    '/v1/.%2E%2Fadmin',
    '/v1/%2E%2e%5C..%2Fadmin',
    '/v1/..;x%2fadmin',
    '/v1%2f..%2fadmin',
    '/v1/..%2fv1/x', // out and back in: refused all the same, as a climb above the base path
  ];
  for (const path of escapes) {
    it(`${path}: refused with a TypeError and code E_ABSOLUTE_URL, nothing sent`, async () => {
      const http = client();
      const url = `${api.url}${path}?token=t0p`;
      const outcome = await http(url, { headers }).then(
        async (res) => `sent: ${await res.text()}`,
        (e: Error & { code?: string }) => e,
      );
      expect(outcome, `${path} (the server reads ${decoded(path)})`).toBeInstanceOf(TypeError);
      const error = outcome as TypeError & { code?: string };
      expect(error.message).toMatch(/^fetch: an absolute URL \(.*\) is not under the base URLs; refused/);
      expect(error.message).toContain('token=***');
      expect(error.message).not.toContain('t0p');
      expect(error.code).toBe('E_ABSOLUTE_URL');
      expect(api.seen).toEqual([]);
    });
  }

  it('with allowAbsoluteUrls: true, sent where it says (the caller means it)', async () => {
    const http = client({ allowAbsoluteUrls: true });
    const res = await http(`${api.url}/v1/..%2fadmin`);
    expect(await res.text()).toMatch(/^OUTSIDE \/v1: \/admin/);
  });

  it('encoded slashes that stay under the base path go as they are, byte for byte', async () => {
    const http = client();
    for (const [path, reads] of [
      ['/v1/projects/group%2Fproject/issues', '/v1/projects/group/project/issues'],
      ['/v1/x%2f..%2fy', '/v1/y'],
      ['/v1/a%5Cb', '/v1/a/b'],
      ['/v1/%252e', '/v1'],
    ] as const) {
      const res = await http(`${api.url}${path}`);
      expect(await res.text(), path).toBe(`v1 ${reads}`);
      expect(api.seen.at(-1)?.path, path).toBe(path);
    }
  });

  it('property: no absolute URL that a decoding server reads outside /v1 is sent', { timeout: 30_000 }, async () => {
    const piece = fc.constantFrom(
      '/x',
      '/..',
      '..',
      '%2f',
      '%2F',
      '%5c',
      '%252f',
      '%2e',
      '%2E%2e',
      '.',
      ';p',
      '/',
      'y',
    );
    const http = client();
    const outcomes = { sent: 0, refused: 0 };
    await fc.assert(
      fc.asyncProperty(fc.array(piece, { maxLength: 8 }), async (pieces) => {
        const url = `${api.url}/v1/${pieces.join('')}`;
        const body = await http(url, { headers }).then(
          (res) => res.text(),
          (e: Error & { code?: string }) => {
            expect(e.code, url).toBe('E_ABSOLUTE_URL');
            return undefined;
          },
        );
        if (body === undefined) outcomes.refused++;
        else {
          outcomes.sent++;
          expect(body, url).toMatch(/^v1 /);
        }
      }),
      { numRuns: 300 },
    );
    expect(outcomes.sent).toBeGreaterThan(20);
    expect(outcomes.refused).toBeGreaterThan(20);
  });
});
