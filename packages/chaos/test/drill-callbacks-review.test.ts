/**
 * What a drill does when its own callbacks fail once the load has run: a `duplicates()` counter
 * that throws (its database went away in the drill) or a `print` that throws. The minutes of load
 * already measured are the drill's result: they must come back, and an objective that could not
 * be checked must not pass.
 */
import { HoldfastConfigError } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { assertDrill, DrillFailedError, drill } from '../src/index.js';

const load = { request: async () => true, rate: 200, duration: 200 };

describe('drill: its callbacks after the load', () => {
  it('duplicates() throws: the result comes back, maxDuplicates is missed as not counted', async () => {
    const result = await drill({
      print: false,
      load,
      duplicates: async () => {
        throw new Error('connect ECONNREFUSED 127.0.0.1:5432');
      },
      objectives: { maxDuplicates: 0, maxFailedShare: 0.5 },
    });
    expect(result.load.sent).toBeGreaterThan(10);
    expect(result.duplicates).toBeNull();
    expect(result.duplicatesError).toBe('connect ECONNREFUSED 127.0.0.1:5432');
    expect(result.passed).toBe(false);
    expect(result.objectives.map((o) => [o.objective, o.passed])).toEqual([
      ['maxFailedShare', true],
      ['maxDuplicates', false],
    ]);
    expect(result.report).toMatch(/duplicate executions: not counted \(duplicates\(\) threw: connect ECONNREFUSED/);
    expect(result.report).toMatch(/MISS {2}duplicate executions: not counted/);
    expect(() => assertDrill(result)).toThrow(DrillFailedError);
    expect(() => assertDrill(result)).toThrow(/maxDuplicates not counted/);
    expect(JSON.parse(JSON.stringify(result)).objectives[1].passed).toBe(false);
  });

  it('print throws: the drill still returns its result', async () => {
    const result = await drill({
      load,
      print: () => {
        throw new Error('stdout closed');
      },
    });
    expect(result.passed).toBe(true);
    expect(result.report).toMatch(/^drill "drill": PASSED/);
  });

  it('maxDuplicates without a duplicates() counter is refused at once (it would pass on nothing counted)', async () => {
    await expect(drill({ print: false, load, objectives: { maxDuplicates: 0 } })).rejects.toThrow(HoldfastConfigError);
    await expect(drill({ print: false, load, objectives: { maxDuplicates: 0 } })).rejects.toThrow(
      /objectives\.maxDuplicates.*duplicates/,
    );
  });

  // A counter is a query: `before - after` the wrong way round, Redis GET's string, NaN from a
  // parse. None of them counted anything, so maxDuplicates must be missed, never passed.
  for (const [what, counted] of [
    ['a negative count', -3],
    ['NaN', Number.NaN],
    ['a string (Redis GET)', '0'],
    ['null (key not set)', null],
    ['a fraction', 0.5],
  ] as const) {
    it(`duplicates() answers ${what}: maxDuplicates is missed as not counted`, async () => {
      const result = await drill({
        print: false,
        load,
        duplicates: (async () => counted) as () => Promise<number>,
        objectives: { maxDuplicates: 0 },
      });
      expect(result.duplicates).toBeNull();
      expect(result.duplicatesError).toMatch(/not a count/);
      expect(result.objectives.map((o) => [o.objective, o.passed])).toEqual([['maxDuplicates', false]]);
      expect(result.passed).toBe(false);
    });
  }

  it('duplicates() never settles (its database frozen): the drill ends, maxDuplicates missed', async () => {
    const result = await drill({
      print: false,
      load: { ...load, timeout: 300 },
      duplicates: () => new Promise<number>(() => {}),
      objectives: { maxDuplicates: 0 },
    });
    expect(result.duplicates).toBeNull();
    expect(result.duplicatesError).toMatch(/no answer within 300 ms/);
    expect(result.passed).toBe(false);
  }, 10_000);
});
