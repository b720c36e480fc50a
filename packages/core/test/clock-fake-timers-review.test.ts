import { performance as hrPerformance } from 'node:perf_hooks';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { realClock } from '../src/index.js';

// An outsider's attack on realClock.monotonic() reading perf_hooks' performance while the global
// Date is the one core saw at load: each way a test installs fake timers, and a production Date
// replaced by a library, must still move (or not move) elapsed time as performance.now() does.
type FakeConfig = NonNullable<Parameters<typeof vi.useFakeTimers>[0]>;
type Faked = NonNullable<FakeConfig['toFake']>;

afterEach(() => {
  vi.useRealTimers();
  vi.resetModules();
});

const monotonic = (): number => (realClock.monotonic as () => number)();

describe('realClock.monotonic() under fake timers', () => {
  // Every toFake that fakes the timers or Date: advancing fake time moves elapsed time by as much.
  it.each<[string, Faked]>([
    ['setTimeout', ['setTimeout', 'clearTimeout']],
    ['setTimeout and hrtime', ['setTimeout', 'clearTimeout', 'hrtime']],
    ['setTimeout and performance', ['setTimeout', 'clearTimeout', 'performance']],
    ['Date and performance', ['Date', 'performance']],
    ['Date, performance and hrtime', ['Date', 'performance', 'hrtime']],
    ['everything', ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance', 'hrtime']],
  ])('fake %s: advancing 5 s moves elapsed time 5 s', (_, toFake) => {
    vi.useFakeTimers({ toFake });
    const before = monotonic();
    vi.advanceTimersByTime(5_000);
    expect(monotonic() - before).toBe(5_000);
  });

  it("vitest's default fake timers: advancing 5 s moves elapsed time 5 s", () => {
    vi.useFakeTimers();
    const before = monotonic();
    vi.advanceTimersByTime(5_000);
    expect(monotonic() - before).toBe(5_000);
  });

  it('a core loaded while fake Date and performance are installed (a setup file) moves with them', async () => {
    // A setup file (or jest's fakeTimers.enableGlobally with the timers left real) installs the
    // fakes before the module loads: the Date it sees at load is the fake one, not the real one.
    vi.useFakeTimers({ toFake: ['Date', 'performance'] });
    vi.resetModules();
    const { realClock: loaded } = await import('../src/clock.js');
    const read = loaded.monotonic as () => number;
    const before = read();
    vi.advanceTimersByTime(5_000);
    expect(read() - before).toBe(5_000);
    // And once the test puts real timers back, elapsed time is real time again.
    vi.useRealTimers();
    const low = hrPerformance.now();
    const now = read();
    expect(now).toBeGreaterThanOrEqual(low);
    expect(now).toBeLessThanOrEqual(hrPerformance.now());
  });
});

describe('realClock.monotonic() with a Date a library replaced in production', () => {
  it('a subclass of Date as the global Date: elapsed time is still performance.now()', () => {
    const RealDate = Date;
    globalThis.Date = class ZonedDate extends RealDate {} as DateConstructor;
    try {
      const low = hrPerformance.now();
      const now = monotonic();
      const high = hrPerformance.now();
      expect(now).toBeGreaterThanOrEqual(low);
      expect(now).toBeLessThanOrEqual(high);
    } finally {
      globalThis.Date = RealDate;
    }
  });

  it('a Date whose now() a library shifted by an hour does not move elapsed time', () => {
    const RealDate = Date;
    globalThis.Date = class ShiftedDate extends RealDate {
      static override now(): number {
        return RealDate.now() + 3_600_000;
      }
    } as DateConstructor;
    try {
      const low = hrPerformance.now();
      const now = monotonic();
      expect(now).toBeGreaterThanOrEqual(low);
      expect(now).toBeLessThanOrEqual(hrPerformance.now());
    } finally {
      globalThis.Date = RealDate;
    }
  });
});
