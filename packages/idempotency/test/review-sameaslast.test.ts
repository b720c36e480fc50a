/**
 * Outside review of d901b83c, which had memoryStore's #sameAsLast walk `for (const name in
 * headers)` instead of `Object.keys(headers)`, and made BodyCollector's chunk list lazily.
 *
 * The tests named "inherited" failed against d901b83c and pass against its parent and since:
 * for-in lists inherited enumerable names after the own ones, and when the last kept headers had
 * those names as OWN names (same values), a headers object that only inherits them was taken for
 * the last ones. The record then replayed (and counted) headers the response never had:
 * everything else in the store (checkResponseParts, copyHeaders, headerChars, replays) reads own
 * names only. #sameAsLast reads own names again.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BodyCollector, pickHeaders } from '../src/http/capture.js';
import { memoryStore } from '../src/index.js';
import { tokenText } from '../src/memory-store.js';
import { bodyEncodings, nowOf, recordBytes } from './memory-store-support.js';

type Headers = Record<string, string | string[]>;

/** Own names and values: what the store treats as a response's headers. */
function own(headers: object): [string, unknown][] {
  return Object.keys(headers).map((n) => [n, (headers as Record<string, unknown>)[n]]);
}

/** Completes k1 with `first`, then k2 with `second`; k2's record headers as a copy hands them out. */
async function twoRecords(first: object, second: object, promised: boolean) {
  const store = memoryStore();
  const now = nowOf(store);
  const results: unknown[] = [];
  for (const [key, headers] of [
    ['k1', first],
    ['k2', second],
  ] as const) {
    const claim = now.claim(key, 'fp', 60_000);
    if (claim.status !== 'claimed') throw new Error(claim.status);
    if (promised) {
      const outcome = { kind: 'response', status: 200, headers: headers as Headers, body: Buffer.from('x') } as const;
      results.push(await store.complete(key, tokenText(claim.token), outcome, 60_000));
    } else results.push(now.completeResponse(key, claim.token, 200, headers as Headers, 'x', 60_000));
  }
  const found = await store.claim('k2', 'fp', 60_000);
  if (found.status !== 'completed' || found.record.outcome.kind !== 'response') throw new Error(found.status);
  const bytes = store.bytes;
  store.dispose();
  return { results, headers: own(found.record.outcome.headers), bytes };
}

