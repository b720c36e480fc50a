import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { replayOf } from '../src/http/capture.js';
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

  it('covers Content-Encoding: the same bytes gzip-encoded and not are two requests', () => {
    const gz = { contentType: 'application/octet-stream', body: Buffer.from([0x1f, 0x8b, 8, 0]) };
    expect(fp(gz)).not.toBe(fp({ ...gz, contentEncoding: 'gzip' }));
    expect(fp({ ...gz, contentEncoding: 'gzip' })).toBe(fp({ ...gz, contentEncoding: 'gzip' }));
    expect(fp({ ...gz, contentEncoding: 'gzip' })).not.toBe(fp({ ...gz, contentEncoding: 'br' }));
    // Absent is not the same as empty, and cannot be faked through the URL or a header.
    expect(fp({ ...gz, contentEncoding: '' })).not.toBe(fp(gz));
    expect(fp({ ...gz, headers: ['c1:x'] })).not.toBe(fp({ ...gz, headers: [''], contentEncoding: 'x' }));
  });

  it('takes an empty body as no body (Content-Length: 0 and a chunked body of zero bytes)', () => {
    expect(fp({ body: Buffer.alloc(0) })).toBe(fp({ body: undefined }));
    expect(fp({ body: '' })).toBe(fp({ body: undefined }));
    expect(fp({ body: new Uint8Array(0) })).toBe(fp({ body: null }));
    expect(fp({ body: Buffer.from(' ') })).not.toBe(fp({ body: undefined }));
  });

  it('compares fingerprints for equality', () => {
    expect(sameFingerprint(fp({}), fp({}))).toBe(true);
    expect(sameFingerprint(fp({}), fp({ url: '/x' }))).toBe(false);
    expect(sameFingerprint(fp({}), 'short')).toBe(false);
  });
});

