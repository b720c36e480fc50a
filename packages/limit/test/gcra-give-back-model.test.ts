import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { conforms } from './gcra.js';

/**
 * The GCRA of redis.ts as plain arithmetic (ms), decision and give-back, against the exact schedule:
 * the calls that ran (allowed, not given back) replayed through an exact GCRA must all conform, or
 * the limit let more through than `burst + limit × elapsed / interval` somewhere. `exact` is the
 * give-back of issue #17 (at most what the clock had not yet absorbed of the cell, where the cell
 * now is: its TAT as decided less the rise since of the give-back clock J, which each give-back
 * raises by what it gives; J's key lives `hold` ms past its value, a give-back that finds it gone
 * gives nothing);
 * `whole` is the one before it (the whole increment, always).
 */
type Step =
  | { wait: number; kind: 'take'; cost: number; givable?: boolean; resent?: boolean }
  | { wait: number; kind: 'back'; which: number };

/**
 * A take that is not `givable` (a plain take(), no middleware, `onRedisError: 'open'`) neither
 * reads nor makes J and is never given back; a `resent` one (its reply lost, ioredis resends) is
 * decided twice, the first counted as a call that ran, the caller told the second. The reply's
 * TAT + J is rounded down to `unit` ms (a coarser step for large bursts).
 */
export function run(emission: number, burst: number, steps: readonly Step[], exact: boolean, hold = 10_000, unit = 1) {
  const tolerance = emission * burst;
  let tat: number | undefined; // the key (undefined: none)
  let now = 1_000;
  let j: number | undefined; // the give-back clock's key (undefined: none)
  let jUntil = 0;
  const clockJ = () => (j !== undefined && now < jUntil ? j : undefined);
  const taken: { at: number; cost: number; tatAfter: number; back: boolean; givable: boolean }[] = [];
  let refusedThatFit = 0;
  // The reply of an allowed decision (TAT + J rounded down, 0 when not givable), undefined when refused.
  const decide = (cost: number, givable: boolean): number | undefined => {
    const base = tat === undefined || tat <= now ? now : tat;
    const next = base + emission * cost;
    if (next - now > tolerance) return undefined;
    tat = next;
    if (!givable) return 0;
    // The decision reads J (made at now when missing) and replies TAT + J, rounded down.
    let read = clockJ();
    if (read === undefined) {
      read = Math.ceil(now);
      j = read;
      jUntil = now + hold;
    }
    return Math.floor((Math.floor(next) + read) / unit) * unit;
  };
  for (const s of steps) {
    now += s.wait;
    if (s.kind === 'take') {
      const givable = s.givable ?? true;
      let reply = decide(s.cost, givable);
      if (reply !== undefined && s.resent === true) {
        taken.push({ at: now, cost: s.cost, tatAfter: 0, back: false, givable: false });
        reply = decide(s.cost, givable);
      }
      if (reply !== undefined) taken.push({ at: now, cost: s.cost, tatAfter: reply, back: false, givable });
      else if (conforms([...kept(taken), { at: now, cost: s.cost }], emission, tolerance)) refusedThatFit += s.cost;
    } else {
      const a = taken.filter((t) => !t.back && t.givable)[s.which % Math.max(1, taken.length)];
      if (a === undefined || tat === undefined) continue;
      a.back = true;
      let give = emission * a.cost;
      if (exact) {
        // A give-back that finds J's key gone gives nothing.
        const read = clockJ();
        if (read === undefined) continue;
        give = Math.min(give, a.tatAfter - read - now);
        if (give <= 0) continue;
        j = Math.ceil(read + give);
        jUntil = j + hold;
      }
      const back = tat - give;
      tat = back <= now ? undefined : back;
    }
  }
  return { loose: !conforms(kept(taken), emission, tolerance), refusedThatFit };
}

const kept = <T extends { back: boolean }>(taken: T[]) => taken.filter((t) => !t.back);

const steps = fc.array(
  fc.oneof(
    fc.record({
      wait: fc.integer({ min: 0, max: 1_500 }),
      kind: fc.constant('take' as const),
      cost: fc.integer({ min: 1, max: 3 }),
    }),
    fc.record({ wait: fc.integer({ min: 0, max: 1_500 }), kind: fc.constant('back' as const), which: fc.nat(50) }),
  ),
  { maxLength: 60 },
);
const limits = fc.record({ emission: fc.integer({ min: 1, max: 1_000 }), burst: fc.integer({ min: 3, max: 6 }) });

/**
 * A and B allowed at once; A given back in part (its cell half absorbed) moves B's cell back; C
 * allowed in B's old place; B given back: by its TAT as decided, whole, which let E through 100 ms
 * early (the two-process test's failure in the fresh-clone CI of 479f2ee, found in 20 runs).
 */
