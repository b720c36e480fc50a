import { describe, expect, it } from 'vitest';
import {
  type HttpResponse,
  pickHeaders,
  problem,
  problemTypes,
  type RequestShape,
  replayableHeaders,
  requestFingerprint,
  sameFingerprint,
} from '../src/http/index.js';

const base: RequestShape = {
  method: 'POST',
  url: '/orders',
  contentType: 'application/json',
  body: { amount: 5, items: [{ sku: 'a', qty: 1 }] },
  headers: [],
};
const fp = (change: Partial<RequestShape>) => requestFingerprint({ ...base, ...change });

describe('requestFingerprint', () => {
  it('hashes bytes as sent, whatever the type; only a parsed value (bytes gone) is canonical', () => {
    const text = '{ "items": [ { "qty": 1, "sku": "a" } ],\n "amount": 5 }';
    expect(fp({ body: text })).toBe(fp({ body: Buffer.from(text) }));
    expect(fp({ body: text })).not.toBe(fp({ body: JSON.stringify(JSON.parse(text)) }));
    expect(fp({ body: text })).not.toBe(fp({ body: text, contentType: 'text/plain' }));
    expect(fp({})).toBe(fp({ body: { items: [{ qty: 1, sku: 'a' }], amount: 5 } }));
    expect(fp({})).not.toBe(fp({ body: JSON.stringify(base.body) }));
  });

  it('changes with the method, the URL, any body value and the selected headers', () => {
    const all = [
      fp({}),
      fp({ method: 'PATCH' }),
      fp({ url: '/orders?x=1' }),
      fp({ body: { amount: 6, items: [{ sku: 'a', qty: 1 }] } }),
      fp({ body: { amount: 5, items: [{ sku: 'a', qty: 1 }, null] } }),
      fp({ body: { amount: '5', items: [{ sku: 'a', qty: 1 }] } }),
      fp({ headers: ['tenant-a'] }),
      fp({ headers: ['tenant-b'] }),
      fp({ body: undefined }),
    ];
    expect(new Set(all).size).toBe(all.length);
  });

  it('hashes a non-JSON body as raw bytes: one changed byte, one changed fingerprint', () => {
    const bytes = Buffer.from([1, 2, 3, 4]);
    const shape = { contentType: 'application/octet-stream', body: bytes };
    expect(fp(shape)).toBe(fp({ ...shape, body: Buffer.from([1, 2, 3, 4]) }));
    expect(fp(shape)).not.toBe(fp({ ...shape, body: Buffer.from([1, 2, 3, 5]) }));
    expect(fp({ contentType: 'text/plain', body: 'a  b' })).not.toBe(fp({ contentType: 'text/plain', body: 'a b' }));
  });

  it('keeps field boundaries: a URL and a header cannot trade characters', () => {
    expect(fp({ url: '/a', headers: ['b'] })).not.toBe(fp({ url: '/ab', headers: [''] }));
    expect(fp({ headers: ['a', 'b'] })).not.toBe(fp({ headers: ['ab', undefined] }));
  });

  it('hashes invalid JSON under a JSON content type as its bytes too', () => {
    expect(fp({ body: '{not json' })).toBe(fp({ body: Buffer.from('{not json') }));
    expect(fp({ body: '{not json' })).not.toBe(fp({ body: '{not json ' }));
  });

  it('compares fingerprints for equality', () => {
    expect(sameFingerprint(fp({}), fp({}))).toBe(true);
    expect(sameFingerprint(fp({}), fp({ url: '/x' }))).toBe(false);
    expect(sameFingerprint(fp({}), 'short')).toBe(false);
  });
});

describe('response headers', () => {
  it('stores the allow-list and replayHeaders, never credentials or hop-by-hop headers', () => {
    const allowed = replayableHeaders(['X-Trace', 'Set-Cookie', 'Transfer-Encoding', 'X-Hop']);
    const picked = pickHeaders(
      {
        'Content-Type': 'application/json',
        Location: '/orders/1',
        ETag: '"1"',
        'Cache-Control': 'no-store',
        Link: '</x>',
        'X-Trace': 'abc',
        'X-Other': 'no',
        'Set-Cookie': ['a=1', 'b=2'],
        'WWW-Authenticate': 'Bearer',
        'Transfer-Encoding': 'chunked',
        'Content-Length': 10,
        Connection: 'x-hop',
        'X-Hop': 'dropped',
        'Idempotent-Replayed': 'true',
      },
      allowed,
    );
    expect(picked).toEqual({
      'content-type': 'application/json',
      location: '/orders/1',
      etag: '"1"',
      'cache-control': 'no-store',
      link: '</x>',
      'x-trace': 'abc',
    });
  });
});

describe('problems', () => {
  it.each([
    ['missingKey', 400],
    ['invalidKey', 400],
    ['inProgress', 409],
    ['mismatch', 422],
    ['storeUnavailable', 503],
  ] as const)('%s is a %i application/problem+json with a stable type and a detail', (kind, status) => {
    const res: HttpResponse = problem(kind);
    expect(res.status).toBe(status);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(res.headers['content-length']).toBe(String(res.body.length));
    expect(JSON.parse(res.body.toString())).toEqual({
      type: problemTypes[kind],
      title: expect.any(String),
      status,
      detail: expect.any(String),
    });
  });
});
