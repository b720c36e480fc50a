import { createBus, createPolicyRegistry, type EventOf, HoldfastConfigError, ManualClock } from '@holdfast/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type AdaptiveConcurrencyOptions,
  Aimd,
  adaptiveConcurrency,
  bulkhead,
  ConcurrencyLimitError,
  Gradient2,
  Vegas,
} from '../src/index.js';
import { kneeUpstream, openLoop } from './knee.js';

const KNEE = 10;
const BASE = 10;
const load = { perMs: 2, ms: 4000, measureFrom: 1000 }; // 2000 calls/s offered; the upstream peaks at 1000/s

describe('adaptiveConcurrency() against an upstream with a concurrency knee', () => {
  const fixed = async () => {
    const clock = new ManualClock();
    const b = bulkhead({ maxConcurrent: 2 * KNEE, clock, policies: false });
    return openLoop(clock, b, kneeUpstream(clock, KNEE, BASE), load);
  };

  const cases: [string, AdaptiveConcurrencyOptions][] = [
    ['gradient2', { algorithm: 'gradient2', initialLimit: 5 }],
    ['aimd', { algorithm: 'aimd', initialLimit: 5, timeout: 2 * BASE }],
    ['vegas', { algorithm: 'vegas', initialLimit: 5, random: () => 0.5 }],
  ];

  for (const [name, options] of cases) {
    it(`${name}: the limit settles near the knee, and goodput beats a fixed limit of 2x the knee`, async () => {
      const clock = new ManualClock();
      const bus = createBus();
      const moves: EventOf<'concurrency.limit'>[] = [];
      bus.on('concurrency.limit', (e) => moves.push(e));
      const limiter = adaptiveConcurrency({ ...options, clock, bus, policies: false, window: { minTime: 5 * BASE } });
      const adaptive = await openLoop(clock, limiter, kneeUpstream(clock, KNEE, BASE), load);
      const baseline = await fixed();

      // It learned upwards from 5, and in the second half never left [0.8, 1.7] x the knee.
      expect(moves.some((m) => m.to >= KNEE)).toBe(true);
      const late = moves.filter((m) => m.time >= load.ms / 2).map((m) => m.to);
      for (const limit of [...late, limiter.limit]) {
        expect(limit).toBeGreaterThanOrEqual(0.8 * KNEE);
        expect(limit).toBeLessThanOrEqual(1.7 * KNEE);
      }
      expect(moves.every((m) => m.algorithm === name && m.from !== m.to)).toBe(true);
      expect(adaptive.sent).toBe(baseline.sent);
      // A fixed limit of 2x the knee drives the upstream into contention: half its peak goodput.
      expect(baseline.goodput).toBe(500);
      expect(adaptive.goodput).toBeGreaterThan(1.2 * baseline.goodput);
      expect(limiter.snapshot()).toMatchObject({ algorithm: name, inFlight: 0, rejected: adaptive.refused });
    });
  }
});

describe('adaptiveConcurrency() as a policy', () => {
  it('refuses past the limit at once with E_CONCURRENCY_LIMIT, and says so', async () => {
    const bus = createBus();
    const rejects: unknown[] = [];
    bus.on('concurrency.reject', (e) => rejects.push(e));
    const l = adaptiveConcurrency({ algorithm: 'aimd', initialLimit: 2, bus, policies: false, name: 'db' });
    const gates: (() => void)[] = [];
    const held = [0, 1].map(() => l.execute(() => new Promise<void>((r) => gates.push(r))));
    const error = await l.execute(() => 1).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConcurrencyLimitError);
    expect(error).toMatchObject({ code: 'E_CONCURRENCY_LIMIT', limit: 2, status: 503 });
    expect(rejects).toEqual([expect.objectContaining({ source: 'db', limit: 2, inFlight: 2 })]);
    for (const g of gates) g();
    await Promise.all(held);
    expect(l.inFlight).toBe(0);
  });

  it('a call the caller aborted is not a sample; an error isDrop refuses is not a drop', async () => {
    const clock = new ManualClock();
    const l = adaptiveConcurrency({
      algorithm: 'aimd',
      initialLimit: 10,
      clock,
      policies: false,
      isDrop: (e) => (e as Error).message === 'overloaded',
      window: { minTime: 0, minSamples: 1 },
    });
    await expect(l.execute(() => Promise.reject(new Error('not found')))).rejects.toThrow();
    expect(l.limit).toBe(10); // in flight 1 < 10 / 2: no growth, and no drop
    await expect(l.execute(() => Promise.reject(new Error('overloaded')))).rejects.toThrow();
    expect(l.limit).toBe(9);
    const caller = new AbortController();
    const pending = l.execute(
      (ctx) => new Promise((_, rej) => ctx.signal.addEventListener('abort', () => rej(new Error('overloaded')))),
      {
        signal: caller.signal,
      },
    );
    caller.abort();
    await expect(pending).rejects.toThrow();
    expect(l.snapshot()).toMatchObject({ limit: 9, samples: 2, inFlight: 0 });
  });

  it('an isDrop that throws counts a drop and frees the place; the call fails with its own error', async () => {
    // Written as users write it for HTTP clients; a refused connection has no response.
    const l = adaptiveConcurrency({
      algorithm: 'aimd',
      initialLimit: 2,
      policies: false,
      isDrop: (e) => (e as { response: { status: number } }).response.status >= 500,
      window: { minTime: 0, minSamples: 1 },
    });
    const refused = Object.assign(new Error('connect ECONNREFUSED 10.0.0.1:443'), { code: 'ECONNREFUSED' });
    for (let i = 0; i < 3; i++) await expect(l.execute(() => Promise.reject(refused))).rejects.toBe(refused);
    // Before: each call failed with isDrop's TypeError and kept its place: after 2, every call was refused.
    expect(l.snapshot()).toMatchObject({ inFlight: 0, samples: 3, rejected: 0 });
    expect(l.limit).toBe(1); // counted as drops: 2 x 0.9 = 1.8, rounded down
    expect(await l.execute(() => 'ok')).toBe('ok');
  });

  it('lists itself in the registry, and refuses bad options', () => {
    const policies = createPolicyRegistry();
    const l = adaptiveConcurrency({ algorithm: 'gradient2', policies, name: 'search' });
    expect(policies.snapshots('concurrency')).toEqual([
      { kind: 'concurrency', name: 'search', snapshot: expect.objectContaining({ algorithm: 'gradient2', limit: 20 }) },
    ]);
    l.dispose();
    expect(policies.size).toBe(0);
    expect(() => adaptiveConcurrency({ algorithm: 'gradient2', initialLimit: 5, minLimit: 10 })).toThrow(
      /initialLimit/,
    );
    expect(() => adaptiveConcurrency({ algorithm: 'cubic' } as never)).toThrow(HoldfastConfigError);
    expect(() => adaptiveConcurrency({ algorithm: 'aimd', backoffRatio: 0.2 })).toThrow(/backoffRatio/);
  });
});

