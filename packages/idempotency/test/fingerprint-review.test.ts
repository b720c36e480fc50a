import * as crypto from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type RequestShape, requestFingerprint } from '../src/http/index.js';

// Review of the fingerprint hashed from one reused buffer (engine19): a digest must be the bytes
// c9fa7d2 hashed (records stored before still replay), whatever request came before, at the sizes
// where the buffer's path starts and stops (a head of 16 KiB, a body of 64 KiB, the buffer's 80 KiB).

/**
 * c9fa7d2's fingerprint of a request whose content type is canonical (no parameters, lower case),
 * its body bytes, text or none: the head's UTF-8 bytes, then `b<length>:` and the body, or `e`.
 * Streamed into one Hash: independent of any buffer or one-shot path.
 */
function before(r: Shape): string {
  const method = r.method.toUpperCase();
  const type = r.contentType ?? '';
  const field = (value: string) => `${value.length}:${value}`;
  let head = `${method.length}:${method}${r.url.length}:${r.url}${type.length}:${type}`;
  for (const value of r.headers) head += field(value === undefined ? '' : [value].flat().join(', '));
  if (r.contentEncoding !== undefined) head += `c${field(r.contentEncoding)}`;
  const hash = crypto.createHash('sha256').update(head);
  const body = r.body;
  if (body === undefined || body.length === 0) return hash.update('e').digest('base64url');
  if (typeof body === 'string') return hash.update(`b${Buffer.byteLength(body)}:${body}`).digest('base64url');
  return hash.update(`b${body.byteLength}:`).update(body).digest('base64url');
}

type Shape = Omit<RequestShape, 'body'> & { body: string | Uint8Array | undefined };

// Sizes where the path changes: the buffer's body limit (65,536), its head limit (16,384), and
// the whole buffer (81,936); each ±1.
const BODY_SIZES = [1, 2, 8_191, 8_192, 8_193, 65_535, 65_536, 65_537, 81_919, 81_920, 81_921, 81_936, 81_937];
const HEAD_URL_SIZES = [16_340, 16_350, 16_356, 16_357, 16_358, 16_359, 16_360, 16_370];

/** Bytes of `size`, each from `seed`: two bodies of one size differ when their seeds do. */
function bytes(size: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) out[i] = (seed * 31 + i * 7) & 0xff;
  return out;
}

const body = fc.oneof(
  fc.constant(undefined),
  fc.constantFrom('', '{"a":1}', 'é', '\u{1F600}'),
  fc.uint8Array({ maxLength: 40 }),
  fc
    .record({ size: fc.constantFrom(...BODY_SIZES), seed: fc.integer({ min: 0, max: 3 }) })
    .map(({ size, seed }) => bytes(size, seed)),
  // A view inside a bigger buffer, other bytes on both sides of it.
  fc
    .record({ text: fc.string({ unit: 'binary', minLength: 1, maxLength: 30 }), before: fc.nat(9), after: fc.nat(9) })
    .map(({ text, before, after }) => {
      const inner = Buffer.from(text);
      const all = Buffer.concat([Buffer.alloc(before, 0xee), inner, Buffer.alloc(after, 0xdd)]);
      return new Uint8Array(all.buffer, all.byteOffset + before, inner.byteLength);
    }),
);

const url = fc.oneof(
  fc.constantFrom(
    '/orders',
    '/orders?a=1',
    '/orders?a=1&a=2',
    '/orders%3Fa=1',
    '/ordersé',
    '/orders\u00c3\u00a9',
    '/🙂',
    '/\ud800x',
    '/x\udfff',
  ),
  // Heads around the 16 KiB the buffer keeps; a two-byte character may straddle the limit.
  fc
    .record({ size: fc.constantFrom(...HEAD_URL_SIZES), wide: fc.boolean() })
    .map(({ size, wide }) => `/${'x'.repeat(size - 2)}${wide ? 'é' : 'y'}`),
);

const shape: fc.Arbitrary<Shape> = fc.record({
  method: fc.constantFrom('POST', 'post', 'PUT', 'MKCOL', 'PÖST'),
  url,
  contentType: fc.constantFrom(undefined, '', 'application/json', 'text/plain', 'application/octet-stream'),
  contentEncoding: fc.constantFrom(undefined, '', 'gzip'),
  headers: fc.array(
    fc.oneof(
      fc.constant(undefined),
      fc.constantFrom('', 't1', 'T1', ' t1', 't1 ', 'tenant-ä', '1:x', '\udc00'),
      fc.constantFrom<readonly string[]>(['t1', 't2'], ['t1'], [], ['', '']),
    ),
    { maxLength: 3 },
  ),
  body,
});

