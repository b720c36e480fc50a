import { type Clock, ManualClock } from '@holdfast/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Aimd, adaptiveConcurrency, Gradient2, Vegas } from '../src/index.js';

/**
 * A model-based test of adaptiveConcurrency (fc.commands): calls started, finished (fast, after
 * hours, in a step of the clock back), dropped, aborted, with an isDrop that may throw, against a
 * count of calls in flight. The model admits a call iff fewer than `limit` are in flight; the
 * limit stays a whole number in [minLimit, maxLimit] whatever the latencies.
 */

interface Model {
  inFlight: number;
}

interface Held {
  readonly settle: (fail: boolean) => void;
  readonly controller: AbortController;
}

interface Real {
  readonly limiter: ReturnType<typeof adaptiveConcurrency>;
  readonly timers: ManualClock;
  readonly step: (ms: number) => void;
  readonly held: Held[];
  readonly bounds: { minLimit: number; maxLimit: number };
}

function check(m: Model, r: Real): void {
  const { limit, inFlight } = r.limiter;
  expect(Number.isInteger(limit), `limit ${limit}`).toBe(true);
  expect(limit).toBeGreaterThanOrEqual(r.bounds.minLimit);
  expect(limit).toBeLessThanOrEqual(r.bounds.maxLimit);
  expect(inFlight).toBe(m.inFlight);
}

class Start implements fc.AsyncCommand<Model, Real> {
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const admit = m.inFlight < r.limiter.limit;
    const controller = new AbortController();
    let settle: (fail: boolean) => void = () => {};
    let refused = false;
    const call = r.limiter
      .execute(
        () =>
          new Promise<string>((resolve, reject) => {
            settle = (fail) => (fail ? reject(new Error('overloaded')) : resolve('ok'));
          }),
        { signal: controller.signal },
      )
      .catch((e: { code?: string }) => {
        if (e.code === 'E_CONCURRENCY_LIMIT') refused = true;
      });
    await Promise.resolve();
    if (admit) {
      m.inFlight++;
      r.held.push({ settle: (fail) => settle(fail), controller });
    } else {
      await call;
      expect(refused, 'refused with E_CONCURRENCY_LIMIT').toBe(true);
    }
    check(m, r);
  }
  toString = () => 'start';
}

class Finish implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly pick: number,
    readonly fail: boolean,
    readonly abort: boolean,
  ) {}
  check = (m: Readonly<Model>) => m.inFlight > 0;
  async run(m: Model, r: Real): Promise<void> {
    const [held] = r.held.splice(this.pick % r.held.length, 1) as [Held];
    if (this.abort) held.controller.abort(new Error('caller left'));
    held.settle(this.fail);
    m.inFlight--;
    await r.timers.advance(0);
    check(m, r);
  }
  toString = () => `finish(${this.pick}, ${this.fail ? 'fail' : 'ok'}${this.abort ? ', aborted' : ''})`;
}

class Wait implements fc.AsyncCommand<Model, Real> {
  constructor(readonly ms: number) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    await r.timers.advance(this.ms);
    check(m, r);
  }
  toString = () => `wait(${this.ms})`;
}

class Step implements fc.AsyncCommand<Model, Real> {
  constructor(readonly ms: number) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    r.step(this.ms);
    check(m, r);
  }
  toString = () => `step(${this.ms})`;
}

const commands = fc.commands(
  [
    fc.constant(new Start()),
    fc.constant(new Start()),
    fc.tuple(fc.nat(), fc.boolean(), fc.boolean()).map(([p, f, a]) => new Finish(p, f, a)),
    fc.tuple(fc.nat(), fc.boolean(), fc.boolean()).map(([p, f, a]) => new Finish(p, f, a)),
    fc
      .oneof(fc.constantFrom(0, 1, 10_000, 3_600_000, 1e12), fc.integer({ min: 0, max: 200 }))
      .map((ms) => new Wait(ms)),
    fc.constantFrom(-3_600_000, -1, 3_600_000).map((ms) => new Step(ms)),
  ],
  { maxCommands: 80 },
);

const bounds = fc
  .tuple(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 0, max: 20 }), fc.integer({ min: 0, max: 20 }))
  .map(([min, a, b]) => ({ minLimit: min, initialLimit: min + Math.min(a, b), maxLimit: min + Math.max(a, b) }));

describe('adaptiveConcurrency (model)', () => {
  it('admits a call iff fewer than limit are in flight; limit stays whole and in bounds, whatever the latencies', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('gradient2' as const, 'aimd' as const, 'vegas' as const),
        bounds,
        fc.constantFrom<'throw' | 'yes' | 'no'>('throw', 'yes', 'no'),
        commands,
        async (algorithm, b, isDrop, cmds) => {
          const timers = new ManualClock(10_000_000);
          let offset = 0;
          // A clock without monotonic(): its now() steps, so latencies may be negative or hours long.
          const clock: Clock = {
            now: () => timers.now() + offset,
            setTimeout: (cb, ms) => timers.setTimeout(cb, ms),
            clearTimeout: (h) => timers.clearTimeout(h),
          };
          const limiter = adaptiveConcurrency({
            algorithm,
            ...b,
            window: { minTime: 0, maxTime: 50, minSamples: 1 },
            isDrop: (e) => {
              if (isDrop === 'throw') throw new Error('isDrop broke');
              return isDrop === 'yes' && e instanceof Error;
            },
            random: () => 0.5,
            clock,
            policies: false,
          });
          const real: Real = { limiter, timers, step: (ms) => (offset += ms), held: [], bounds: b };
          const model: Model = { inFlight: 0 };
          await fc.asyncModelRun(() => ({ model, real }), cmds);
          for (const held of real.held) held.settle(false);
          await timers.advance(0);
          expect(limiter.inFlight).toBe(0);
          check({ inFlight: 0 }, real);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('every algorithm stays finite and in bounds on zero, sub-microsecond, huge and infinite latencies', () => {
    const rtt = fc.constantFrom(
      0,
      Number.MIN_VALUE,
      1e-9,
      1e15,
      1e300,
      Number.MAX_VALUE,
      Number.POSITIVE_INFINITY,
      -3_600_000,
    );
    fc.assert(
      fc.property(
        bounds,
        fc.array(fc.record({ rtt, inFlight: fc.integer({ min: 0, max: 50 }), didDrop: fc.boolean() }), {
          maxLength: 40,
        }),
        (b, run) => {
          const algorithms = [
            new Gradient2({ ...b, tolerance: 1.5, smoothing: 0.2, longWindow: 600, queueSize: 4 }),
            new Aimd({ ...b, backoffRatio: 0.9, timeout: 100 }),
            new Vegas({ ...b, probeRate: 0.01 }, () => 0.5),
          ];
          for (const s of run) {
            for (const a of algorithms) {
              const limit = a.update(s);
              expect(Number.isFinite(limit), `${a.name} limit ${limit} after rtt ${s.rtt}`).toBe(true);
              expect(limit).toBeGreaterThanOrEqual(b.minLimit);
              expect(limit).toBeLessThanOrEqual(b.maxLimit);
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
