import { afterEach, describe, expect, it, vi } from 'vitest';
import { type Clock, elapsedTime, ManualClock, realClock } from '../src/index.js';

afterEach(() => {
  vi.restoreAllMocks();
});

describe('Clock.monotonic and elapsedTime()', () => {
  it('the real clock measures elapsed time on performance.now(): a wall-clock step does not move it', () => {
    const elapsed = elapsedTime(realClock);
    const before = elapsed();
    const real = Date.now.bind(Date);
    vi.spyOn(Date, 'now').mockImplementation(() => real() + 3_600_000);
    expect(realClock.now() - real()).toBeGreaterThanOrEqual(3_600_000);
    const after = elapsed();
    expect(after).toBeGreaterThanOrEqual(before);
    expect(after - before).toBeLessThan(3_600_000);
  });

  /**
   * The real clock reads perf_hooks' own `performance` while no fake timers are installed (the
   * global is an accessor, a getter call at each read); fake timers move it in each way they
   * are installed.
   */
  it.each([
    ['timers and Date', ['setTimeout', 'clearTimeout', 'Date'] as const],
    ['Date and performance, timers real', ['Date', 'performance'] as const],
    ['timers, Date and performance', ['Date', 'performance', 'setTimeout', 'clearTimeout'] as const],
  ])('under fake %s, the real clock moves with the fake clock', (_, toFake) => {
    vi.useFakeTimers({ toFake: [...toFake] });
    try {
      const before = realClock.monotonic?.() as number;
      vi.advanceTimersByTime(5_000);
      expect((realClock.monotonic?.() as number) - before).toBe(5_000);
    } finally {
      vi.useRealTimers();
    }
  });

  it("without fake timers, the real clock does not read Node's global performance accessor", () => {
    const descriptor = Object.getOwnPropertyDescriptor(globalThis, 'performance');
    const get = descriptor?.get;
    if (descriptor === undefined || get === undefined) throw new Error('performance is no accessor here');
    let reads = 0;
    Object.defineProperty(globalThis, 'performance', {
      ...descriptor,
      get() {
        reads++;
        return get.call(this);
      },
    });
    try {
      for (let i = 0; i < 3; i++) realClock.monotonic?.();
    } finally {
      Object.defineProperty(globalThis, 'performance', descriptor);
    }
    expect(reads).toBe(0);
  });

  it('a ManualClock keeps one time line: monotonic() is now()', async () => {
    const clock = new ManualClock(5_000);
    const elapsed = elapsedTime(clock);
    expect(elapsed()).toBe(5_000);
    await clock.advance(250);
    expect(clock.monotonic()).toBe(5_250);
    expect(elapsed()).toBe(clock.now());
  });

  it("a user's own clock with only now/setTimeout/clearTimeout is measured on now()", () => {
    let t = 42;
    const own: Clock = { now: () => t, setTimeout: () => undefined, clearTimeout: () => {} };
    const elapsed = elapsedTime(own);
    expect(elapsed()).toBe(42);
    t = 1_042;
    expect(elapsed()).toBe(1_042);
  });

  it('a user clock with monotonic() is read through it, with its own `this`', () => {
    class OwnClock implements Clock {
      mono = 7;
      now() {
        return 1e12;
      }
      monotonic() {
        return this.mono;
      }
      setTimeout() {
        return undefined;
      }
      clearTimeout() {}
    }
    const own = new OwnClock();
    const elapsed = elapsedTime(own);
    own.mono = 9;
    expect(elapsed()).toBe(9);
  });
});
