import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { makeBalancer, rendezvous } from '../src/balancer.js';
import { EndpointState } from '../src/endpoint.js';
import { hashString } from '../src/hash.js';

function endpoint(name: string, index: number, weight = 1): EndpointState {
  return new EndpointState({ name, target: name, weight, priority: 0 }, index, hashString(name));
}

const consistentHash = () => makeBalancer('consistent-hash', { random: Math.random, decay: 10_000 });

/** A set of 1 to 40 endpoints with distinct names and weights 1 to 5. */
const endpointSets = fc
  .uniqueArray(fc.string({ minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 40 })
  .chain((names) =>
    fc
      .array(fc.integer({ min: 1, max: 5 }), { minLength: names.length, maxLength: names.length })
      .map((weights) => names.map((name, i) => endpoint(name, i, weights[i]))),
  );
const keyLists = fc.array(fc.oneof(fc.string(), fc.integer()), { minLength: 1, maxLength: 60 });

describe('consistent-hash picks (property tests)', () => {
  it('a remembered pick is the pick rendezvous() computes, and the same on every call', () => {
    fc.assert(
      fc.property(endpointSets, keyLists, (list, keys) => {
        const balancer = consistentHash();
        for (let round = 0; round < 3; round++) {
          for (const key of keys) expect(balancer.pick(list, key, 0)).toBe(rendezvous(list, key));
        }
      }),
      { numRuns: 200 },
    );
  });

  it('removing an endpoint moves only the keys it held; adding it back restores every key', () => {
    fc.assert(
      fc.property(endpointSets, keyLists, fc.nat(), (list, keys, drop) => {
        fc.pre(list.length >= 2);
        const gone = list[drop % list.length] as EndpointState;
        const rest = list.filter((e) => e !== gone);
        const balancer = consistentHash();
        const before = keys.map((k) => balancer.pick(list, k, 0));
        // Twice per list, so each list gets its own memory of winners.
        for (const k of keys) balancer.pick(rest, k, 0);
        const after = keys.map((k) => balancer.pick(rest, k, 0));
        for (let i = 0; i < keys.length; i++) {
          if (before[i] !== gone) expect(after[i]).toBe(before[i]);
          else expect(after[i]).not.toBe(gone);
        }
        const again = [...list]; // a fresh list: membership as before, memory made anew
        for (const k of keys) balancer.pick(again, k, 0);
        expect(keys.map((k) => balancer.pick(again, k, 0))).toEqual(before);
      }),
      { numRuns: 200 },
    );
  });

  it('a new list after a health change is read afresh, never from the old list’s memory', () => {
    fc.assert(
      fc.property(endpointSets, keyLists, (list, keys) => {
        fc.pre(list.length >= 2);
        const balancer = consistentHash();
        for (let i = 0; i < 3; i++) for (const k of keys) balancer.pick(list, k, 0);
        const reordered = [...list].reverse();
        const shrunk = list.slice(1);
        for (const next of [shrunk, reordered, list]) {
          for (let i = 0; i < 2; i++) {
            for (const k of keys) expect(balancer.pick(next, k, 0)).toBe(rendezvous(next, k));
          }
        }
      }),
      { numRuns: 100 },
    );
  });
});

describe('consistent-hash distribution', () => {
  const keys = Array.from({ length: 100_000 }, (_, i) => `user-${i}`);

  it('spreads keys evenly over 100 endpoints, and by weight when weighted', () => {
    const even = Array.from({ length: 100 }, (_, i) => endpoint(`endpoint-${i}`, i));
    const balancer = consistentHash();
    const counts = new Map<EndpointState, number>();
    for (const k of keys) {
      const e = balancer.pick(even, k, 0);
      counts.set(e, (counts.get(e) ?? 0) + 1);
    }
    expect(counts.size).toBe(100);
    for (const n of counts.values()) {
      expect(n / keys.length).toBeGreaterThan(0.007);
      expect(n / keys.length).toBeLessThan(0.013);
    }

    const weighted = Array.from({ length: 20 }, (_, i) => endpoint(`w-${i}`, i, 1 + (i % 3)));
    const total = weighted.reduce((sum, e) => sum + e.weight, 0);
    const byWeight = new Map<number, number>();
    const picker = consistentHash();
    for (const k of keys) {
      const e = picker.pick(weighted, k, 0);
      byWeight.set(e.weight, (byWeight.get(e.weight) ?? 0) + 1);
    }
    for (const w of [1, 2, 3]) {
      const expected = (w * weighted.filter((e) => e.weight === w).length) / total;
      expect(Math.abs((byWeight.get(w) ?? 0) / keys.length - expected)).toBeLessThan(0.02);
    }
  });

  it('is stable across processes: the same names and keys give the same picks (no per-process seed)', () => {
    const list = Array.from({ length: 5 }, (_, i) => endpoint(`node-${i}`, i));
    const picks = ['alice', 'bob', 'carol', 'dave', 'erin', 42].map((k) => rendezvous(list, k).name);
    // Recorded once: a change here moves every user's affinity on upgrade.
    expect(picks).toMatchInlineSnapshot(`
      [
        "node-3",
        "node-1",
        "node-2",
        "node-2",
        "node-4",
        "node-1",
      ]
    `);
  });
});
