import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ManualClock } from '@holdfast/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type LocalRateLimiter, slidingWindow, tokenBucket } from '../src/index.js';
import { KeyTable } from '../src/rate.js';

const makers = {
  tokenBucket: (o: { limit: number; maxKeys: number; clock: ManualClock }) =>
    tokenBucket({ ...o, interval: 900_000, policies: false }),
  slidingWindow: (o: { limit: number; maxKeys: number; clock: ManualClock }) =>
    slidingWindow({ ...o, interval: 900_000, policies: false }),
};

for (const [name, make] of Object.entries(makers)) {
  describe(`${name}: a spray of distinct keys`, () => {
    it('does not reset a key one call short of its limit (login attempts per user, junk user names sprayed between)', () => {
      const clock = new ManualClock(0);
      const limiter: LocalRateLimiter = make({ limit: 5, maxKeys: 1_000, clock });
      let guesses = 0;
      for (let round = 0; round < 10; round++) {
        // Stops one short of the limit, so the key never refuses a call, then sprays junk keys.
        for (let i = 0; i < 4; i++) if (limiter.take('login:alice').allowed) guesses++;
        for (let i = 0; i < 1_000; i++) limiter.take(`login:junk-${round}-${i}`);
      }
      // Before: the key was forgotten with each spray, and got 4 more guesses every round (40).
      expect(guesses).toBe(5);
    });

    it('property: junk keys each used less than a key never reset it: it gets its limit in an interval, no more', () => {
      fc.assert(
        fc.property(
          fc.integer({ min: 2, max: 5 }),
          fc.array(fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 60 })), {
            minLength: 1,
            maxLength: 20,
          }),
          // Room for one key more than the victim at least (with maxKeys 1, every new key replaces it).
          fc.integer({ min: 2, max: 40 }),
          (burst, rounds, maxKeys) => {
            const clock = new ManualClock(0);
            const limiter = make({ limit: 5, maxKeys, clock });
            let allowed = 0;
            let junk = 0;
            for (const [uses, spray] of rounds) {
              for (let i = 0; i < burst; i++) if (limiter.take('victim').allowed) allowed++;
              // Each junk key is used fewer times than the victim's first burst.
              for (let i = 0; i < spray; i++) {
                const key = `junk-${junk++}`;
                for (let j = 0; j < Math.min(uses, burst - 1); j++) limiter.take(key);
              }
            }
            expect(allowed).toBeLessThanOrEqual(5);
          },
        ),
        { numRuns: 300 },
      );
    });
  });
}

describe('a spray of addresses', () => {
  it('100,000 new IPv4 addresses and IPv6 networks (ipKey) keep maxKeys states, a few MB, and an honest heavy user its count', () => {
    const source = fileURLToPath(new URL('../src/index.ts', import.meta.url));
    const code = `
      const limit = await import(${JSON.stringify(source)});
      const { ManualClock } = await import('@holdfast/core');
      const out = {};
      for (const f of ['tokenBucket', 'slidingWindow']) {
        const l = limit[f]({ limit: 100, interval: 60_000, policies: false, clock: new ManualClock(0) });
        for (let i = 0; i < 99; i++) l.take('honest');
        globalThis.gc();
        const before = process.memoryUsage().heapUsed;
        const start = performance.now();
        for (let i = 0; i < 100_000; i++) {
          const j = i >>> 1;
          l.take(limit.ipKey(i & 1
            ? (10 + (j >>> 16)) + '.' + ((j >>> 8) & 255) + '.' + (j & 255) + '.7'
            : '2001:db8:' + (j >>> 8).toString(16) + ':' + ((j & 255) << 8).toString(16) + '::1'));
        }
        const us = ((performance.now() - start) * 1000) / 100_000;
        globalThis.gc();
        const heap = process.memoryUsage().heapUsed - before;
        out[f] = { keys: l.snapshot().keys, heap, us, honest: [l.take('honest').allowed, l.take('honest').allowed] };
      }
      console.log(JSON.stringify(out));`;
    const run = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', code], {
      encoding: 'utf8',
      env: { ...process.env, NODE_OPTIONS: '' },
    });
    expect(run.stderr).toBe('');
    const out = JSON.parse(run.stdout) as Record<string, { keys: number; heap: number; us: number; honest: boolean[] }>;
    for (const [name, r] of Object.entries(out)) {
      console.info(
        `${name}: 100,000 new keys, maxKeys 10,000: ${r.keys} kept, heap +${(r.heap / 1e6).toFixed(1)} MB, ${r.us.toFixed(1)} µs a key`,
      );
      expect(r.keys).toBe(10_000);
      expect(r.heap).toBeLessThan(8e6);
      // 99 of 100 used before the spray: one call left, then refused.
      expect(r.honest).toEqual([true, false]);
    }
  }, 30_000);
});

describe('KeyTable', () => {
  it('property: it keeps the keys a plain model keeps (least recently used order; of the 16 oldest, the most room goes, ties the oldest)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 24 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 4 })), { maxLength: 300 }),
        (maxKeys, ops) => {
          // Each key's room is set by the test: a whole number of calls of 4.
          const room = new Map<string, number>();
          const table = new KeyTable<{ key: string }>(maxKeys, (s) => (room.get(s.key) ?? 4) / 4);
          const model: string[] = []; // least recently used first
          for (const [k, r] of ops) {
            const key = `k${k}`;
            room.set(key, r);
            const at = model.indexOf(key);
            if (at >= 0) model.splice(at, 1);
            else if (model.length >= maxKeys) {
              let chosen = 0;
              for (let i = 1; i < Math.min(16, model.length); i++) {
                if ((room.get(model[i] as string) ?? 4) > (room.get(model[chosen] as string) ?? 4)) chosen = i;
                if ((room.get(model[chosen] as string) ?? 4) === 4) break;
              }
              model.splice(chosen, 1);
            }
            model.push(key);
            expect(table.get(key, () => ({ key })).key).toBe(key);
            expect(table.size).toBe(model.length);
          }
          // Every key the model keeps is still in the table with its own state (no fresh one made).
          for (const key of model) expect(table.get(key, () => ({ key: 'fresh' })).key).toBe(key);
        },
      ),
      { numRuns: 500 },
    );
  });
});
