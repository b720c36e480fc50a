/**
 * Property: the bus against a model. Listeners (typed or '*') that throw anything, emit from
 * inside a dispatch, or unsubscribe others or themselves: every live listener sees every event
 * once, typed listeners before '*' ones, an event emitted by a listener only after every
 * listener saw the current one (breadth-first), a listener removed never called again, and
 * each throw reported once to onListenerError, whatever was thrown. Emit never throws.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createBus, type HoldfastEvent } from '../src/index.js';

const types = ['retry.attempt', 'breaker.open'] as const;
type T = (typeof types)[number];

type Action =
  | { readonly kind: 'none' }
  | { readonly kind: 'throw'; readonly value: unknown }
  | { readonly kind: 'emit'; readonly type: T }
  | { readonly kind: 'off'; readonly target: number };

interface ListenerSpec {
  readonly on: T | '*';
  /** What it does on its n-th call (cycled). */
  readonly actions: readonly Action[];
}

const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 3, arbitrary: fc.constant({ kind: 'none' as const }) },
  {
    weight: 2,
    arbitrary: fc
      .constantFrom<unknown>(new Error('boom'), null, undefined, 'text', 0, Object.create(null), Symbol('s'))
      .map((value) => ({ kind: 'throw' as const, value })),
  },
  { weight: 2, arbitrary: fc.constantFrom(...types).map((type) => ({ kind: 'emit' as const, type })) },
  { weight: 1, arbitrary: fc.nat(7).map((target) => ({ kind: 'off' as const, target })) },
);

const listenerArb: fc.Arbitrary<ListenerSpec> = fc.record({
  on: fc.constantFrom<T | '*'>(...types, '*'),
  actions: fc.array(action, { minLength: 1, maxLength: 4 }),
});

/** What the bus is meant to do, written plainly. */
function model(specs: readonly ListenerSpec[], emits: readonly T[], maxNested: number) {
  const live = specs.map(() => true);
  const calls = specs.map(() => 0);
  const seen: string[] = [];
  let reported = 0;
  let seq = 0;
  let nested = 0;
  const wanted = (type: T) => specs.some((s, i) => live[i] && (s.on === type || s.on === '*'));
  for (const first of emits) {
    if (!wanted(first)) {
      seq++;
      continue;
    }
    const queue: { type: T; id: number }[] = [{ type: first, id: seq++ }];
    for (let q = 0; q < queue.length; q++) {
      const e = queue[q] as { type: T; id: number };
      const order = [
        ...specs.map((s, i) => [s, i] as const).filter(([s]) => s.on === e.type),
        ...specs.map((s, i) => [s, i] as const).filter(([s]) => s.on === '*'),
      ];
      for (const [s, i] of order) {
        if (!live[i]) continue;
        seen.push(`${i}:${e.id}`);
        const a = s.actions[(calls[i] = (calls[i] ?? 0) + 1) % s.actions.length] as Action;
        if (a.kind === 'throw') reported++;
        else if (a.kind === 'emit' && nested < maxNested) {
          nested++;
          const id = seq++;
          if (wanted(a.type)) queue.push({ type: a.type, id });
        } else if (a.kind === 'off') live[a.target % specs.length] = false;
      }
    }
  }
  return { seen, reported };
}

describe('bus properties', () => {
  it('against a model: who sees what, in which order, what is reported; emit never throws', () => {
    fc.assert(
      fc.property(
        fc.array(listenerArb, { minLength: 1, maxLength: 8 }),
        fc.array(fc.constantFrom(...types), { minLength: 1, maxLength: 8 }),
        (specs, emits) => {
          const maxNested = 20;
          const reports: unknown[] = [];
          const bus = createBus({ onListenerError: (error) => reports.push(error) });
          const seen: string[] = [];
          const offs: (() => void)[] = [];
          let seq = 0;
          let nested = 0;
          const calls = specs.map(() => 0);
          specs.forEach((spec, i) => {
            offs.push(
              bus.on(spec.on as '*', (e) => {
                seen.push(`${i}:${(e as unknown as { id: number }).id}`);
                const a = spec.actions[(calls[i] = (calls[i] ?? 0) + 1) % spec.actions.length] as Action;
                if (a.kind === 'throw') throw a.value;
                if (a.kind === 'emit' && nested < maxNested) {
                  nested++;
                  bus.emit({ type: a.type, source: 'x', time: 0, id: seq++ } as unknown as HoldfastEvent);
                } else if (a.kind === 'off') offs[a.target % specs.length]?.();
              }),
            );
          });
          for (const type of emits) {
            expect(() => bus.emit({ type, source: 'x', time: 0, id: seq++ } as unknown as HoldfastEvent)).not.toThrow();
          }
          const want = model(specs, emits, maxNested);
          expect(seen).toEqual(want.seen);
          expect(reports).toHaveLength(want.reported);
        },
      ),
      { numRuns: 2_000 },
    );
    // Under 1 s alone; 5 s was passed on CI at load ~20. Time is not what this test checks.
  }, 30_000);
});
