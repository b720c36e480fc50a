import { afterEach, vi } from 'vitest';

/**
 * Steps the wall clock as NTP, a VM resume or a hand-set date would: Date.now() moves by `ms`,
 * while Node's timers and performance.now() run on untouched. Steps add up; each test file that
 * imports this gets Date.now back after every test.
 */
export function stepWallClock(ms: number): void {
  if (!vi.isMockFunction(Date.now)) {
    const real = Date.now.bind(Date);
    vi.spyOn(Date, 'now').mockImplementation(() => real() + offset);
  }
  offset += ms;
}

let offset = 0;

afterEach(() => {
  offset = 0;
  vi.restoreAllMocks();
});

export const HOUR = 3_600_000;
