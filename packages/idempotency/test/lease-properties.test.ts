import { ManualClock } from '@holdfast/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { memoryStore } from '../src/index.js';

type Step =
  | { op: 'claim'; key: string; lease: number }
  | { op: 'extend'; key: string; token: number; lease: number }
  | { op: 'complete'; key: string; token: number }
  | { op: 'release'; key: string; token: number }
  | { op: 'advance'; ms: number };

const key = fc.constantFrom('a', 'b');
const lease = fc.constantFrom(50, 100, 300);
const token = fc.nat(7);
const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ op: fc.constant('claim' as const), key, lease }),
  fc.record({ op: fc.constant('extend' as const), key, token, lease }),
  fc.record({ op: fc.constant('complete' as const), key, token }),
  fc.record({ op: fc.constant('release' as const), key, token }),
  fc.record({ op: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 400 }) }),
);

/** Per key, what the tokens were granted: the owner, until when, and whether it completed. */
interface Model {
  owner: string | undefined;
  grantedUntil: number;
  completedUntil: number | undefined;
}

const TTL = 1_000;

describe('memoryStore as a state machine with a manual clock: claim, extend, complete, release, advance', () => {
  it('never lets two tokens own a key at once, and never extends a completed, released or taken-over key', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { maxLength: 60 }), async (steps) => {
        const clock = new ManualClock(1_000);
        const store = memoryStore({ clock });
        const tokens: string[] = [];
        const models = new Map<string, Model>();
        const model = (k: string) => {
          let m = models.get(k);
          if (m === undefined) models.set(k, (m = { owner: undefined, grantedUntil: 0, completedUntil: undefined }));
          return m;
        };
        for (const s of steps) {
          const now = clock.now();
          if (s.op === 'advance') {
            await clock.advance(s.ms);
            continue;
          }
          const m = model(s.key);
          if (s.op === 'claim') {
            const r = await store.claim(s.key, 'f', s.lease);
            if (r.status === 'claimed') {
              // The key was free: never claimed, released, its owner's grant over, or its record expired.
              const free =
                m.owner === undefined ||
                (m.completedUntil === undefined ? now >= m.grantedUntil : now >= m.completedUntil);
              expect(free).toBe(true);
              tokens.push(r.token);
              Object.assign(m, { owner: r.token, grantedUntil: now + s.lease, completedUntil: undefined });
            } else if (r.status === 'inProgress') {
              expect([m.owner !== undefined, m.completedUntil]).toEqual([true, undefined]);
            } else {
              expect(r.status).toBe('completed');
              expect(m.completedUntil).toBeGreaterThan(now);
            }
            continue;
          }
          const t = tokens[s.token % Math.max(1, tokens.length)] ?? 'none';
          const owns = t === m.owner && m.completedUntil === undefined;
          if (s.op === 'extend') {
            const r = await store.extend(s.key, t, s.lease);
            if (!owns) expect(r).toBe(false);
            else if (now < m.grantedUntil) expect(r).toBe(true);
            if (r) m.grantedUntil = Math.max(m.grantedUntil, now + s.lease);
          } else if (s.op === 'complete') {
            const r = await store.complete(s.key, t, { kind: 'value', value: 1 }, TTL);
            // A completion resent by the token that completed answers true again, changing nothing.
            if (t !== m.owner) expect(r).toBe(false);
            if (r && owns) m.completedUntil = now + TTL;
          } else {
            const r = await store.release(s.key, t);
            if (!owns) expect(r).toBe(false);
            if (r) m.owner = undefined;
          }
        }
        store.dispose();
      }),
      { numRuns: 300 },
    );
  });
});
