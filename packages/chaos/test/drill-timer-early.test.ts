/**
 * Node counts a timer from the loop's time in whole milliseconds: a timer may fire before
 * `performance.now()`, which the drill measures its steps on, has moved its full delay. A step
 * must still run no earlier than its `at`, and a step at the load's end gets the load's timeout,
 * not the sliver of load time that an early timer left.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { drill } from '../src/index.js';

const realSetTimeout = globalThis.setTimeout;
const tick = (ms: number) => new Promise((r) => realSetTimeout(r, ms));

/** Every timer the drill sets of more than `lag` ms fires `lag` ms early, as Node's may (by less). */
function timersFireEarly(lag: number): void {
  vi.spyOn(globalThis, 'setTimeout').mockImplementation(((callback: () => void, ms?: number) =>
    realSetTimeout(callback, ms !== undefined && ms > lag ? ms - lag : ms)) as typeof setTimeout);
}

describe('drill, timers that fire early', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("runs a step at the load's end no earlier than its time, and gives it the load's timeout", async () => {
    timersFireEarly(20);
    const ran: number[] = [];
    const result = await drill({
      print: false,
      load: { request: () => true, rate: 20, duration: 100, timeout: 2_000 },
      steps: [
        { at: 50, name: 'kill', run: () => {} },
        // A restore that takes a while: at the load's end it has the load's timeout to settle.
        { at: 100, name: 'restore', run: () => tick(60).then(() => void ran.push(1)) },
      ],
    });
    vi.restoreAllMocks();
    // Before the fix the restore ran 20 ms early, inside the load, was given what was left of it
    // (20 ms) and was reported hung: the drill did not pass.
    expect(result.steps.map((s) => [s.name, s.ranAt >= s.at, s.hung ?? false])).toEqual([
      ['kill', true, false],
      ['restore', true, false],
    ]);
    expect(ran).toEqual([1]);
    expect(result.passed).toBe(true);
  }, 10_000);
});
