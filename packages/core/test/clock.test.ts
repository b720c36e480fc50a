import { describe, expect, it, vi } from 'vitest';
import { ManualClock, realClock } from '../src/index.js';

describe('ManualClock', () => {
  it('fires timers in due order as time advances, and lets their promises settle in between', async () => {
    const clock = new ManualClock(0);
    const log: string[] = [];
    clock.setTimeout(() => log.push(`b@${clock.now()}`), 20);
    clock.setTimeout(() => {
      log.push(`a@${clock.now()}`);
      void Promise.resolve().then(() => clock.setTimeout(() => log.push(`c@${clock.now()}`), 5));
    }, 10);
    await clock.advance(12);
    expect(log).toEqual(['a@10']);
    await clock.advance(10);
    expect(log).toEqual(['a@10', 'c@15', 'b@20']);
    expect(clock.now()).toBe(22);
  });

  it('clearTimeout cancels; pending counts what is left; runAll drains', async () => {
    const clock = new ManualClock();
    const fired: number[] = [];
    const t = clock.setTimeout(() => fired.push(1), 5);
    clock.setTimeout(() => fired.push(2), 50);
    clock.clearTimeout(t);
    expect(clock.pending).toBe(1);
    await clock.runAll();
    expect(fired).toEqual([2]);
    expect(clock.now()).toBe(50);
    expect(clock.pending).toBe(0);
  });
});

describe('realClock', () => {
  it('does not keep the process alive unless asked to', () => {
    const background = realClock.setTimeout(() => {}, 60_000) as NodeJS.Timeout;
    const awaited = realClock.setTimeout(() => {}, 60_000, { ref: true }) as NodeJS.Timeout;
    expect(background.hasRef()).toBe(false);
    expect(awaited.hasRef()).toBe(true);
    realClock.clearTimeout(background);
    realClock.clearTimeout(awaited);
  });

  it('reads the Date.now() of the moment, so fake timers move it as they move its timers', () => {
    vi.useFakeTimers({ now: 1_000_000 });
    try {
      const fired: number[] = [];
      realClock.setTimeout(() => fired.push(realClock.now()), 30_000);
      vi.advanceTimersByTime(30_000);
      // It read the Date.now captured when the module loaded: real time, while its timers were fake.
      expect(fired).toEqual([1_030_000]);
      expect(realClock.now()).toBe(1_030_000);
    } finally {
      vi.useRealTimers();
    }
  });
});