/** The body as the middleware may hand it: as generated, or its bytes in a Buffer / as a string. */
function asSent(r: Shape, form: number): Shape {
  if (r.body === undefined || typeof r.body === 'string')
    return form === 1 && typeof r.body === 'string' ? { ...r, body: Buffer.from(r.body) } : r;
  return form === 2 ? { ...r, body: Buffer.from(r.body) } : r;
}

/** A request as a server gets many of: the head kept in the buffer between them. */
const ORDER: Shape = {
  method: 'POST',
  url: '/orders',
  contentType: 'application/json',
  headers: ['t1'],
  body: undefined,
};

describe('the reused-buffer fingerprint against c9fa7d2', () => {
  it('hashes the bytes c9fa7d2 hashed, for any request after any other, bodies and heads at every size limit', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(shape, fc.integer({ min: 0, max: 2 })), { minLength: 1, maxLength: 8 }), (sent) => {
        const requests = sent.map(([r, form]) => asSent(r, form));
        // Each one twice over, and each after each: the head kept from the one before is reused or rewritten.
        for (const order of [requests, [...requests].reverse(), requests]) {
          for (const r of order) expect(requestFingerprint(r)).toBe(before(r));
        }
      }),
      { numRuns: 300 },
    );
  });

  it('hashes the bytes c9fa7d2 hashed when each request is the one before with one field changed (the kept head just missed)', () => {
    const step = fc.tuple(fc.constantFrom('method', 'url', 'contentType', 'contentEncoding', 'headers', 'body'), shape);
    fc.assert(
      fc.property(shape, fc.array(step, { minLength: 1, maxLength: 10 }), (first, steps) => {
        let r = first;
        expect(requestFingerprint(r)).toBe(before(r));
        for (const [name, from] of steps) {
          r = { ...r, [name]: from[name] };
          expect(requestFingerprint(r)).toBe(before(r));
        }
      }),
      { numRuns: 500 },
    );
  });

  it('a body changed after it was hashed, then sent again, gets its new digest (nothing of it kept)', () => {
    const r = ORDER;
    const b = Buffer.from('{"amount":100}');
    const first = requestFingerprint({ ...r, body: b });
    b[10] = 0x39; // {"amount":900}
    expect(requestFingerprint({ ...r, body: b })).toBe(before({ ...r, body: Buffer.from('{"amount":900}') }));
    expect(requestFingerprint({ ...r, body: Buffer.from('{"amount":100}') })).toBe(first);
    // A header's list changed in place between two requests (the same array object): its head is
    // not the kept one.
    const list = ['t1', 't2'];
    const listed = { ...r, headers: [list], body: Buffer.from('{}') };
    expect(requestFingerprint(listed)).toBe(before(listed));
    list[1] = 't3';
    expect(requestFingerprint(listed)).toBe(before(listed));
  });

  it('a getter that throws in the middle leaves later requests (and the kept head) right', () => {
    const r = ORDER;
    requestFingerprint({ ...r, body: Buffer.from('{}') });
    let reads = 0;
    // Throws on the third read of its length: after the head is in the buffer (the first two are
    // read before it is written).
    class Throws extends Uint8Array {
      override get byteLength(): number {
        if (++reads === 3) throw new Error('boom');
        return super.byteLength;
      }
    }
    expect(() => requestFingerprint({ ...r, url: '/other', body: new Throws(Buffer.from('{"a":1}')) })).toThrow('boom');
    // A header value whose join throws, while the head is being made.
    const hostile = {
      toString: () => {
        throw new Error('header');
      },
    } as unknown as string;
    expect(() => requestFingerprint({ ...r, url: '/third', headers: [[hostile]], body: Buffer.from('{}') })).toThrow(
      'header',
    );
    for (const next of [
      { ...r, body: Buffer.from('{"a":1}') },
      { ...r, url: '/other', body: Buffer.from('{"a":1}') },
      { ...r, url: '/third', body: Buffer.from('{}') },
      { ...r, body: Buffer.from('{"a":1}') },
    ]) {
      expect(requestFingerprint(next)).toBe(before(next));
    }
  });
});
