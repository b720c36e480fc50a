import { type Clock, ManualClock } from '@holdfast/core';

/**
 * A clock with now() only (no monotonic()), as a user's own may be: a ManualClock's time and
 * timers, and `step(ms)` moving now() alone, as NTP or a VM resume steps a wall clock (back when
 * `ms` is below 0). What a policy measures on it goes back when the clock does.
 */
export function wallOnlyClock(start = 10_000_000): { clock: Clock; timers: ManualClock; step: (ms: number) => void } {
  const timers = new ManualClock(start);
  let offset = 0;
  const clock: Clock = {
    now: () => timers.now() + offset,
    setTimeout: (callback, ms) => timers.setTimeout(callback, ms),
    clearTimeout: (handle) => timers.clearTimeout(handle),
  };
  return { clock, timers, step: (ms) => (offset += ms) };
}
