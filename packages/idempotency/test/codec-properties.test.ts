/**
 * Properties of the stored-value codec and the request fingerprint: every value the codec takes
 * comes back equal (bytes, keys that look like its own tags, `__proto__` included); anything
 * else is refused with IdempotencyValueError; two inputs share a fingerprint only when equal.
 */
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeValue, encodeValue, fingerprintOf, IdempotencyValueError } from '../src/index.js';

const key = fc.oneof(fc.string({ maxLength: 6 }), fc.constantFrom('$bytes', '$object', '__proto__', 'constructor', ''));
const leaf = fc.oneof(
  fc.string({ maxLength: 8 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }).filter((n) => !Object.is(n, -0)),
  fc.boolean(),
  fc.constant(null),
  fc.uint8Array({ maxLength: 8 }).map((b) => Buffer.from(b)),
);
const { value: storable } = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(key, tie('value'), { maxKeys: 4 }),
  ),
}));

/** An input as a caller passes it: storable values, plus what only a fingerprint takes. */
const { value: input } = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, undefined, 1n, 0n),
    fc.constantFrom('#NaN', '#Infinity', '#-Infinity', 'u', 'null', 'n1', 'd0', 'b', 'true'),
    fc.constantFrom(new Date(0), new Date(1)),
    fc.array(tie('value'), { maxLength: 3 }),
    fc.dictionary(key, tie('value'), { maxKeys: 3 }),
  ),
}));

/** Equal as a fingerprint should see them: undefined properties do not count. */
function same(a: unknown, b: unknown): boolean {
  const strip = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(strip);
    if (v instanceof Uint8Array) return Buffer.from(v);
    if (typeof v === 'object' && v !== null && !(v instanceof Date)) {
      return Object.fromEntries(
        Object.entries(v)
          .filter(([, x]) => x !== undefined)
          .map(([k, x]) => [k, strip(x)]),
      );
    }
    return v;
  };
  return isDeepStrictEqual(strip(a), strip(b));
}

describe('codec properties', () => {
  it('any storable value comes back equal: bytes, $bytes/$object/__proto__ keys included', () => {
    fc.assert(
      fc.property(storable, (value) => {
        const back = decodeValue(encodeValue(value));
        expect(isDeepStrictEqual(back, value) || same(back, value)).toBe(true);
        expect(Object.keys(back ?? {})).toEqual(Object.keys(value ?? {}));
      }),
      { numRuns: 2_000 },
    );
  });

  it('anything else: IdempotencyValueError naming where, never another error', () => {
    fc.assert(
      fc.property(
        fc.anything({ withBigInt: true, withMap: true, withSet: true, withDate: true, withNullPrototype: true }),
        (value) => {
          try {
            decodeValue(encodeValue(value));
          } catch (error) {
            expect(error).toBeInstanceOf(IdempotencyValueError);
            expect((error as Error).message).toMatch(/result/);
          }
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it('two inputs share a fingerprint only when they are equal', () => {
    fc.assert(
      fc.property(input, input, (a, b) => {
        let fa: string;
        let fb: string;
        try {
          fa = fingerprintOf(a);
          fb = fingerprintOf(b);
        } catch (error) {
          expect(error).toBeInstanceOf(IdempotencyValueError);
          return;
        }
        if (fa === fb) expect(same(a, b), `${fc.stringify(a)} and ${fc.stringify(b)} collide`).toBe(true);
        else expect(same(a, b)).toBe(false);
      }),
      { numRuns: 5_000 },
    );
  });

  it('regressions: a __proto__ key was lost (or made a prototype), NaN shared the string "#NaN"\'s fingerprint', () => {
    const echoed = JSON.parse('{"user":"a","__proto__":{"isAdmin":true}}') as object;
    const back = decodeValue(encodeValue(echoed)) as Record<string, unknown>;
    expect(Object.keys(back)).toEqual(['user', '__proto__']);
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype);
    expect((back as { isAdmin?: unknown }).isAdmin).toBeUndefined();
    expect(Object.getOwnPropertyDescriptor(back, '__proto__')?.value).toEqual({ isAdmin: true });
    expect(fingerprintOf({ amount: Number.NaN })).not.toBe(fingerprintOf({ amount: '#NaN' }));
    expect(fingerprintOf([Number.POSITIVE_INFINITY])).not.toBe(fingerprintOf(['#Infinity']));
  });
});