const samples = fc.array(
  fc.record({
    rtt: fc.double({ min: 0, max: 10_000, noNaN: true }),
    inFlight: fc.integer({ min: 0, max: 2_000 }),
    didDrop: fc.boolean(),
  }),
  { maxLength: 300 },
);
const bounds = fc
  .tuple(fc.integer({ min: 1, max: 50 }), fc.integer({ min: 0, max: 100 }), fc.integer({ min: 0, max: 100 }))
  .map(([min, a, b]) => ({ minLimit: min, initialLimit: min + Math.min(a, b), maxLimit: min + Math.max(a, b) }));

describe('limit algorithms (properties)', () => {
  it('every algorithm keeps its limit within [minLimit, maxLimit], finite, whatever the samples', () => {
    fc.assert(
      fc.property(bounds, samples, (b, run) => {
        const algorithms = [
          new Gradient2({ ...b, tolerance: 1.5, smoothing: 0.2, longWindow: 600, queueSize: 4 }),
          new Aimd({ ...b, backoffRatio: 0.9, timeout: 100 }),
          new Vegas({ ...b, probeRate: 0.01 }, () => 0.5),
        ];
        for (const s of run) {
          for (const a of algorithms) {
            const limit = a.update(s);
            expect(Number.isFinite(limit)).toBe(true);
            expect(limit).toBeGreaterThanOrEqual(b.minLimit);
            expect(limit).toBeLessThanOrEqual(b.maxLimit);
          }
        }
      }),
    );
  });

  it('AIMD: the calls in flight at a cut do not cut again; the cooldown is counted in calls, not windows', () => {
    const a = new Aimd({ initialLimit: 100, minLimit: 1, maxLimit: 1000, backoffRatio: 0.9, timeout: 100 });
    const drop = { rtt: 10, inFlight: 100, didDrop: true };
    // One call a sample: the 90 calls already in flight report the overload the cut answered.
    expect(a.update(drop)).toBe(90);
    for (let i = 0; i < 89; i++) expect(a.update(drop)).toBe(90);
    expect(a.update(drop)).toBe(81);
    // A window of 81 calls or more holds them all: the next window with a drop cuts again.
    expect(a.update({ ...drop, count: 200 })).toBe(72.9);
    expect(a.update({ ...drop, count: 30 })).toBe(72.9);
    expect(a.update({ ...drop, count: 43 })).toBeCloseTo(65.61);
  });

  it('AIMD: a drop never raises the limit, a fast success at full use never lowers it', () => {
    fc.assert(
      fc.property(bounds, samples, (b, run) => {
        const a = new Aimd({ ...b, backoffRatio: 0.9, timeout: 100 });
        for (const s of run) {
          const before = a.limit;
          a.update(s);
          if (s.didDrop || s.rtt > 100) expect(a.limit).toBeLessThanOrEqual(before);
          else expect(a.limit).toBeGreaterThanOrEqual(before);
        }
      }),
    );
  });

  it('Gradient2 and Vegas: a limit calls do not reach (in flight < half) does not move without a drop', () => {
    fc.assert(
      fc.property(bounds, samples, (b, run) => {
        const g = new Gradient2({ ...b, tolerance: 1.5, smoothing: 0.2, longWindow: 600, queueSize: 4 });
        const v = new Vegas({ ...b, probeRate: 0 }, () => 0.5);
        for (const s of run) {
          for (const a of [g, v]) {
            const before = a.limit;
            a.update(s);
            if (!s.didDrop && s.inFlight * 2 < before) expect(a.limit).toBe(before);
          }
        }
      }),
    );
  });
});
