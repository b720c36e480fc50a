import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { wallOnlyClock } from '../../../test/support/wall-only-clock.js';
import { DeadlineQueue } from '../src/deadlines.js';

/**
 * A model-based test of DeadlineQueue on a user's clock without monotonic(): its timers are a
 * ManualClock's (the line that never steps), its now() is that line plus a wall-clock offset that
 * random steps move by up to an hour either way (NTP, a VM resume). The model: every deadline
 * added at timer time t fires once, never before t + ms, and within t + 2 ms (a step it cannot
 * tell from elapsed time costs it at most one length); with no step, exactly at t + ms.
 */

const HOUR = 3_600_000;

type Op =
  | { kind: 'add' }
  | { kind: 'cancel'; pick: number }
  | { kind: 'wait'; ms: number }
  | { kind: 'step'; ms: number }
  | { kind: 'addOnExpire' };

const op: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.constant<Op>({ kind: 'add' }), weight: 4 },
  { arbitrary: fc.record({ kind: fc.constant('cancel' as const), pick: fc.nat() }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 250 }) }), weight: 4 },
  {
    arbitrary: fc.record({
      kind: fc.constant('step' as const),
      ms: fc.oneof(fc.constantFrom(HOUR, -HOUR, 1, -1), fc.integer({ min: -HOUR, max: HOUR })),
    }),
    weight: 2,
  },
  { arbitrary: fc.constant<Op>({ kind: 'addOnExpire' }), weight: 1 },
);

describe('DeadlineQueue on a clock without monotonic() (model)', () => {
  it('a wall-clock step forward expires nothing early: a deadline is measured on the clock timers', async () => {
    const { clock, timers, step } = wallOnlyClock(50_000_000);
    const fired: number[] = [];
    const queue = new DeadlineQueue<number>(100, clock, () => fired.push(timers.now()));
    const start = timers.now();
    queue.add(1);
    await timers.advance(50);
    queue.add(2);
    await timers.advance(10);
    step(HOUR); // NTP sets the wall clock an hour forward
    await timers.advance(40); // the first deadline is due; the second has run 50 ms of its 100
    expect(fired.map((t) => t - start)).toEqual([100]);
    await timers.advance(200);
    expect(fired.map((t) => t - start)).toEqual([100, 150]);
    expect(timers.pending).toBe(0);
  });

  it('every deadline fires once, never early, at most one length late, whatever the wall clock does', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 200 }), fc.array(op, { maxLength: 50 }), async (ms, ops) => {
        const { clock, timers, step } = wallOnlyClock(50_000_000);
        let stepped = false;
        const backSteps: { at: number; ms: number }[] = []; // timer time and size of each step back
        const added = new Map<number, number>(); // id -> timer time it was added at
        const fired = new Map<number, number[]>(); // id -> timer times it fired at
        const handles = new Map<number, ReturnType<DeadlineQueue<number>['add']>>();
        const cancelled = new Set<number>();
        let next = 0;
        let chained = 0; // deadlines to add from inside an expiry, as a caller's abort handler may
        const add = () => {
          const id = next++;
          added.set(id, timers.now());
          handles.set(id, queue.add(id));
        };
        const queue: DeadlineQueue<number> = new DeadlineQueue<number>(ms, clock, (id) => {
          fired.set(id, [...(fired.get(id) ?? []), timers.now()]);
          if (chained > 0) {
            chained--;
            add();
          }
        });
        const check = () => {
          for (const [id, at] of added) {
            const hits = fired.get(id) ?? [];
            if (cancelled.has(id)) {
              expect(hits, `cancelled deadline ${id}`).toEqual([]);
              continue;
            }
            expect(hits.length, `deadline ${id} fired twice`).toBeLessThanOrEqual(1);
            const hit = hits[0];
            // Early only by a step back too small to tell from time passing, made within the
            // length before it started (while the timer it was placed against ran).
            const blind = backSteps.filter((s) => s.at >= at - ms && s.at <= at).reduce((sum, s) => sum + s.ms, 0);
            if (hit !== undefined) {
              expect(hit - at, `deadline ${id} of ${ms} ms fired early`).toBeGreaterThanOrEqual(ms - blind);
            }
            const bound = stepped ? 2 * ms : ms;
            if (timers.now() - at >= bound) expect(hit, `deadline ${id} of ${ms} ms still pending`).toBeDefined();
            if (hit !== undefined) expect(hit - at, `deadline ${id} late`).toBeLessThanOrEqual(bound);
          }
        };
        for (const o of ops) {
          if (o.kind === 'add') add();
          else if (o.kind === 'addOnExpire') chained++;
          else if (o.kind === 'step') {
            step(o.ms);
            stepped = true;
            if (o.ms < 0) backSteps.push({ at: timers.now(), ms: -o.ms });
          } else if (o.kind === 'wait') await timers.advance(o.ms);
          else {
            const live = [...handles.keys()].filter((id) => !cancelled.has(id) && !fired.has(id));
            const id = live[o.pick % Math.max(1, live.length)];
            if (id !== undefined) {
              queue.cancel(handles.get(id) as ReturnType<DeadlineQueue<number>['add']>);
              cancelled.add(id);
            }
          }
          check();
        }
        chained = 0;
        await timers.advance(2 * ms);
        check();
        expect(queue.size).toBe(0);
        expect(timers.pending).toBe(0);
      }),
      { numRuns: 300 },
    );
  });
});
