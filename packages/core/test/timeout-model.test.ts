import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Clock, createBus, ManualClock, TimeoutError, timeout } from '../src/index.js';

/**
 * A model-based test of timeout(): calls started at random times, each settling (with a value or
 * an error) after its own latency, listening to its signal or not, its caller aborting or not;
 * cooperative and aggressive; on a ManualClock, and on a clock without monotonic() whose now()
 * steps either way (NTP) between and during calls. A bus listener that throws watches. The model
 * says what each caller gets: the caller's abort first (also after the deadline, while a cooperative
 * call runs on); a call that settles inside the limit keeps its outcome; past it, a TimeoutError
 * (a late value of a cooperative call that ignored its signal stands). With steps, a deadline may
 * be up to one limit late; early only by a step back too small to tell from time passing.
 */

interface Plan {
  readonly startAfter: number;
  readonly latency: number; // odd: never on a deadline (even) nor an abort (3 mod 4)
  readonly ok: boolean;
  readonly listens: boolean;
  readonly abortAt: number | undefined;
  readonly stepBefore: number;
}

const plan = fc.record({
  startAfter: fc.integer({ min: 0, max: 60 }),
  latency: fc.integer({ min: 0, max: 60 }).map((n) => 4 * n + 1),
  ok: fc.boolean(),
  listens: fc.boolean(),
  abortAt: fc.option(
    fc.integer({ min: 0, max: 60 }).map((n) => 4 * n + 3),
    { nil: undefined },
  ),
  stepBefore: fc.constantFrom(0, 0, 3_600_000, -3_600_000, 7, -7),
});

type Outcome = 'value' | 'error' | 'timeout' | 'aborted';

function expected(p: Plan, ms: number, aggressive: boolean, late: number, early: number): Outcome[] {
  const settle: Outcome = p.ok ? 'value' : 'error';
  // The deadline fires somewhere in [ms, ms + late]; every outcome it allows.
  const at = (deadline: number): Outcome => {
    if (p.abortAt !== undefined && p.abortAt < Math.min(p.latency, deadline)) return 'aborted';
    if (p.latency < deadline) return settle;
    if (aggressive || p.listens) return 'timeout';
    // Cooperative, and the function does not listen: it runs on; its caller may abort meanwhile.
    if (p.abortAt !== undefined && p.abortAt < p.latency) return 'aborted';
    return p.ok ? 'value' : 'timeout';
  };
  return [...new Set([at(ms - early), at(ms), at(ms + late)])];
}

async function run(ms: number, aggressive: boolean, plans: Plan[], steps: boolean): Promise<void> {
  const timers = new ManualClock(50_000_000);
  let offset = 0;
  const clock: Clock = steps
    ? {
        now: () => timers.now() + offset,
        setTimeout: (cb, t) => timers.setTimeout(cb, t),
        clearTimeout: (h) => timers.clearTimeout(h),
      }
    : timers;
  const bus = createBus();
  bus.on('*', () => {
    throw new Error('a listener that throws');
  });
  const policy = timeout(ms, { strategy: aggressive ? 'aggressive' : 'cooperative', clock, bus });
  const results: (Outcome | undefined)[] = plans.map(() => undefined);
  for (const [i, p] of plans.entries()) {
    offset += steps ? p.stepBefore : 0;
    await timers.advance(p.startAfter);
    const controller = new AbortController();
    if (p.abortAt !== undefined) timers.setTimeout(() => controller.abort(new Error('caller left')), p.abortAt);
    policy
      .execute(
        ({ signal }) =>
          new Promise<string>((resolve, reject) => {
            timers.setTimeout(() => (p.ok ? resolve('v') : reject(new Error('failed'))), p.latency);
            if (p.listens) signal.addEventListener('abort', () => reject(signal.reason));
          }),
        { signal: controller.signal },
      )
      .then(
        () => {
          results[i] = 'value';
        },
        (e: Error) => {
          results[i] = e instanceof TimeoutError ? 'timeout' : e.message === 'caller left' ? 'aborted' : 'error';
        },
      );
  }
  await timers.runAll();
  // A step back smaller than the run of the deadline timer cannot be told from time passing:
  // a deadline started after it may be early by that much (and no more).
  let early = 0;
  for (const [i, p] of plans.entries()) {
    if (steps && p.stepBefore < 0 && p.stepBefore > -ms) early += -p.stepBefore;
    expect(expected(p, ms, aggressive, steps ? ms : 0, early), `call ${i} ${JSON.stringify(p)}`).toContain(results[i]);
  }
  expect(timers.pending).toBe(0);
}

describe('timeout (model)', () => {
  it('each caller gets what the model says, on a ManualClock', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 60 }).map((n) => 4 * n),
        fc.boolean(),
        fc.array(plan, { maxLength: 12 }),
        (ms, aggressive, plans) => run(ms, aggressive, plans, false),
      ),
      { numRuns: 200 },
    );
  });

  it('each caller gets what the model says, on a clock without monotonic() that steps', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 60 }).map((n) => 4 * n),
        fc.boolean(),
        fc.array(plan, { maxLength: 12 }),
        (ms, aggressive, plans) => run(ms, aggressive, plans, true),
      ),
      { numRuns: 200 },
    );
  });
});