describe('memoryStore shares the last kept headers only for the same own headers (review of d901b83c)', () => {
  for (const promised of [false, true]) {
    const via = promised ? 'store.complete()' : 'completeResponse()';

    it(`inherited (${via}): headers that only inherit a name the last kept headers own are not taken for them`, async () => {
      const inherited = Object.create({ location: '/orders/1' }) as Headers;
      inherited.etag = '"v1"';
      const got = await twoRecords({ etag: '"v1"', location: '/orders/1' }, inherited, promised);
      // Before d901b83c: k2 keeps its own header only. Now it replays a `location` it never set.
      expect(got.headers).toEqual([['etag', '"v1"']]);
    });

    it(`inherited (${via}): such a record is counted with its own headers' characters`, async () => {
      const inherited = Object.create({ location: '/orders/1' }) as Headers;
      inherited.etag = '"v1"';
      const got = await twoRecords({ etag: '"v1"', location: '/orders/1' }, inherited, promised);
      const plain = await twoRecords({ etag: '"v1"', location: '/orders/1' }, { etag: '"v1"' }, promised);
      expect(got.bytes).toBe(plain.bytes);
    });
  }

  it('inherited: a null-prototype last {link} and a headers object inheriting only `link` (no own name) are not shared', async () => {
    const last = Object.assign(Object.create(null), { link: 'a' }) as Headers;
    const got = await twoRecords(last, Object.create({ link: 'a' }) as Headers, false);
    expect(got.headers).toEqual([]);
  });

  it('inherited: maxBytes keeps a record that fits (it is not counted with an inherited name)', async () => {
    const inherited = Object.create({ location: '/orders/1' }) as Headers;
    inherited.etag = '"v1"';
    // The second record alone, counted with its own headers (etag), is exactly maxBytes; the
    // first (a short key, more headers) fits too, and is evicted for the second.
    const k2 = 'k'.repeat(40);
    const store = memoryStore({ maxBytes: recordBytes(k2, 'fp', { etag: '"v1"' }, 1) });
    const now = nowOf(store);
    const first = now.claim('a', 'fp', 60_000);
    if (first.status !== 'claimed') throw new Error(first.status);
    now.completeResponse('a', first.token, 200, { etag: '"v1"', location: '/orders/1' }, 'x', 60_000);
    const claim = now.claim(k2, 'fp', 60_000);
    if (claim.status !== 'claimed') throw new Error(claim.status);
    expect(() => now.completeResponse(k2, claim.token, 200, inherited, 'x', 60_000)).not.toThrow();
    store.dispose();
  });

  it('inherited: with an enumerable name on Object.prototype, the middleware path (pickHeaders) never replays it', () => {
    const store = memoryStore();
    const now = nowOf(store);
    const allowed = new Set(['etag', 'location']);
    let replayed: unknown;
    // A polluted prototype (some old library), for the synchronous calls only.
    Object.defineProperty(Object.prototype, 'location', {
      value: '/polluted',
      enumerable: true,
      writable: true,
      configurable: true,
    });
    try {
      const a = now.claim('k1', 'fp', 60_000);
      const b = now.claim('k2', 'fp', 60_000);
      if (a.status !== 'claimed' || b.status !== 'claimed') throw new Error('claims');
      // A response that did set location '/polluted', then one that set only an etag.
      now.completeResponse('k1', a.token, 201, pickHeaders({ etag: 'e', location: '/polluted' }, allowed), 'x', 60_000);
      now.completeResponse('k2', b.token, 200, pickHeaders({ etag: 'e' }, allowed), 'x', 60_000);
      const found = now.claim('k2', 'fp', 60_000);
      if (found.status !== 'completed') throw new Error(found.status);
      replayed = Object.keys((found.record as unknown as { headers: object }).headers);
    } finally {
      delete (Object.prototype as Record<string, unknown>).location;
      store.dispose();
    }
    expect(replayed).toEqual(['etag']);
  });

  it('a getter that deletes an invalid header as the names are read does not skip its check (completeResponse, internal API)', () => {
    const store = memoryStore();
    const now = nowOf(store);
    const a = now.claim('k1', 'fp', 60_000);
    const b = now.claim('k2', 'fp', 60_000);
    if (a.status !== 'claimed' || b.status !== 'claimed') throw new Error('claims');
    now.completeResponse('k1', a.token, 200, { etag: 'a', location: '/x' }, 'x', 60_000);
    const hostile: Record<string, unknown> = {};
    Object.defineProperty(hostile, 'etag', {
      enumerable: true,
      configurable: true,
      get() {
        delete hostile.bad;
        return 'a';
      },
    });
    hostile.bad = 42;
    hostile.location = '/x';
    // Before: Object.keys listed 3 names, not the last 2: checked, and refused (`bad` not a string).
    expect(() => now.completeResponse('k2', b.token, 200, hostile as Headers, 'x', 60_000)).toThrow(
      /response\.headers\.bad/,
    );
    store.dispose();
  });

  // Pinned: checked to behave as before.
  for (const promised of [false, true]) {
    const via = promised ? 'store.complete()' : 'completeResponse()';
    it(`holds (${via}): an inherited name the last headers lack; same names in another order; integer-like names; null prototype; own __proto__`, async () => {
      const extra = Object.create({ z: 'q' }) as Headers;
      extra.etag = 'a';
      expect((await twoRecords({ etag: 'a' }, extra, promised)).headers).toEqual([['etag', 'a']]);
      expect((await twoRecords({ a: '1', b: '2' }, { b: '2', a: '1' }, promised)).headers).toEqual([
        ['b', '2'],
        ['a', '1'],
      ]);
      expect((await twoRecords({ b: 'x', 1: 'y', 0: 'z' }, { 0: 'z', 1: 'y', b: 'x' }, promised)).headers).toEqual([
        ['0', 'z'],
        ['1', 'y'],
        ['b', 'x'],
      ]);
      const nul = Object.assign(Object.create(null), { etag: 'a' }) as Headers;
      expect((await twoRecords({ etag: 'a' }, nul, promised)).headers).toEqual([['etag', 'a']]);
      const proto = () => {
        const o: Headers = {};
        Object.defineProperty(o, '__proto__', { value: 'a', enumerable: true, writable: true, configurable: true });
        return o;
      };
      expect((await twoRecords(proto(), proto(), promised)).headers).toEqual([['__proto__', 'a']]);
      expect((await twoRecords({ etag: 'a' }, Object.freeze({ etag: 'a', link: 'l' }), promised)).headers).toEqual([
        ['etag', 'a'],
        ['link', 'l'],
      ]);
    });

    it(`holds (${via}): invalid headers after the last headers' names, or instead of a value, are still refused`, async () => {
      for (const bad of [
        { etag: 'a', link: ['x', 1] },
        { etag: 'a', link: 3 },
        { etag: [1] },
        { etag: 'a', location: null },
        new Proxy({ etag: 'a', bad: 42, location: '/x' }, { has: (t, p) => p !== 'bad' && p in t }),
      ]) {
        await expect(
          (async () => twoRecords({ etag: 'a', location: '/x' }, bad as unknown as Headers, promised))(),
        ).rejects.toThrow(/must be a string or an array of strings/);
      }
    });
  }
});

