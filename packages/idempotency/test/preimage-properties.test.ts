import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fingerprintOf, PREIMAGE_BYTES, preimageOf } from '../src/http/fingerprint.js';
import { digestOfPreimage, sameRequest } from '../src/memory-store.js';

// An outsider's oracle for the bytes a short request is fingerprinted by, written from the
// documented format (length-prefixed method, URL, type, selected headers, `c`+encoding when sent,
// then `b<length>:` and the body), not from fingerprint.ts: whatever preimageOf gives must be
// exactly these bytes, whatever requests came before it (the scratch buffer keeps a head between
// requests) and whatever a getter does meanwhile.

type Header = string | readonly string[] | undefined;
interface Req {
  method: string;
  url: string;
  type: string | undefined;
  encoding: string | undefined;
  headers: Header[];
  body: Uint8Array;
}

function oracle(r: Req): Buffer {
  const field = (v: string) => `${v.length}:${v}`;
  const method = r.method.toUpperCase();
  let head = `${field(method)}${field(r.url)}${field(r.type ?? '')}`;
  for (const h of r.headers) head += field(h === undefined ? '' : typeof h === 'string' ? h : h.join(', '));
  if (r.encoding !== undefined) head += `c${field(r.encoding)}`;
  return Buffer.concat([Buffer.from(`${head}b${r.body.byteLength}:`, 'utf8'), r.body]);
}

const sha = (bytes: Buffer) => createHash('sha256').update(bytes).digest('base64url');

// Few characters, chosen to look like the format's own: digits, `:`, the field tags, `, `.
const tricky = fc.string({
  unit: fc.constantFrom('1', '2', '0', ':', 'b', 'c', 'e', 'j', ',', ' ', '/', 'é', 'a'),
  maxLength: 12,
});
const header: fc.Arbitrary<Header> = fc.oneof(
  fc.constant(undefined),
  tricky,
  fc.array(tricky, { minLength: 1, maxLength: 3 }),
);
const req: fc.Arbitrary<Req> = fc.record({
  method: fc.constantFrom('POST', 'post', 'PUT', 'PATCH', 'P1'),
  url: fc.oneof(
    fc.constantFrom('/a', '/a16:application/json', '/a?b=1'),
    tricky.map((s) => `/${s}`),
  ),
  type: fc.constantFrom(undefined, '', 'application/json', 'text/plain', '3:a/b', 'application/jsonb1:'),
  encoding: fc.constantFrom(undefined, '', 'gzip', 'b1:'),
  headers: fc.array(header, { maxLength: 2 }),
  body: fc.uint8Array({ minLength: 1, maxLength: 40 }).map((b) => Buffer.from(b)),
});

/** The same selected headers list for both requests (the option names a fixed number of them). */
const pair = fc.tuple(fc.nat(2), req, req).map(([n, a, b]) => [
  { ...a, headers: [...a.headers, undefined, undefined].slice(0, n) },
  { ...b, headers: [...b.headers, undefined, undefined].slice(0, n) },
]) as fc.Arbitrary<[Req, Req]>;

const pre = (r: Req) => preimageOf(r.method, r.url, r.type, r.encoding, r.body, r.headers);
const fp = (r: Req) => fingerprintOf(r.method, r.url, r.type, r.encoding, r.body, r.headers);

describe('preimageOf, against an oracle', () => {
  it('is the oracle bytes, for any two requests in a row; two preimages are equal only for equal bytes', () => {
    fc.assert(
      fc.property(pair, ([a, b]) => {
        // Either may come first: the second finds the first's head in the scratch buffer.
        for (const r of [a, b, a]) {
          const p = pre(r);
          const bytes = oracle(r);
          if (p === undefined) expect(bytes.length).toBeGreaterThan(PREIMAGE_BYTES);
          else expect(Buffer.from(p, 'latin1').equals(bytes)).toBe(true);
          expect(fp(r)).toBe(sha(bytes));
        }
        const [pa, pb] = [pre(a), pre(b)];
        if (pa !== undefined && pb !== undefined) expect(pa === pb).toBe(oracle(a).equals(oracle(b)));
        // A preimage against the other's fingerprint: the same answer as the bytes give.
        if (pa !== undefined) expect(sameRequest(pa, true, fp(b), false)).toBe(oracle(a).equals(oracle(b)));
      }),
      { numRuns: 4_000 },
    );
  });

  it('keeps no head of one request in another, interleaved with fingerprintOf and a getter that fingerprints another request', () => {
    const step = fc.record({ r: req, kind: fc.constantFrom('pre', 'fp'), inner: fc.option(req, { nil: undefined }) });
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 12 }), (steps) => {
        for (const { r, kind, inner } of steps) {
          const innerSeen: [Req, string | undefined, string][] = [];
          // A selected header whose getter works out another request's preimage and fingerprint
          // (it returns the same value every time it is read).
          const headers: Header[] = [...r.headers];
          if (inner !== undefined) {
            const value = headers[0];
            if (headers.length === 0) headers.push(undefined);
            Object.defineProperty(headers, 0, {
              enumerable: true,
              get() {
                innerSeen.push([inner, pre(inner), fp(inner)]);
                return value;
              },
            });
          }
          const outer: Req = { ...r, headers };
          const plain: Req = { ...r, headers: [...headers] };
          innerSeen.length = 0;
          const bytes = oracle(plain);
          innerSeen.length = 0;
          if (kind === 'pre') {
            const p = pre(outer);
            if (p !== undefined) expect(Buffer.from(p, 'latin1').equals(bytes)).toBe(true);
            else expect(bytes.length > PREIMAGE_BYTES || innerSeen.length > 0).toBe(true);
          } else {
            expect(fp(outer)).toBe(sha(bytes));
          }
          for (const [i, p, f] of innerSeen) {
            if (p !== undefined) expect(Buffer.from(p, 'latin1').equals(oracle(i))).toBe(true);
            expect(f).toBe(sha(oracle(i)));
          }
          // And after it, the next request finds a head that is its own.
          const p = pre(plain);
          if (p !== undefined) expect(Buffer.from(p, 'latin1').equals(bytes)).toBe(true);
          expect(digestOfPreimage(p ?? '')).toBe(p === undefined ? digestOfPreimage('') : sha(bytes));
        }
      }),
      { numRuns: 1_500 },
    );
  });

  it('is given at exactly PREIMAGE_BYTES and not one byte past it; never for an empty body', () => {
    const head = oracle({
      method: 'POST',
      url: '/x',
      type: undefined,
      encoding: undefined,
      headers: [],
      body: Buffer.alloc(0),
    });
    // `b0:` is 3 bytes; a body of n bytes (10..99) writes `b<2 digits>:`, 4 bytes.
    const fits = PREIMAGE_BYTES - (head.length - 3) - 4;
    for (const n of [fits - 1, fits, fits + 1]) {
      const r: Req = {
        method: 'POST',
        url: '/x',
        type: undefined,
        encoding: undefined,
        headers: [],
        body: Buffer.alloc(n, 0xff),
      };
      const p = pre(r);
      expect(oracle(r).length <= PREIMAGE_BYTES).toBe(p !== undefined);
      if (p !== undefined) expect(p.length).toBe(oracle(r).length);
    }
    expect(
      pre({ method: 'POST', url: '/x', type: undefined, encoding: undefined, headers: [], body: Buffer.alloc(0) }),
    ).toBe(undefined);
  });
});
