import { describe, expect, it } from 'vitest';
import { type CallContext, createBus, hedge, ManualClock } from '../src/index.js';

/**
 * `onFailure: false` means only the delay hedges: a failed attempt sends nothing at once. It
 * must not call off the delay's next hedge either while another attempt is still running (that
 * attempt is as slow as it was: the delay is what hedges it). With none left running, the call
 * fails: the caller retries failures itself.
 */
describe('hedge onFailure: false, a failed attempt and the next delay hedge', () => {
  /** Attempts that stay open until settled by hand; each knows when it went out. */
  function attempts(clock: ManualClock) {
    const sent: { at: number; attempt: number; settle: (ok: boolean) => void; signal: AbortSignal }[] = [];
    const fn = (ctx: CallContext) =>
      new Promise<string>((resolve, reject) => {
        sent.push({
          at: clock.now(),
          attempt: ctx.attempt,
          signal: ctx.signal,
          settle: (ok) => (ok ? resolve(`attempt ${ctx.attempt}`) : reject(new Error(`attempt ${ctx.attempt} failed`))),
        });
        ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason));
      });
    return { sent, fn };
  }

  it('a hedge that fails while the first attempt is still out leaves the next hedge due at its delay', async () => {
    const clock = new ManualClock(0);
    const h = hedge({
      delay: 100,
      maxHedges: 2,
      safe: true,
      onFailure: false,
      budget: false,
      clock,
      bus: createBus(),
      policies: false,
    });
    const { sent, fn } = attempts(clock);
    const result = h.execute(fn).then(String, (e: Error) => `rejected: ${e.message}`);
    await clock.advance(100); // the first hedge goes
    expect(sent.map((s) => s.at)).toEqual([0, 100]);
    sent[1]?.settle(false); // the hedge fails at once; the first attempt is still out
    await clock.advance(0);
    expect(sent.length, 'nothing sent at once on a failure').toBe(2);
    await clock.advance(100);
    expect(
      sent.map((s) => s.at),
      'the second hedge goes at its delay, 100 ms after the first',
    ).toEqual([0, 100, 200]);
    sent[2]?.settle(true);
    expect(await result).toBe('attempt 3');
    expect(sent[0]?.signal.aborted, 'the first attempt, the loser, is aborted').toBe(true);
    expect(clock.pending).toBe(0);
    h.dispose();
  });

  it('the first attempt failing before the delay, with nothing else out, fails the call at once and leaves no timer', async () => {
    const clock = new ManualClock(0);
    const h = hedge({
      delay: 100,
      maxHedges: 2,
      safe: true,
      onFailure: false,
      budget: false,
      clock,
      bus: createBus(),
      policies: false,
    });
    const { sent, fn } = attempts(clock);
    const result = h.execute(fn).then(String, (e: Error) => `rejected: ${e.message}`);
    await clock.advance(10);
    sent[0]?.settle(false);
    expect(await result).toBe('rejected: attempt 1 failed');
    expect(clock.pending).toBe(0);
    expect(sent.length).toBe(1);
    h.dispose();
  });

  it('every attempt out failing fails the call with the last error, the next hedge not waited for', async () => {
    const clock = new ManualClock(0);
    const h = hedge({
      delay: 100,
      maxHedges: 3,
      safe: true,
      onFailure: false,
      budget: false,
      clock,
      bus: createBus(),
      policies: false,
    });
    const { sent, fn } = attempts(clock);
    const result = h.execute(fn).then(String, (e: Error) => `rejected: ${e.message}`);
    await clock.advance(100);
    sent[0]?.settle(false);
    await clock.advance(0);
    sent[1]?.settle(false);
    expect(await result).toBe('rejected: attempt 2 failed');
    expect(clock.pending).toBe(0);
    expect(sent.length).toBe(2);
    h.dispose();
  });
});
