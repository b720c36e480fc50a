import { describe, expect, it } from 'vitest';
import { HoldfastConfigError, seededRandom } from '../src/index.js';

const draws = (random: () => number, n: number) => Array.from({ length: n }, random);

describe('seededRandom()', () => {
  it('draws the sequence the copies it replaced drew, so seeded tests and NAB scores keep their numbers', () => {
    // The first draws of mulberry32 as the demo, the anomaly forest and test/support drew them.
    expect(draws(seededRandom(42), 3)).toEqual([0.6011037519201636, 0.44829055899754167, 0.8524657934904099]);
    expect(draws(seededRandom(1), 3)).toEqual([0.6270739405881613, 0.002735721180215478, 0.5274470399599522]);
  });

  it('the same seed repeats, another seed does not', () => {
    expect(draws(seededRandom(7), 1_000)).toEqual(draws(seededRandom(7), 1_000));
    expect(draws(seededRandom(7), 100)).not.toEqual(draws(seededRandom(8), 100));
  });

  it('takes a seed modulo 2^32: negative and large safe integers are seeds too', () => {
    expect(draws(seededRandom(42 + 2 ** 32), 50)).toEqual(draws(seededRandom(42), 50));
    expect(draws(seededRandom(-1), 50)).toEqual(draws(seededRandom(2 ** 32 - 1), 50));
    expect(draws(seededRandom(Number.MAX_SAFE_INTEGER), 10).every((x) => x >= 0 && x < 1)).toBe(true);
  });

  it('stays in [0, 1) and spreads evenly over 100,000 draws (chi-square, 20 bins)', () => {
    for (const seed of [0, 1, 42, -5, 123_456_789]) {
      const xs = draws(seededRandom(seed), 100_000);
      expect(xs.filter((x) => !(x >= 0 && x < 1))).toEqual([]);
      const bins = new Array<number>(20).fill(0);
      for (const x of xs) bins[Math.floor(x * 20)] = (bins[Math.floor(x * 20)] ?? 0) + 1;
      const expected = 100_000 / 20;
      const chi2 = bins.reduce((sum, b) => sum + (b - expected) ** 2 / expected, 0);
      expect(chi2).toBeLessThan(43.8); // 19 degrees of freedom, p = 0.001
    }
  });

  it.each([
    ['a fraction', 1.5],
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['beyond the safe integers', 2 ** 53],
    ['a string', '42'],
    ['undefined', undefined],
  ])('refuses %s as a seed with HoldfastConfigError naming seed', (_, seed) => {
    const attempt = () => seededRandom(seed as number);
    expect(attempt).toThrow(HoldfastConfigError);
    expect(attempt).toThrow(/^seededRandom: seed must be a safe integer/);
    try {
      attempt();
    } catch (e) {
      expect((e as HoldfastConfigError).issues[0]?.path).toBe('seed');
    }
  });
});