export const shiftedCell: Step[] = [
  { wait: 0, kind: 'take', cost: 1 },
  { wait: 0, kind: 'take', cost: 1 },
  { wait: 200, kind: 'back', which: 0 },
  { wait: 100, kind: 'take', cost: 1 },
  { wait: 100, kind: 'back', which: 0 },
  { wait: 0, kind: 'take', cost: 1 },
  { wait: 0, kind: 'take', cost: 1 },
  { wait: 300, kind: 'take', cost: 1 },
];

describe('GCRA give-back, model-based (random decisions, give-backs of earlier allowed ones, waits)', () => {
  it('a give-back whose cell another give-back moved back gives only what is left of it where it now is', () => {
    expect(run(500, 3, shiftedCell, true).loose).toBe(false);
  });

  it('never loose: the calls that ran always conform to the exact schedule (2,000 runs; strict by the figures below)', () => {
    let strict = 0;
    let runs = 0;
    fc.assert(
      fc.property(limits, steps, ({ emission, burst }, s) => {
        const r = run(emission, burst, s, true);
        strict += r.refusedThatFit;
        runs++;
        return !r.loose;
      }),
      { numRuns: 2_000 },
    );
    // How strict: units refused that the exact schedule of the calls that ran would have allowed.
    // Measured: 8-11 units in 2,000 runs of up to 60 steps (withheld only after a give-back).
    expect(strict / runs).toBeLessThan(1);
  });

  it('never loose with costs up to the burst, plain takes among givable ones, resent decisions, J kept 0-3 s, replies in steps to 1,024 ms (5,000 runs)', () => {
    const wait = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 50 }), fc.integer({ min: 0, max: 1_500 }));
    const mixed = fc
      .record({
        emission: fc.integer({ min: 1, max: 1_000 }),
        burst: fc.integer({ min: 1, max: 8 }),
        hold: fc.integer({ min: 0, max: 3_000 }),
        unit: fc.constantFrom(1, 2, 16, 1_024),
      })
      .chain((l) =>
        fc.tuple(
          fc.constant(l),
          fc.array(
            fc.oneof(
              fc.record({
                wait,
                kind: fc.constant('take' as const),
                cost: fc.integer({ min: 1, max: l.burst }),
                givable: fc.boolean(),
                resent: fc.integer({ min: 0, max: 9 }).map((x) => x === 0),
              }),
              fc.record({ wait, kind: fc.constant('back' as const), which: fc.nat(50) }),
            ),
            { minLength: 10, maxLength: 80, size: 'max' },
          ),
        ),
      );
    fc.assert(
      fc.property(mixed, ([{ emission, burst, hold, unit }, s]) => !run(emission, burst, s, true, hold, unit).loose),
      { numRuns: 5_000 },
    );
  });

  it('the whole increment given back (before issue #17) is loose: fast-check finds a schedule', () => {
    expect(() =>
      fc.assert(
        fc.property(limits, steps, ({ emission, burst }, s) => !run(emission, burst, s, false).loose),
        { numRuns: 2_000 },
      ),
    ).toThrow();
  });
});

async function runTokenBucket(emission: number, burst: number, s: readonly Step[]): Promise<boolean> {
  const { ManualClock } = await import('@holdfast/core');
  const { tokenBucket } = await import('../src/index.js');
  const clock = new ManualClock(1_000);
  const limiter = tokenBucket({ limit: burst, interval: emission * burst, burst, clock, policies: false });
  const taken: { at: number; cost: number; back: boolean; undo: () => void }[] = [];
  for (const step of s) {
    await clock.advance(step.wait);
    if (step.kind === 'take') {
      let undo = () => {};
      const hook = { [Symbol.for('holdfast.limit.taken')]: (u: () => void) => (undo = u) };
      const ran = await limiter.execute(() => true, { key: 'k', cost: step.cost, ...hook } as never).catch(() => false);
      if (ran) taken.push({ at: clock.now(), cost: step.cost, back: false, undo });
    } else {
      const a = kept(taken)[step.which % Math.max(1, taken.length)];
      if (a === undefined) continue;
      a.back = true;
      a.undo();
    }
  }
  return conforms(kept(taken), emission, emission * burst);
}

describe('tokenBucket give-back, model-based on the real limiter (a hand clock, the middleware hook)', () => {
  it('a give-back whose tokens another give-back already put back in its place gives only what is left', async () => {
    expect(await runTokenBucket(500, 3, shiftedCell)).toBe(true);
  });

  it('never loose: the calls that ran always conform to the exact schedule (500 runs)', async () => {
    await fc.assert(
      fc.asyncProperty(limits, steps, async ({ emission, burst }, s) => runTokenBucket(emission, burst, s)),
      { numRuns: 500 },
    );
  });
});
