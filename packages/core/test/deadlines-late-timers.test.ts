import { describe, expect, it } from 'vitest';
import { DeadlineQueue } from '../src/deadlines.js';
import { type Clock, ManualClock } from '../src/index.js';

/**
 * DeadlineQueue on a clock without monotonic() keeps its own line, moved by how long its timer
 * ran. Timers fire late under load (Node's by a millisecond or more, a busy loop by far more):
 * each late firing must not push every later deadline later still, or with many calls in flight
 * (a deadline every fraction of a ms) the lateness adds up, far past one length.
 */

/** Now() and timers of a ManualClock whose timers fire `late.ms` after they are due, as a loaded loop's do. */
function lateTimersClock(ms: number): { clock: Clock; timers: ManualClock; late: { ms: number } } {
  const timers = new ManualClock(50_000_000);
  const late = { ms };
  const clock: Clock = {
    now: () => timers.now(),
    setTimeout: (callback, ms) => timers.setTimeout(callback, ms + late.ms),
    clearTimeout: (handle) => timers.clearTimeout(handle),
  };
  return { clock, timers, late };
}

describe('DeadlineQueue on a clock without monotonic(), its timers firing late', () => {
  it('400 deadlines of 100 ms, a quarter ms apart, each timer 1 ms late: none ends more than one length late', async () => {
    const { clock, timers } = lateTimersClock(1);
    const started = new Map<number, number>();
    const late: number[] = [];
    const queue = new DeadlineQueue<number>(100, clock, (id) =>
      late.push(timers.now() - (started.get(id) as number) - 100),
    );
    for (let id = 0; id < 400; id++) {
      started.set(id, timers.now());
      queue.add(id);
      await timers.advance(0.25);
    }
    await timers.advance(1_000);
    expect(late.length).toBe(400);
    expect(Math.min(...late), 'never early').toBeGreaterThanOrEqual(0);
    expect(Math.max(...late), 'ms late at most (one length is 100)').toBeLessThanOrEqual(100);
  });

  it('a loop blocked 400 ms once: the deadlines due meanwhile end then, a later one on time', async () => {
    const { clock, timers, late } = lateTimersClock(400);
    const fired = new Map<number, number>();
    const queue = new DeadlineQueue<number>(100, clock, (id) => fired.set(id, timers.now()));
    const t0 = timers.now();
    queue.add(1); // its timer fires 400 ms late: the loop is blocked
    late.ms = 0;
    await timers.advance(50);
    queue.add(2);
    await timers.advance(450);
    expect([...fired.keys()]).toEqual([1]);
    queue.add(3); // right after the blocked stretch, due at 600
    await timers.advance(1_000);
    const at = (id: number) => (fired.get(id) as number) - t0;
    expect(at(1)).toBe(500);
    expect(at(2)).toBeGreaterThanOrEqual(500);
    expect(at(3)).toBeGreaterThanOrEqual(600);
    expect(at(3), 'deadline 3 (due at 600) not pushed back by the block before it').toBeLessThanOrEqual(700);
    expect(queue.size).toBe(0);
  });
});
