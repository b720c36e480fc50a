/**
 * ShownNames keeps every two names apart, a name that is shown as it is included: a policy named
 * `https://***@db.example/` (one of ours, whose name is hidden already) and a user's own named
 * `https://app:pw@db.example/` showed the same label, so their series merged and one leaving took
 * the other's along. And hiddenName's cache holds a bounded number of short values, never a
 * thousand long ones.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hiddenName, ShownNames } from '../src/cap.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

describe('ShownNames', () => {
  it('a name shown as it is and one hidden alike show apart, whichever comes first', () => {
    const hidden = 'https://***@db.example/';
    const raw = 'https://app:pw@db.example/';
    const a = new ShownNames();
    expect([a.get(raw), a.get(hidden)]).toEqual([hidden, `${hidden}#2`]);
    const b = new ShownNames();
    expect([b.get(hidden), b.get(raw)]).toEqual([hidden, `${hidden}#2`]);
  });

  it('a name spelled like another`s `#2` stays apart from it', () => {
    const s = new ShownNames();
    const shown = [s.get('https://a:1@h.example/'), s.get('https://a:2@h.example/'), s.get('https://***@h.example/#2')];
    expect(new Set(shown).size).toBe(3);
  });

  it('property: names as they come, leaving and coming back, never show alike while held', () => {
    const names = fc.constantFrom(
      'https://***@h.example/',
      'https://***@h.example/#2',
      'https://u:1@h.example/',
      'https://u:2@h.example/',
      'password=***',
      'password=x',
      'password=y',
      'plain',
      '_other',
      '_other#2',
    );
    const step = fc.record({ name: names, leave: fc.boolean() });
    fc.assert(
      fc.property(fc.array(step, { maxLength: 40 }), (steps) => {
        const s = new ShownNames();
        const held = new Map<string, string>();
        for (const { name, leave } of steps) {
          if (leave) {
            s.forget(name);
            held.delete(name);
          } else held.set(name, s.get(name));
          // Each name held shows what it showed when it came, and no two alike.
          for (const [n, shown] of held) expect(s.get(n)).toBe(shown);
          expect(new Set(held.values()).size).toBe(held.size);
          // `_other` is the overflow's: no name held shows as it.
          expect([...held.values()]).not.toContain('_other');
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('hiddenName', () => {
  it('900 distinct long values are hidden, and held by no cache', () => {
    const value = (i: number) => `password=pw${i} ${String(i).padStart(20_000, 'y')}`;
    for (let i = 0; i < 10; i++) expect(hiddenName(value(i))).toBe(`password=*** ${String(i).padStart(20_000, 'y')}`);
    gc();
    const before = process.memoryUsage().heapUsed;
    // Fewer than its 1,000 entries (which it clears at), a few taken already by the tests above.
    for (let i = 0; i < 900; i++) hiddenName(value(i));
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    // Held, they are 36 MB and more (each value and what it shows, 20 kB apiece).
    expect(grown).toBeLessThan(5_000_000);
  });
});
