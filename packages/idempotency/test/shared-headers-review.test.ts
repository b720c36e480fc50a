/**
 * Hostile review of #19's memoryStore records that share one headers object with the record
 * before them when their headers are the same: whatever the sequence of completions (the
 * middleware's call without a promise, which is handed its headers, and `complete()`, whose
 * caller keeps and changes its own), each record replays exactly the headers and body its own
 * first response had, and counts exactly its own bytes against `maxBytes`.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { replayOf } from '../src/http/capture.js';
import { memoryStore } from '../src/index.js';
import { keptBodyOf, tokenText } from '../src/memory-store.js';
import { setHeader } from '../src/store.js';
import { nowOf, recordBytes } from './memory-store-support.js';

type Headers = Record<string, string | string[]>;

// Few names and values, so that records often have the same headers, or nearly: a name in
// another case, a value differing in a later list item, `__proto__` as a header.
const name = fc.constantFrom('etag', 'ETag', 'location', '__proto__', 'link', 'content-type', 'constructor');
const value = fc.oneof(
  fc.constantFrom('a', 'b', '"v1"', '/orders/1', '/orders/2'),
  fc.constantFrom(['a'], ['a', 'b'], ['a', 'c'], [], ['b', 'a']),
);
const headerList = fc.uniqueArray(fc.tuple(name, value), { selector: ([n]) => n, maxLength: 4 });
const body = fc.oneof(
  fc.string({ unit: fc.constantFrom('a', '{', '"', '\u00e9'), maxLength: 100 }),
  fc.uint8Array({ maxLength: 110 }),
);
const op = fc.record({
  key: fc.integer({ min: 0, max: 5 }),
  promised: fc.boolean(), // complete() rather than the middleware's call
  headers: headerList,
  body,
  // What the caller of complete() does to its own objects afterwards.
  mutate: fc.constantFrom('none', 'push', 'replace', 'delete'),
  // Its headers object inherits an enumerable name (a prototype of its own): never a header.
  inherits: fc.boolean(),
});

const INHERITED: Headers = { etag: 'inherited', 'x-inherited': 'yes' };

function build(list: readonly (readonly [string, string | readonly string[]])[], inherits = false): Headers {
  const out: Headers = inherits ? Object.create(INHERITED) : {};
  for (const [n, v] of list) setHeader(out, n, typeof v === 'string' ? v : [...v]);
  return out;
}

/** Headers as a comparable value: own names in order, and their values (`__proto__` too). */
function shape(headers: Readonly<Record<string, string | readonly string[]>>): unknown {
  return Object.keys(headers).map((n) => [n, headers[n]]);
}

describe('memoryStore, records sharing a headers object (hostile review of #19)', () => {
  it('replays exactly the headers and body each record was completed with, and counts each its own bytes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 12 }), async (ops) => {
        const store = memoryStore();
        const now = nowOf(store);
        const expected = new Map<string, { headers: unknown; body: Buffer; bytes: number }>();
        for (const o of ops) {
          const key = `k${o.key}`;
          const claim = now.claim(key, 'fp', 60_000);
          if (claim.status !== 'claimed') continue; // completed already: a replay, nothing new kept
          const headers = build(o.headers, o.inherits);
          const want = shape(build(o.headers));
          const bytes = typeof o.body === 'string' ? Buffer.from(o.body, 'utf8') : Buffer.from(o.body);
          if (o.promised) {
            const outcome = { kind: 'response', status: 201, headers, body: bytes } as const;
            expect(await store.complete(key, tokenText(claim.token), outcome, 60_000)).toBe(true);
            // The caller changes what it handed in: no record sees it.
            for (const n of Object.keys(headers)) {
              const v = headers[n];
              if (o.mutate === 'push' && Array.isArray(v)) v.push('z');
              if (o.mutate === 'replace') setHeader<string | string[]>(headers, n, 'zz');
              if (o.mutate === 'delete') delete headers[n];
            }
            bytes.fill(0x7a);
          } else {
            // As the middleware hands it: an ASCII body as its string, else its bytes.
            const ascii = typeof o.body === 'string' && bytes.length === o.body.length;
            expect(now.completeResponse(key, claim.token, 201, headers, ascii ? o.body : bytes, 60_000)).toBe(true);
          }
          expected.set(key, {
            headers: want,
            body: typeof o.body === 'string' ? Buffer.from(o.body, 'utf8') : Buffer.from(o.body),
            bytes: recordBytes(key, 'fp', build(o.headers), bytes.length),
          });
        }
        let total = 0;
        for (const [key, want] of expected) {
          total += want.bytes;
          // The middleware's replay of the store's own record.
          const found = now.claim(key, 'fp', 60_000);
          if (found.status !== 'completed') throw new Error(found.status);
          const replay = replayOf(found.record as never, true, false, keptBodyOf(found.record));
          // What the replay sends of the record's own (it adds these two).
          const replayed = (shape(replay.headers) as [string, unknown][]).filter(
            ([n]) => n !== 'idempotent-replayed' && n !== 'content-length',
          );
          expect({ key, headers: replayed, body: replay.body.toString('hex') }).toEqual({
            key,
            headers: want.headers,
            body: want.body.toString('hex'),
          });
          // complete()'s caller gets a copy with the same.
          const copy = await store.claim(key, 'fp', 60_000);
          if (copy.status !== 'completed' || copy.record.outcome.kind !== 'response') throw new Error(copy.status);
          expect(shape(copy.record.outcome.headers)).toEqual(want.headers);
        }
        expect(store.bytes).toBe(total);
        store.dispose();
      }),
      { numRuns: 1_500 },
    );
  });

  it('refuses a record over maxBytes by one byte, and keeps one at maxBytes, its headers shared or not', async () => {
    await fc.assert(
      fc.asyncProperty(
        headerList,
        fc.boolean(),
        fc.boolean(),
        fc.integer({ min: 1, max: 100 }),
        fc.constantFrom(0, 1),
        async (list, promised, sameFirst, length, over) => {
          const headers = build(list);
          // The record alone: at maxBytes, or one byte over it.
          const max = recordBytes('k2', 'fp', headers, length) - over;
          const store = memoryStore({ maxBytes: max });
          const now = nowOf(store);
          // A first record with the same headers (the next one shares them), or with none.
          const first = now.claim('k1', 'fp', 60_000);
          if (first.status !== 'claimed') throw new Error(first.status);
          expect(now.completeResponse('k1', first.token, 200, sameFirst ? build(list) : {}, '', 60_000)).toBe(true);
          const claim = now.claim('k2', 'fp', 60_000);
          if (claim.status !== 'claimed') throw new Error(claim.status);
          const text = 'a'.repeat(length);
          const complete = () =>
            promised
              ? store.complete(
                  'k2',
                  tokenText(claim.token),
                  { kind: 'response', status: 200, headers, body: Buffer.from(text) },
                  1e4,
                )
              : Promise.resolve().then(() => now.completeResponse('k2', claim.token, 200, headers, text, 60_000));
          if (over === 1) {
            await expect(complete()).rejects.toThrow(/over memoryStore's maxBytes/);
            return;
          }
          expect(await complete()).toBe(true);
          expect(store.bytes).toBeLessThanOrEqual(max);
          const found = await store.claim('k2', 'fp', 60_000);
          if (found.status !== 'completed' || found.record.outcome.kind !== 'response') throw new Error(found.status);
          expect(shape(found.record.outcome.headers)).toEqual(shape(build(list)));
          expect(Buffer.from(found.record.outcome.body).toString('latin1')).toBe(text);
          store.dispose();
        },
      ),
      { numRuns: 800 },
    );
  });
});
