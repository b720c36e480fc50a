import { describe, expect, it } from 'vitest';
import { type CallContext, createBus, hedge, ManualClock } from '../src/index.js';

/** An attempt that resolves `n` after `ms` on the manual clock, and rejects when aborted. */
function slow(clock: ManualClock, ms: (n: number) => number, log: { started: number; aborted: number }) {
  return (ctx: CallContext) =>
    new Promise<number>((resolve, reject) => {
      const n = ++log.started;
      const timer = clock.setTimeout(() => resolve(n), ms(n));
      ctx.signal.addEventListener('abort', () => {
        log.aborted++;
        clock.clearTimeout(timer);
        reject(ctx.signal.reason);
      });
    });
}

describe('hedge dispose() (review)', () => {
  it('a hedge sent before dispose that wins still aborts the loser; counts add up', async () => {
    const clock = new ManualClock();
    const h = hedge({ delay: 10, maxHedges: 2, safe: true, budget: false, clock, policies: false });
    const log = { started: 0, aborted: 0 };
    const call = h.execute(slow(clock, (n) => (n === 1 ? 1_000 : 20), log));
    await clock.advance(10); // the first hedge goes
    h.dispose();
    await clock.runAll();
    expect(await call).toBe(2);
    expect(log).toEqual({ started: 2, aborted: 1 });
    expect(h.snapshot()).toMatchObject({ hedges: 1, hedgeWins: 1, losersAborted: 1, refused: 0 });
    expect(clock.pending).toBe(0);
  });

  it('dispose() from a hedge.attempt listener: the hedge announced goes, no later one', async () => {
    const clock = new ManualClock();
    const bus = createBus();
    const h = hedge({ delay: 10, maxHedges: 3, safe: true, budget: false, clock, bus, policies: false });
    const attempts: number[] = [];
    bus.on('hedge.attempt', (e) => {
      attempts.push(e.attempt);
      h.dispose();
    });
    const log = { started: 0, aborted: 0 };
    const call = h.execute(slow(clock, () => 1_000, log));
    await clock.runAll();
    expect(await call).toBe(1);
    expect(attempts).toEqual([2]);
    expect(log.started).toBe(2);
    expect(h.snapshot().hedges).toBe(1);
  });

  it('a first attempt that fails after dispose: no failure hedge, the call rejects with its error', async () => {
    const clock = new ManualClock();
    const h = hedge({ delay: 10, maxHedges: 2, safe: true, budget: false, clock, policies: false });
    let started = 0;
    const call = h.execute(
      () =>
        new Promise<number>((_, reject) => {
          started++;
          clock.setTimeout(() => reject(new Error('boom')), 5);
        }),
    );
    const outcome = call.catch((error: unknown) => error);
    h.dispose();
    await clock.runAll();
    expect(await outcome).toMatchObject({ message: 'boom' });
    expect(started).toBe(1);
    expect(clock.pending).toBe(0);
  });

  it('after dispose, a call whose attempt hangs keeps no hedge timer armed past its delay', async () => {
    const clock = new ManualClock();
    const h = hedge({ delay: 10, maxHedges: 2, safe: true, budget: false, clock, policies: false });
    void h.execute(() => new Promise<number>(() => undefined));
    h.dispose();
    await clock.advance(10);
    expect(clock.pending).toBe(0);
  });
});
