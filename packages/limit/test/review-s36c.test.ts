import { type Clock, ManualClock } from '@holdfast/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Aimd, ipKey, slidingWindow, tokenBucket } from '../src/index.js';

/**
 * Outside review s36c of 3a1a7602 (retryAfter via leastWait) and dcb332e2 (AIMD count, adaptive
 * step back, ipKey quotes). Failing tests are bugs; "HELD" tests are attacks that did not break.
 */

/** A user's clock without monotonic(): elapsed time is read from now(), which a test sets. */
class StepClock implements Clock {
  t = 0;
  now(): number {
    return this.t;
  }
  setTimeout(cb: () => void, ms: number) {
    return setTimeout(cb, ms);
  }
  clearTimeout(h: unknown) {
    clearTimeout(h as NodeJS.Timeout);
  }
}

describe('review s36c: retryAfter', () => {
  it('BUG: slidingWindow retryAfter is short (150 ms, needs up to 350) after a clock steps back 150 ms', () => {
    // Symptom: limit 2/100 ms, clock without monotonic(). 2 taken at t=1000 (window 10); the clock
    // steps back to 850 (window 8). Refused with retryAfter 150 -> retried at 1000, refused again
    // (window 10 is `high`: the counts stand); probed every 10 ms it first goes at 1200 (350 ms).
    // Root cause: src/sliding-window.ts:119 — leastWait's predicate models take() without
    // `standing()` (src/sliding-window.ts:26): for any window i > s.index + 1 it assumes the
    // counts are gone (previous = current = 0), while take() keeps them when |i - s.high| <= 1.
    // The estimate retryAfter() (no `high` either) lands there and the predicate confirms it; and
    // leastWait's 4-step cap (src/shared.ts:45) could not bridge 200 ms anyway.
    // Fix: in the predicate, use standing(s, i) exactly as take() does (counts stand at i when it
    // holds), and when s.high is set, estimate from the first window past s.high + 1 (or let
    // leastWait jump window boundaries instead of +1 ms steps).
    const c = new StepClock();
    const rl = slidingWindow({ limit: 2, interval: 100, clock: c, policies: false });
    c.t = 1000;
    expect(rl.take('k', 2).allowed).toBe(true);
    c.t = 850; // NTP steps the clock back 150 ms
    const d = rl.take('k', 2);
    expect(d.allowed).toBe(false);
    c.t = 850 + d.retryAfter; // retried right at retryAfter (150 -> t=1000, window 10 = high)
    expect(rl.take('k', 2).allowed, `refused at retryAfter ${d.retryAfter}`).toBe(true);
    rl.dispose();
  });

  it('BUG: retryAfter is 1 ms longer than needed at a slow rate (the r-1 tightness), both limiters', async () => {
    // Symptom: tokenBucket 1/day, bucket drained at t=0, refused at t=0.96 ms (performance.now()
    // is fractional): retryAfter 86_400_000, yet the same call is admitted 86_399_999 ms later.
    // Same for slidingWindow 1/day. (At 1 per 1e12 ms it is 1000 ms too long.)
    // Root cause: src/shared.ts:45 leastWait only ever steps UP from the estimate. The estimate
    // (src/token-bucket.ts:85, sliding-window.ts retryAfter()) subtracts a 1e-6 ms epsilon, but
    // take() admits with a 1e-9 *token/count* epsilon (token-bucket.ts:78, sliding-window.ts:104),
    // i.e. 1e-9 / rate ms — 0.0864 ms at 1/day, 1000 ms at 1/1e12 ms — so the call goes earlier
    // than the estimate and retryAfter is not "the least whole ms".
    // Fix: in leastWait, also step down while ms > 1 && admits(ms - 1) (or estimate with the
    // same epsilon take() uses, converted: ceil((cost - tokens - 1e-9) / rate)).
    const DAY = 86_400_000;
    const clock = new ManualClock(0);
    const tb = tokenBucket({ limit: 1, interval: DAY, clock, policies: false });
    expect(tb.take('k').allowed).toBe(true);
    await clock.advance(0.96);
    const d = tb.take('k');
    expect(d.allowed).toBe(false);
    await clock.advance(d.retryAfter - 1);
    const tbEarly = tb.take('k').allowed;

    const clock2 = new ManualClock(0);
    const sw = slidingWindow({ limit: 1, interval: DAY, clock: clock2, policies: false });
    await clock2.advance(DAY - 1); // one call at the end of window 0
    expect(sw.take('k').allowed).toBe(true);
    await clock2.advance(1.96); // window 1: it weighs ~1, refused
    const e = sw.take('k');
    expect(e.allowed).toBe(false);
    await clock2.advance(e.retryAfter - 1);
    const swEarly = sw.take('k').allowed;

    expect({ tbEarly, swEarly }, `admitted at retryAfter - 1 (tb ${d.retryAfter}, sw ${e.retryAfter})`).toEqual({
      tbEarly: false,
      swEarly: false,
    });
    tb.dispose();
    sw.dispose();
  });
});

describe('review s36c: HELD', () => {
  it('HELD: ipKey quotes — edge cases right, no ReDoS on 100k-char inputs', () => {
    expect(ipKey('"[2001:db8::1]:4711"')).toBe('2001:db8:0:0:0:0:0:0/56');
    expect(ipKey('"203.0.113.7"')).toBe('203.0.113.7');
    expect(ipKey('"\\2\\03.0.113.7:80"')).toBe('203.0.113.7');
    for (const s of ['"\\"', '""', '"', '"a"', '"unknown"', '"_hidden"', '"1.2.3.4', '1.2.3.4"', '"1.2.3.4\\"'])
      expect(ipKey(s)).toBe(s);
    const big = [
      `"${'\\'.repeat(100_000)}"`,
      `"[${']'.repeat(100_000)}"`,
      `[${']'.repeat(100_000)}x`,
      `${'1'.repeat(100_000)}:x`,
      `"${'1.'.repeat(50_000)}:1"`,
      `[${'1:'.repeat(50_000)}]:a`,
      `"${'"'.repeat(100_000)}`,
    ];
    for (const s of big) {
      const t0 = performance.now();
      expect(ipKey(s)).toBe(s);
      expect(performance.now() - t0).toBeLessThan(200);
    }
  });

  it('HELD: Aimd counts cooldown in calls; count left out is 1; at most one cut per update', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({ drop: fc.boolean(), count: fc.option(fc.integer({ min: 1, max: 500 }), { nil: undefined }) }),
          {
            maxLength: 60,
          },
        ),
        (samples) => {
          const a = new Aimd({ initialLimit: 100, minLimit: 1, maxLimit: 1000, backoffRatio: 0.9, timeout: 1e9 });
          let cooldown = 0;
          let model = 100;
          for (const { drop, count } of samples) {
            const before = a.limit;
            const next = a.update({ rtt: 1, inFlight: 1000, didDrop: drop, ...(count === undefined ? {} : { count }) });
            cooldown = Math.max(0, cooldown - (count ?? 1));
            if (drop && cooldown === 0) {
              model = Math.max(1, model * 0.9);
              cooldown = Math.ceil(model);
            } else if (!drop) model = Math.min(1000, model + 1);
            expect(next).toBe(model);
            expect(next).toBeGreaterThanOrEqual(Math.max(1, before * 0.9) - 1e-9);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
