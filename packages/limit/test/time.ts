import type { Clock } from '@holdfast/core';

/** A clock a test moves by hand, synchronously; it starts no timers. */
export function handClock(start = 1_000_000): Clock & { t: number } {
  return {
    t: start,
    now() {
      return this.t;
    },
    setTimeout() {
      throw new Error('handClock: no timers');
    },
    clearTimeout() {},
  };
}
