/**
 * The response body collector keeps the bytes a response sends, whatever its chunks: strings in
 * any encoding (a short ASCII one kept as the string itself), Buffers and other views, split
 * anywhere; past its limit, none. A memoryStore replays them byte for byte.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BodyCollector } from '../src/http/capture.js';
import { memoryStore } from '../src/index.js';
import { inProcess, keptBodyOf } from '../src/memory-store.js';
import { bodyEncodings } from './memory-store-support.js';

const encoding = bodyEncodings;
const text = fc.oneof(
  fc.string({ maxLength: 120 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ unit: fc.constantFrom('a', '{', '"', '\u007f', '\u0080', '\u00e9', '\u20ac'), maxLength: 100 }),
);
const chunk = fc.oneof(
  fc.tuple(text, encoding),
  fc.uint8Array({ maxLength: 120 }).map((b) => [b, undefined] as const),
  fc.uint8Array({ maxLength: 40 }).map((b) => [Buffer.from(b), undefined] as const),
);

/** The bytes Node sends for `chunk` written with `encoding`. */
function sent(value: string | Uint8Array, enc: BufferEncoding | undefined): Buffer {
  return typeof value === 'string' ? Buffer.from(value, enc ?? 'utf8') : Buffer.from(value);
}

describe('BodyCollector', () => {
  it('keeps the bytes sent, a short ASCII string as itself, none past its limit', () => {
    fc.assert(
      fc.property(fc.array(chunk, { maxLength: 4 }), fc.integer({ min: 0, max: 300 }), (chunks, limit) => {
        const body = new BodyCollector(limit);
        for (const [value, enc] of chunks) body.add(value, enc);
        const expected = Buffer.concat(chunks.map(([value, enc]) => sent(value, enc)));
        expect(body.storable).toBe(expected.length <= limit);
        if (!body.storable) return;
        expect(body.bytes().equals(expected)).toBe(true);
        const kept = body.text();
        if (kept !== undefined) expect(Buffer.from(kept, 'latin1').equals(expected)).toBe(true);
      }),
      { numRuns: 2_000 },
    );
  });

  it('hands a memoryStore what it replays byte for byte', () => {
    fc.assert(
      fc.property(fc.array(chunk, { minLength: 1, maxLength: 3 }), (chunks) => {
        const store = memoryStore();
        const now = inProcess(store);
        if (now === undefined) throw new Error('a memoryStore answers in this process');
        const body = new BodyCollector(1_000);
        for (const [value, enc] of chunks) body.add(value, enc);
        const claim = now.claim('k', 'fp', 1_000);
        if (claim.status !== 'claimed') throw new Error(claim.status);
        expect(now.completeResponse('k', claim.token, 200, {}, body.text() ?? body.bytes(), 60_000)).toBe(true);
        const found = now.claim('k', 'fp', 1_000);
        if (found.status !== 'completed' || found.record.kind !== 'response') throw new Error(found.status);
        const kept = keptBodyOf(found.record);
        const expected = Buffer.concat(chunks.map(([value, enc]) => sent(value, enc)));
        expect((typeof kept === 'string' ? Buffer.from(kept, 'latin1') : Buffer.from(kept)).equals(expected)).toBe(
          true,
        );
        store.dispose();
      }),
      { numRuns: 500 },
    );
  });
});
