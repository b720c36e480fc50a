/**
 * An absolute URL is under a base URL only if its path stays under the base path as every server
 * on the way may read it. Beyond `%2F`, `%5C` and `..;x` (encoded-slash.test.ts), servers read
 * an overlong UTF-8 `%c0%af` as `/` (Tomcat's CVE-2008-2938), IIS reads `%u002f`, servers that
 * fold Unicode (NFKC) read a full-width `／` or `．` as `/` or `.`, a proxy that decodes `%3F` or
 * `%23` hands the next server a query or a fragment, and C servers stop at a NUL. Each is refused;
 * legitimate next links are still sent, and a hostile URL costs linear time, not quadratic.
 */
import { createBus } from '@holdfast/core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type ResilientFetch, resilientFetch } from '../src/index.js';
import { type Upstream, upstream } from './upstream.js';

const made: ResilientFetch[] = [];
let api: Upstream;
beforeAll(async () => {
  api = await upstream((req, res) => res.end(`seen ${req.path}`));
});
afterAll(() => api.close());
afterEach(() => {
  for (const http of made.splice(0)) http.dispose();
  api.seen.length = 0;
});

function client(base = `${api.url}/v1`): ResilientFetch {
  const http = resilientFetch({ bus: createBus(), baseUrls: [base], retry: false });
  made.push(http);
  return http;
}

/** `sent <path>` or the refusal's code. */
function outcome(http: ResilientFetch, url: string): Promise<string> {
  return http(url, { headers: { 'x-api-key': 's3cret-key' } }).then(
    async (res) => `sent ${await res.text()}`,
    (e: Error & { code?: string }) => `refused ${e.code}`,
  );
}

describe('paths that other readings take above the base path', () => {
  const climbs = [
    '/v1/..%c0%afadmin', // overlong UTF-8 slash
    '/v1/..%C1%9Cadmin', // overlong UTF-8 backslash
    '/v1/%c0%ae%c0%ae/admin', // overlong UTF-8 dots
    '/v1/%e0%80%ae%e0%80%ae%e0%80%afadmin', // three-byte overlong
    '/v1/..%25c0%25afadmin', // an overlong slash, encoded again
    '/v1/..%u002fadmin', // IIS %u
    '/v1/%u002e%u002e/admin',
    '/v1/..%uff0fadmin',
    '/v1/..%ef%bc%8fadmin', // full-width solidus, U+FF0F
    '/v1/..\uFF0Fadmin', // as typed: URL encodes it as above
    '/v1/\uFF0E\uFF0E/admin', // full-width full stops
    '/v1/..\uFF3Cadmin', // full-width reverse solidus
    '/v1/\u2025/admin', // two dot leader: '..' under NFKC
    '/v1/..%3F/admin', // a proxy decodes it: the next server reads /v1/.. and a query
    '/v1/..%23/admin',
    '/v1/..%00/admin', // a C server stops at the NUL: /v1/..
    '/v1/..%2500',
  ];
  for (const path of climbs) {
    it(`${path}: refused with E_ABSOLUTE_URL, nothing sent`, async () => {
      expect(await outcome(client(), `${api.url}${path}`), path).toBe('refused E_ABSOLUTE_URL');
      expect(api.seen).toEqual([]);
    });
  }

  it('base URLs with a trailing slash, or on an IPv6 host, refuse them as well', async () => {
    for (const base of [`${api.url}/v1/`, `http://[::1]:${api.port}/v1`]) {
      const host = base.startsWith('http://[') ? `http://[::1]:${api.port}` : api.url;
      expect(await outcome(client(base), `${host}/v1/..%c0%afadmin`), base).toBe('refused E_ABSOLUTE_URL');
      expect(await outcome(client(base), `${host}/v1/..%3F/admin`), base).toBe('refused E_ABSOLUTE_URL');
    }
  });
});

describe('legitimate next links', () => {
  const sent = [
    '/v1/files/a%2Fb',
    '/v1/search?q=../x',
    '/v1/search?q=..%2F..%2Fx#..%2F..',
    '/v1/files/%c3%a9t%c3%a9', // UTF-8 that is no dot nor slash
    '/v1/files/x%ef%bc%8f..', // a full-width slash that stays under /v1
    '/v1/files/a%3Fb',
    '/v1/a/..%c0%afb', // down one, up one: still under
    '/v1/%2525252Fx', // nested a few times (a proxy chain), under
    '/v1/%c0', // a lone lead byte
  ];
  for (const path of sent) {
    it(`${path}: sent byte for byte`, async () => {
      const url = new URL(`${api.url}${path}`);
      expect(await outcome(client(), url.href)).toBe(`sent seen ${url.pathname}${url.search}`);
    });
  }
});

describe('cost', () => {
  it('a path encoded past any proxy chain (%25 nested 10,000 times) is refused, not decoded level by level', async () => {
    const url = `${api.url}/v1/x%${'25'.repeat(10_000)}2Fy`;
    expect(await outcome(client(), url)).toBe('refused E_ABSOLUTE_URL');
    expect(api.seen).toEqual([]);
  });

  it('a 1 MB hostile URL is refused in one bounded pass', { timeout: 20_000 }, async () => {
    const url = `${api.url}/v1/..%${'25'.repeat(500_000)}2Fadmin`;
    expect(await outcome(client(), url)).toBe('refused E_ABSOLUTE_URL');
    expect(await outcome(client(), `${api.url}/v1/${'a%2F'.repeat(250_000)}`)).toMatch(/^sent /);
  });
});

describe('refusals: a code, and no credentials in the message', () => {
  it('an absolute URL with credentials, or a path naming a host with them', async () => {
    const http = client();
    const seen: string[] = [];
    for (const url of [
      `http://user:s3cret@127.0.0.1:${api.port}/v1/x?token=t0p`,
      `http://user:s3cret@evil.example/x?token=t0p`,
      '//user:s3cret@evil.example/x?token=t0p',
      '/\\user:s3cret@evil.example/x',
      '/\t/user:s3cret@evil.example/x',
    ]) {
      const error = await http(url).then(
        () => undefined,
        (e: TypeError & { code?: string }) => e,
      );
      expect(error, url).toBeInstanceOf(TypeError);
      expect(error?.code, url).toMatch(/^E_(ABSOLUTE_URL|PATH_NAMES_HOST)$/);
      expect(error?.message, url).not.toMatch(/s3cret|t0p/);
      seen.push(`${error?.code}`);
    }
    expect(seen).toEqual([
      'E_ABSOLUTE_URL',
      'E_ABSOLUTE_URL',
      'E_PATH_NAMES_HOST',
      'E_PATH_NAMES_HOST',
      'E_PATH_NAMES_HOST',
    ]);
    expect(api.seen).toEqual([]);
  });
});
