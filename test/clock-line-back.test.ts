import { tokenBucket } from '@holdfast/limit';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { wallOnlyClock } from './support/wall-only-clock.js';

// A token bucket's elapsed-time line can go back: a user's Clock without monotonic() (its
// durations are measured on now()) stepped back by NTP, or realClock moving from fake timers
// (the fake clock's time, epoch ms) back to real ones (performance.now()) when a test calls
// vi.useRealTimers() on a limiter made at module load. The bucket refilled only while time was
// past its last refill: drained, it stayed drained until the line came back there (an hour;
// on performance.now(), decades).
afterEach(() => {
  vi.useRealTimers();
});

describe('a drained token bucket whose time line went back', () => {
  it('refills from then on: a clock without monotonic() stepped back an hour', async () => {
    const { clock, timers: manual, step } = wallOnlyClock();
    const limiter = tokenBucket({ limit: 1, interval: 1_000, burst: 1, clock, policies: false });
    expect(limiter.take().allowed).toBe(true);
    expect(limiter.take().allowed).toBe(false);
    step(-3_600_000);
    expect(limiter.take().allowed).toBe(false); // refills from here
    await manual.advance(1_000);
    expect(limiter.take().allowed).toBe(true);
  });

  it('refills on real timers after it was drained under fake timers', async () => {
    vi.useFakeTimers();
    const limiter = tokenBucket({ limit: 1, interval: 20, burst: 1, policies: false });
    expect(limiter.take().allowed).toBe(true);
    expect(limiter.take().allowed).toBe(false);
    vi.useRealTimers();
    expect(limiter.take().allowed).toBe(false); // on the real line now: refills from here
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(limiter.take().allowed).toBe(true);
  });
});