describe('BodyCollector with its chunk list made lazily (review of d901b83c)', () => {
  const chunk = fc.oneof(
    fc.string({ unit: fc.constantFrom('a', '{', '\u00e9', '\ud800', '0', 'f'), maxLength: 120 }),
    fc.constantFrom('', 'ab', 'ff00'),
    fc.uint8Array({ maxLength: 40 }),
    fc.constant(Buffer.alloc(0)),
    fc.constant(new Uint8Array(0)),
    fc.constantFrom<unknown>(undefined, null, 0, 12, true),
  );
  const encoding = bodyEncodings;

  it('holds: its bytes and storable are those of the chunks, whatever their order (empty ones, overflow, then more)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(chunk, encoding), { maxLength: 6 }),
        fc.integer({ min: 0, max: 200 }),
        (seq, limit) => {
          const c = new BodyCollector(limit);
          const parts: Buffer[] = [];
          let size = 0;
          let overflow = false;
          for (const [ch, enc] of seq) {
            c.add(ch, enc);
            if (ch === undefined || ch === null || overflow) continue;
            const b =
              typeof ch === 'string'
                ? Buffer.from(ch, enc ?? 'utf8')
                : ch instanceof Uint8Array
                  ? Buffer.from(ch)
                  : Buffer.from(String(ch));
            size += b.length;
            if (size > limit) overflow = true;
            else parts.push(b);
          }
          expect(c.storable).toBe(!overflow);
          expect(c.bytes().toString('hex')).toBe(overflow ? '' : Buffer.concat(parts).toString('hex'));
          const text = c.text();
          if (text !== undefined) expect(Buffer.from(text, 'latin1').toString('hex')).toBe(c.bytes().toString('hex'));
        },
      ),
      { numRuns: 3_000 },
    );
  });

  it('holds: a zero-length Buffer then a short ASCII string gives its bytes, kept as its text (as before the lazy list)', () => {
    const c = new BodyCollector(100);
    c.add(Buffer.alloc(0));
    c.add('{"ok":true}');
    expect(c.bytes().toString()).toBe('{"ok":true}');
    expect(c.text()).toBe('{"ok":true}');
    expect(c.storable).toBe(true);
  });
});