describe('requestFingerprint format (records outlive a release: a retry after an upgrade must match)', () => {
  const shape = (body: unknown, extra: Partial<RequestShape> = {}): RequestShape => ({
    method: 'post',
    url: '/orders?x=1',
    contentType: 'application/json',
    headers: ['a', ['b', 'c'], undefined],
    body,
    ...extra,
  });

  it('gives the values it gave before (ASCII, UTF-8 and a view into a larger buffer, with an encoding)', () => {
    const view = new Uint8Array(Uint8Array.from(Buffer.from('xx{"a":1}yy')).buffer, 2, 7);
    expect(requestFingerprint(shape(Buffer.from('{"amount":4200,"currency":"eur"}')))).toBe(
      'LeB7uwapNI-T_jVFLtpsyFMiXJ6Pf193hkMHtB9Bcvo',
    );
    expect(requestFingerprint(shape(Buffer.from('{"name":"Zoë 🚀"}')))).toBe(
      'Vcmxay2itZ4L33quM8mEwz03whv_Sdo1Xryp9MHxHF4',
    );
    expect(requestFingerprint(shape(view, { contentEncoding: 'gzip' }))).toBe(
      'KWLP-zJfoQPEpO7AJFBpH0DO9el0PORpKWDk3gcOxcE',
    );
  });

  it('property: is SHA-256 of the length-prefixed head followed by the body bytes, for any bytes', () => {
    const field = (v: string) => `${v.length}:${v}`;
    const reference = (s: RequestShape, bytes: Uint8Array) => {
      let head = field(s.method.toUpperCase()) + field(s.url) + field(s.contentType ?? '');
      for (const v of s.headers) head += field(v === undefined ? '' : [v].flat().join(', '));
      if (s.contentEncoding !== undefined) head += `c${field(s.contentEncoding)}`;
      return createHash('sha256')
        .update(Buffer.from(`${head}b${bytes.byteLength}:`))
        .update(bytes)
        .digest('base64url');
    };
    const bytes = fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 300 }),
      fc.uint8Array({ min: 0, max: 0x7f, minLength: 1, maxLength: 300 }),
      fc.string({ minLength: 1, maxLength: 100 }).map((t) => new Uint8Array(Buffer.from(t))),
      // Around the size where ASCII bodies stop being hashed as one string.
      fc.integer({ min: 8_180, max: 8_200 }).map((n) => new Uint8Array(n).fill(0x61)),
    );
    fc.assert(
      fc.property(
        fc.string(),
        fc.string(),
        // A type in its canonical form (see the media-type tests below for the others).
        fc.option(
          fc.string().filter((t) => !/[A-Z;\s"]/.test(t)),
          { nil: undefined },
        ),
        fc.option(fc.string(), { nil: undefined }),
        bytes,
        fc.nat({ max: 3 }),
        fc.boolean(),
        (method, url, contentType, contentEncoding, body, offset, asBuffer) => {
          const padded = new Uint8Array(body.byteLength + offset + 2);
          padded.set(body, offset);
          const view = new Uint8Array(padded.buffer, offset, body.byteLength);
          const s: RequestShape = {
            method: method || 'POST',
            url,
            contentType,
            contentEncoding,
            headers: [contentType],
            body: asBuffer ? Buffer.from(view.buffer, view.byteOffset, view.byteLength) : view,
          };
          expect(requestFingerprint(s)).toBe(reference(s, view));
        },
      ),
      { numRuns: 500 },
    );
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

describe('credential headers and bodiless replays', () => {
  it('never stores credential-bearing response headers, even when listed', () => {
    const listed = ['authentication-info', 'proxy-authentication-info', 'authorization', 'proxy-authorization'];
    const allowed = replayableHeaders([...listed, 'www-authenticate', 'x-kept']);
    expect([...allowed].filter((name) => listed.includes(name) || name === 'www-authenticate')).toEqual([]);
    expect(allowed.has('x-kept')).toBe(true);
  });

  it('replays a 204 and a 304 with no body and no Content-Length; a 200 with both', () => {
    for (const status of [204, 304]) {
      const replay = replayOf({ status, headers: { etag: '"1"' }, body: new Uint8Array(0) });
      expect(replay.headers['content-length']).toBeUndefined();
      expect(replay.body.byteLength).toBe(0);
      expect(replay.headers.etag).toBe('"1"');
    }
    const ok = replayOf({ status: 200, headers: {}, body: new Uint8Array([1, 2]) });
    expect(ok.headers['content-length']).toBe('2');
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

describe('requestFingerprint of a media type: case-insensitive, as every parser reads it (RFC 9110 8.3.1)', () => {
  const form = (boundary: string) =>
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="a"\r\n\r\nx\r\n--${boundary}--\r\n`);
  const upload = (type: string, boundary: string) => fp({ contentType: type, body: form(boundary) });
  const json = (type: string) => fp({ contentType: type, body: Buffer.from('{"a":1}') });

  it('an upload sent as Multipart/Form-Data and retried as multipart/form-data (a new boundary) is one request', () => {
    const first = upload('Multipart/Form-Data; Boundary=AaB03x', 'AaB03x');
    expect(first).toBe(upload('multipart/form-data; boundary=xyz', 'xyz'));
    expect(first).toBe(upload('MULTIPART/FORM-DATA;BOUNDARY="q1"', 'q1'));
    // Another subtype, another field, another value: still another request.
    expect(first).not.toBe(upload('multipart/mixed; boundary=xyz', 'xyz'));
    expect(first).not.toBe(fp({ contentType: 'multipart/form-data; boundary=b', body: form('b').subarray(1) }));
  });

  it('JSON and urlencoded types in any case, charset in any case, spaces around `;`: one request each', () => {
    expect(json('Application/JSON')).toBe(json('application/json'));
    expect(json('application/json;Charset=UTF-8')).toBe(json('application/json; charset=utf-8'));
    expect(json('application/json; charset="utf-8"')).toBe(json('application/json; charset=utf-8'));
    const form = (type: string) => fp({ contentType: type, body: Buffer.from('a=1') });
    expect(form('Application/X-WWW-Form-Urlencoded')).toBe(form('application/x-www-form-urlencoded'));
    // A parameter's value other than a charset is kept as sent; another type is another request.
    expect(json('application/json; profile=A')).not.toBe(json('application/json; profile=a'));
    expect(json('application/json')).not.toBe(json('text/json'));
  });

  it('a type already canonical hashes as it did before (records outlive a release)', () => {
    const sent = (type: string) => fp({ contentType: type, body: Buffer.from('{"a":1}') });
    const head = (type: string) => `4:POST7:/orders${type.length}:${type}b7:{"a":1}`;
    for (const type of ['application/json', 'application/json; charset=utf-8', 'text/plain'])
      expect(sent(type)).toBe(createHash('sha256').update(head(type)).digest('base64url'));
  });
});

describe('requestFingerprint of a multipart body: without its boundary, which each send draws afresh', () => {
  const form = (boundary: string, parts: string[]) =>
    Buffer.from(`${parts.map((p) => `--${boundary}\r\n${p}\r\n`).join('')}--${boundary}--\r\n`, 'latin1');
  const part = (name: string, value: string) => `Content-Disposition: form-data; name="${name}"\r\n\r\n${value}`;
  const multipart = (boundary: string, parts: string[], type = `multipart/form-data; boundary=${boundary}`) =>
    fp({ contentType: type, body: form(boundary, parts) });

  it('the same parts under two boundaries (quoted or not, the parameter in any case) are one request', () => {
    const parts = [part('a', 'x'), part('file', 'bytes')];
    expect(multipart('AaB03x', parts)).toBe(multipart('----formdata-undici-0123', parts));
    expect(multipart('AaB03x', parts)).toBe(multipart('q', parts, 'multipart/form-data; Boundary="q"'));
  });

  it('other parts, another value, another type or subtype: another request', () => {
    const parts = [part('a', 'x'), part('file', 'bytes')];
    expect(multipart('b', parts)).not.toBe(multipart('b', [part('a', 'x'), part('file', 'bytez')]));
    expect(multipart('b', parts)).not.toBe(multipart('b', [part('a', 'x')]));
    expect(multipart('b', parts)).not.toBe(multipart('b', parts, 'multipart/mixed; boundary=b'));
    // The bytes as sent, with no boundary parameter: not the same as a multipart body without one.
    expect(multipart('b', parts)).not.toBe(fp({ contentType: 'multipart/form-data\n', body: form('b', parts) }));
  });

  it('property: a value that holds the other boundary still splits as its own body does', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 12 }), { minLength: 1, maxLength: 4 }), (values) => {
        const parts = values.map((v, i) => part(`f${i}`, v));
        expect(multipart('one', parts)).toBe(multipart('two', parts));
        // Joining two values into one is another request, whatever they hold.
        if (values.length >= 2) {
          const joined = [part('f0', `${values[0]}\r\n--one\r\n${values[1]}`), ...parts.slice(2)];
          expect(multipart('one', parts)).not.toBe(multipart('two', joined));
        }
      }),
    );
  });
});

describe('requestFingerprint of a hostile multipart body', () => {
  it('a megabyte of delimiters is hashed about as fast as a megabyte of text (it took seconds); past 1,000 parts the boundary counts', () => {
    const hostile = (boundary: string) => Buffer.from(`\r\n--${boundary}`.repeat(200_000));
    const timed = (contentType: string, body: Buffer) => {
      const started = performance.now();
      const fingerprint = fp({ contentType, body });
      return { fingerprint, ms: performance.now() - started };
    };
    const text = timed('text/plain', Buffer.alloc(1_000_000, 'x'));
    const a = timed('multipart/form-data; boundary=a', hostile('a'));
    const b = timed('multipart/form-data; boundary=b', hostile('b'));
    expect(Math.max(a.ms, b.ms)).toBeLessThan(Math.max(250, text.ms * 20));
    expect(a.fingerprint).not.toBe(b.fingerprint);
    const form = (boundary: string, parts: number) =>
      fp({
        contentType: `multipart/form-data; boundary=${boundary}`,
        body: Buffer.from(
          `${`--${boundary}\r\nContent-Disposition: form-data; name="f"\r\n\r\nv\r\n`.repeat(parts)}--${boundary}--\r\n`,
        ),
      });
    expect(form('one', 999)).toBe(form('two', 999));
    expect(form('one', 1_001)).not.toBe(form('two', 1_001));
  });
});

/** busboy, the parser multer reads uploads with: the one whose reading the fingerprint must agree with. */
type Busboy = (config: { headers: Record<string, string> }) => import('node:stream').Writable & {
  on(event: 'field', listener: (name: string, value: string) => void): unknown;
  on(
    event: 'file',
    listener: (name: string, stream: import('node:stream').Readable, info: { filename: string }) => void,
  ): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  on(event: 'close', listener: () => void): unknown;
};
const busboy = createRequire(createRequire(import.meta.url).resolve('multer'))('busboy') as Busboy;

describe('requestFingerprint of a multipart body, against the parser that reads it (busboy, as multer) (review-idem)', () => {
  /** The parts busboy reads from a body under a content type: what a handler gets. */
  function parsed(contentType: string, body: Buffer): Promise<string[]> {
    return new Promise((resolve) => {
      const out: string[] = [];
      let parser: ReturnType<typeof busboy>;
      try {
        parser = busboy({ headers: { 'content-type': contentType } });
      } catch (error) {
        return resolve([`refused: ${(error as Error).message}`]);
      }
      parser.on('field', (name, value) => out.push(`field ${JSON.stringify(name)}=${JSON.stringify(value)}`));
      parser.on('file', (name, stream, info) => {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () =>
          out.push(
            `file ${JSON.stringify(name)} ${JSON.stringify(info.filename)}=${Buffer.concat(chunks).toString('latin1')}`,
          ),
        );
      });
      parser.on('error', (error: Error) => resolve([...out, `error: ${error.message}`]));
      parser.on('close', () => resolve(out));
      parser.end(body);
    });
  }
  const multipartFp = (contentType: string, body: Buffer) => fp({ contentType, body });
  // RFC 2046 bchars (no space): what fetch, browsers and curl draw boundaries from.
  const bchar = fc.constantFrom(
    ...`0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=?`.split(''),
  );
  const boundaryArb = fc.string({ unit: bchar, minLength: 1, maxLength: 12 });
  const valueArb = fc.string({ unit: fc.constantFrom('a', '-', '\r', '\n', '"', 'x', '\\', ';'), maxLength: 10 });
  const bodyOf = (boundary: string, values: string[]) =>
    Buffer.from(
      `${values.map((v, i) => `--${boundary}\r\nContent-Disposition: form-data; name="f${i}"\r\n\r\n${v}\r\n`).join('')}--${boundary}--\r\n`,
      'latin1',
    );

  it('a `boundary=` inside another quoted parameter is not the boundary: two different files never hash equal', async () => {
    const type = (decoy: string) => `multipart/form-data; x="; boundary=${decoy}"; boundary=REAL`;
    const body = (decoy: string) =>
      Buffer.from(`--REAL\r\nContent-Disposition: form-data; name="f"\r\n\r\npay\r\n--${decoy}"to\r\n--REAL--\r\n`);
    expect(await parsed(type('alice'), body('alice'))).not.toEqual(await parsed(type('bobby'), body('bobby')));
    expect(multipartFp(type('alice'), body('alice'))).not.toBe(multipartFp(type('bobby'), body('bobby')));
  });

  it('a quoted boundary with a backslash escape (busboy unescapes it): hashed as sent, never equal for different parts', async () => {
    const a = 'multipart/form-data; boundary="a\\"b"';
    const c = 'multipart/form-data; boundary="c\\"b"';
    const body = bodyOf('a"b', ['one']);
    expect(await parsed(a, body)).not.toEqual(await parsed(c, body));
    expect(multipartFp(a, body)).not.toBe(multipartFp(c, body));
  });

  it('a body given as a string (a text parser took it) splits as its bytes do: one text under two boundaries is two requests', async () => {
    const text = bodyOf('X', ['one', 'two']).toString('latin1');
    const [x, y] = ['multipart/form-data; boundary=X', 'multipart/form-data; boundary=Y'];
    expect(await parsed(x, Buffer.from(text, 'latin1'))).not.toEqual(await parsed(y, Buffer.from(text, 'latin1')));
    expect(multipartFp(y, Buffer.from(text))).not.toBe(multipartFp(x, Buffer.from(text)));
    expect(fp({ contentType: y, body: text })).not.toBe(fp({ contentType: x, body: text }));
    // And as bytes: the same parts under another boundary are the same request.
    expect(fp({ contentType: x, body: text })).toBe(fp({ contentType: y, body: bodyOf('Y', ['one', 'two']) }));
  });

  it('property: two requests hash equal only when busboy reads the same parts from them', async () => {
    // Few letters, so that values hold the delimiters of the other boundaries named in the type.
    const name = fc.constantFrom('D', 'E', 'F');
    const typeArb = fc.record({
      boundary: name,
      // A decoy `boundary=` in another parameter's quoted value, and the boundary named twice.
      decoy: fc.option(name, { nil: undefined }),
      second: fc.option(name, { nil: undefined }),
      quoted: fc.boolean(),
    });
    const typeOf = (t: { boundary: string; decoy?: string; second?: string; quoted: boolean }) =>
      `multipart/form-data${t.decoy === undefined ? '' : `; x="; boundary=${t.decoy}"`}; boundary=${t.quoted ? `"${t.boundary}"` : t.boundary}${t.second === undefined ? '' : `; boundary=${t.second}`}`;
    const fragment = fc.constantFrom('a', '\r\n--', '\r\n', 'D', 'E', 'F', '"', '--', '\r\n--D"', '\r\n--E"');
    const requestArb = fc.record({
      type: typeArb,
      values: fc.array(
        fc.array(fragment, { maxLength: 6 }).map((f) => f.join('')),
        { minLength: 1, maxLength: 3 },
      ),
    });
    await fc.assert(
      fc.asyncProperty(requestArb, requestArb, fc.boolean(), async (one, random, renamed) => {
        // The other: a request of its own, or the same with another name for every boundary named
        // in the type but the real one (in the type and in the values), as a second upload would be.
        const rename = (text: string) => text.replace(/[DEF](?=")/g, (c) => ({ D: 'E', E: 'F', F: 'D' })[c] as string);
        const two =
          renamed && one.type.decoy !== undefined
            ? { type: { ...one.type, decoy: rename(`${one.type.decoy}"`).slice(0, 1) }, values: one.values.map(rename) }
            : random;
        const a = { contentType: typeOf(one.type), body: bodyOf(one.type.boundary, one.values) };
        const b = { contentType: typeOf(two.type), body: bodyOf(two.type.boundary, two.values) };
        if (multipartFp(a.contentType, a.body) === multipartFp(b.contentType, b.body)) {
          expect(await parsed(a.contentType, a.body)).toEqual(await parsed(b.contentType, b.body));
        }
      }),
      { numRuns: 5_000 },
    );
  });

  it('property: the same parts under any two boundaries (quoted or not, any case of the name) hash equal', () => {
    fc.assert(
      fc.property(
        boundaryArb,
        boundaryArb,
        fc.boolean(),
        fc.array(valueArb, { minLength: 1, maxLength: 4 }),
        (x, y, quoted, values) => {
          // A client draws a boundary its parts do not hold.
          fc.pre(values.every((v) => !`\r\n${v}\r\n`.includes(`\r\n--${x}`) && !`\r\n${v}\r\n`.includes(`\r\n--${y}`)));
          // Quoted when it must be (a boundary of other than token characters), as a client sends it.
          const token = (b: string) => /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(b);
          const typeX = `multipart/form-data; boundary=${token(x) ? x : `"${x}"`}`;
          const typeY = `multipart/form-data; Boundary=${quoted || !token(y) ? `"${y}"` : y}`;
          expect(multipartFp(typeX, bodyOf(x, values))).toBe(multipartFp(typeY, bodyOf(y, values)));
        },
      ),
      { numRuns: 2_000 },
    );
  });
});
