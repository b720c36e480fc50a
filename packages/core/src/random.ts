import { HoldfastConfigError } from './errors.js';

/**
 * A seeded source of numbers in [0, 1) (mulberry32): the same seed gives the same sequence on
 * every run and every machine. Pass one wherever holdfast takes a `random` option (retry jitter,
 * chaos injection, balancers, anomaly forests) to make a run repeatable. It is fast and evenly
 * spread, not cryptographic: never use it for keys or tokens.
 *
 * @param seed - any safe integer; it is taken modulo 2^32, so `seed` and `seed + 2 ** 32` give the
 *   same sequence. Anything else (a fraction, NaN, Infinity, a string) throws
 *   {@link HoldfastConfigError} naming `seed`.
 * @example
 * ```ts
 * import { seededRandom } from '@holdfast/core';
 * const random = seededRandom(42);
 * const first = random(); // the same number on every run
 * ```
 */
export function seededRandom(seed: number): () => number {
  if (!Number.isSafeInteger(seed)) {
    throw new HoldfastConfigError('seededRandom', [{ path: 'seed', message: 'must be a safe integer', value: seed }]);
  }
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
