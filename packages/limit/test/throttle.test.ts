import { BrokenCircuitError, createBus, createPolicyRegistry, type HoldfastEvent, pipeline } from '@holdfast/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { adaptiveThrottle, bulkhead, ThrottledError } from '../src/index.js';
import { handClock } from './time.js';

const overloaded = () => Promise.reject(Object.assign(new Error('503'), { status: 503 }));

describe('adaptiveThrottle() (Google SRE client-side throttling)', () => {
  it('with the backend refusing everything, refuses locally with probability (requests - 2 x accepts) / (requests + 1)', async () => {
    const clock = handClock();
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('throttle.reject', (e) => events.push(e));
    let seed = 1;
    const random = () => {
      seed = (seed * 16807) % 2147483647;
      return seed / 2147483647;
    };
    const t = adaptiveThrottle({ clock, bus, random, policies: false, name: 'backend' });
    // 100 healthy calls: 100 accepts.
    for (let i = 0; i < 100; i++) await t.execute(() => 'ok');
    expect(t.probability).toBe(0);
    // The backend starts refusing: the first 100 refusals go through (k = 2: 200 requests / 100 accepts).
    let reached = 0;
    let local = 0;
    for (let i = 0; i < 1000; i++) {
      const error = await t
        .execute(() => {
          reached++;
          return overloaded();
        })
        .catch((e: unknown) => e);
      if (error instanceof ThrottledError) local++;
    }
    // Request n (counting the 100 healthy ones) goes with probability 1 - max(0, (n - 200) / (n + 1)).
    let expected = 0;
    for (let n = 100; n < 1100; n++) expected += 1 - Math.max(0, (n - 200) / (n + 1));
    expect(Math.round(expected)).toBe(442);
    expect(reached).toBeGreaterThan(0.85 * expected);
    expect(reached).toBeLessThan(1.15 * expected);
    expect(local).toBeGreaterThan(500);
    expect(local).toBe(1000 - reached);
    expect(events).toHaveLength(local);
    expect(t.snapshot()).toMatchObject({ requests: 1100, accepts: 100, rejected: local, status: 'warn' });
    // The window slides past: the throttle forgets and lets everything through again.
    clock.t += 60_000;
    expect(t.probability).toBe(0);
    expect(await t.execute(() => 'back')).toBe('back');
  });

  it('an error isRejection does not pick counts as an accept (the backend answered)', async () => {
    const t = adaptiveThrottle({ policies: false, isRejection: (e) => (e as { status?: number }).status === 503 });
    for (let i = 0; i < 50; i++) await t.execute(() => Promise.reject(new Error('404'))).catch(() => {});
    expect(t.snapshot()).toMatchObject({ requests: 50, accepts: 50, probability: 0 });
  });

  it('an isRejection that throws counts a refusal; the call fails with its own error', async () => {
    const t = adaptiveThrottle({
      policies: false,
      random: () => 1, // never refuses locally: every call reaches the backend
      isRejection: (e) => (e as { response: { status: number } }).response.status === 503,
    });
    const refused = Object.assign(new Error('connect ECONNREFUSED 10.0.0.1:443'), { code: 'ECONNREFUSED' });
    for (let i = 0; i < 5; i++) await expect(t.execute(() => Promise.reject(refused))).rejects.toBe(refused);
    // Before: each call failed with isRejection's TypeError, and counted nothing.
    expect(t.snapshot()).toMatchObject({ requests: 5, accepts: 0, probability: 5 / 6 });
  });

  it('refuses nothing of a burst at start-up that the backend accepts (calls in flight are not refusals)', async () => {
    const t = adaptiveThrottle({ policies: false });
    let reached = 0;
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, () =>
        t.execute(async () => {
          reached++;
          await new Promise((r) => setTimeout(r, 1));
          return 'ok';
        }),
      ),
    );
    expect(results.filter((r) => r.status === 'rejected')).toHaveLength(0);
    expect(reached).toBe(50);
    expect(t.snapshot()).toMatchObject({ requests: 50, accepts: 50, rejected: 0, probability: 0 });
    t.dispose();
  });

  it('counts no call refused on this side of the backend: a bulkhead or an open breaker inside it', async () => {
    // The backend accepts everything that reaches it; a bulkhead of 1 in front of it refuses the rest.
    const t = adaptiveThrottle({ policies: false, name: 'backend' });
    const inner = bulkhead({ maxConcurrent: 1, maxQueue: 0, policies: false });
    const both = pipeline(t, inner);
    let reached = 0;
    let throttled = 0;
    let full = 0;
    for (let round = 0; round < 20; round++) {
      const calls = Array.from({ length: 20 }, () =>
        both
          .execute(async () => {
            reached++;
            await new Promise((r) => setTimeout(r, 1));
            return 'ok';
          })
          .catch((e: unknown) => {
            if (e instanceof ThrottledError) throttled++;
            else full++;
          }),
      );
      await Promise.all(calls);
    }
    // Were the bulkhead's refusals counted as the backend's, the throttle would refuse calls
    // the backend never refused (k = 2: from about a third of refusals on).
    expect(throttled).toBe(0);
    expect(full).toBe(400 - reached);
    expect(t.snapshot()).toMatchObject({ requests: reached, accepts: reached, probability: 0 });
    // The same for a breaker that is open in front of the backend.
    for (let i = 0; i < 100; i++) {
      await t.execute(() => Promise.reject(new BrokenCircuitError('backend', undefined))).catch(() => {});
    }
    expect(t.snapshot()).toMatchObject({ requests: reached, accepts: reached, probability: 0 });
    inner.dispose();
    t.dispose();
  });

  it('property: probability = max(0, (requests - k x accepts) / (requests + 1)), always in [0, 1)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.boolean(), { maxLength: 200 }),
        fc.double({ min: 1, max: 5, noNaN: true }),
        async (outcomes, k) => {
          const t = adaptiveThrottle({ k, policies: false, random: () => 0.999_999 });
          for (const ok of outcomes) await t.execute(() => (ok ? 1 : overloaded())).catch(() => {});
          const s = t.snapshot();
          expect(s.requests).toBe(outcomes.length);
          expect(s.accepts).toBe(outcomes.filter(Boolean).length);
          expect(s.probability).toBeCloseTo(Math.max(0, (s.requests - k * s.accepts) / (s.requests + 1)), 9);
          expect(s.probability).toBeLessThan(1);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('lists itself in the registry; refuses bad options', () => {
    const policies = createPolicyRegistry();
    const t = adaptiveThrottle({ policies });
    expect(policies.snapshots('throttle')).toHaveLength(1);
    t.dispose();
    expect(policies.size).toBe(0);
    expect(() => adaptiveThrottle({ k: 0.5 })).toThrow(/k/);
  });
});
