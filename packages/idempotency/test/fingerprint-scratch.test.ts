import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type RequestShape, requestFingerprint } from '../src/http/index.js';

// A body's fingerprint is hashed from one buffer reused by every request, the head of the last
// request left in it when the next one's fields are the same. Small alphabets: most pairs share
// most fields, so the kept head is used, and just missed, often.
const request = fc.record({
  method: fc.constantFrom('POST', 'post', 'PUT', 'PATCH'),
  url: fc.constantFrom('/orders', '/orders?x=1', '/order', '/ordersé', '/a'),
  contentType: fc.constantFrom(undefined, 'application/json', 'text/plain', 'application/json; charset=utf-8'),
  contentEncoding: fc.constantFrom(undefined, 'gzip', ''),
  headers: fc.constantFrom<RequestShape['headers']>(
    [],
    ['t1'],
    ['t2'],
    [undefined],
    [['t1', 't2']],
    ['t1, t2'],
    ['t1', undefined],
    ['', 't1'],
  ),
  body: fc.oneof(
    fc.constantFrom('', '{"a":1}', '{"a":2}', '{"a":1} ', 'é', '\u{1F600}'),
    fc.string({ unit: 'binary', maxLength: 40 }),
  ),
});

type Request = typeof request extends fc.Arbitrary<infer T> ? T : never;

/** What counts, as one string: two requests with the same one are the same request. */
function counts(r: Request): string {
  const type = r.contentType === 'application/json; charset=utf-8' ? 'application/json; charset=utf-8' : r.contentType;
  return JSON.stringify([
    r.method.toUpperCase(),
    r.url,
    type ?? '',
    r.contentEncoding ?? null,
    r.headers.map((h) => (h === undefined ? '' : [h].flat().join(', '))),
    r.body,
  ]);
}

const bytesOf = (r: Request) => requestFingerprint({ ...r, body: Buffer.from(r.body) });
// A string body takes the string path, which no buffer is shared by: the same bytes, hashed apart.
const textOf = (r: Request) => requestFingerprint(r);

describe('fingerprint of a body hashed in the shared buffer', () => {
  it('differs for any two requests that differ in a byte that counts, and is what the string path hashes, in any order', () => {
    fc.assert(
      fc.property(fc.array(request, { minLength: 2, maxLength: 12 }), (requests) => {
        const first = requests.map(bytesOf);
        // Again, backwards: each head now follows another one than the first time.
        const again = [...requests].reverse().map(bytesOf).reverse();
        expect(again).toEqual(first);
        for (let i = 0; i < requests.length; i++) {
          expect(first[i]).toBe(textOf(requests[i] as Request));
          for (let j = 0; j < i; j++) {
            const same = counts(requests[i] as Request) === counts(requests[j] as Request);
            expect(first[i] === first[j]).toBe(same);
          }
        }
      }),
      { numRuns: 400 },
    );
  });

  it('does not keep a body of one request in the next one (a shorter body after a longer one)', () => {
    const shape = { method: 'POST', url: '/orders', contentType: 'application/json', headers: [] };
    const short = requestFingerprint({ ...shape, body: Buffer.from('{"a":1}') });
    requestFingerprint({ ...shape, body: Buffer.from('{"a":1}{"b":2}') });
    expect(requestFingerprint({ ...shape, body: Buffer.from('{"a":1}') })).toBe(short);
    expect(requestFingerprint({ ...shape, body: '{"a":1}' })).toBe(short);
  });
});

describe('fingerprint of a body hashed in the shared buffer, called again from inside itself', () => {
  it('a body whose byteLength getter fingerprints another request still gets its own fingerprint', () => {
    const shape = { method: 'POST', url: '/orders', contentType: 'application/json', headers: [] };
    const text = '{"a":1}';
    const expected = requestFingerprint({ ...shape, body: text });
    let inner = '';
    // Hostile: a Uint8Array whose length getter, read while the outer head is in the buffer,
    // fingerprints a request with another head (which would write over the outer one's bytes).
    class Sneaky extends Uint8Array {
      override get byteLength(): number {
        // On every read: the reads before the head is written, and the ones after.
        inner = requestFingerprint({ ...shape, url: '/other', body: Buffer.from(text) });
        return super.byteLength;
      }
    }
    expect(requestFingerprint({ ...shape, body: new Sneaky(Buffer.from(text)) })).toBe(expected);
    expect(inner).toBe(requestFingerprint({ ...shape, url: '/other', body: text }));
  });
});
