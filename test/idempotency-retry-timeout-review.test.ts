/**
 * Review: idempotent() inside pipeline(retry(), timeout()), its function following ctx.signal.
 * The timeout aborts the attempt; the run stops part way and `aborted` is stored; what does the
 * retry do next, and what does the caller see?
 */
import { createBus, type HoldfastEvent, ManualClock, pipeline, timeout } from '@holdfast/core';
import { type IdempotentContext, idempotent, memoryStore } from '@holdfast/idempotency';
import { retry } from '@holdfast/retry';
import { describe, expect, it } from 'vitest';

describe('pipeline(retry(), timeout()) around idempotent(), the function following ctx.signal', () => {
  it('the first attempt times out and stores `aborted`; the retry stops at the refusal: one run, E_IDEMPOTENCY_ABORTED', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('*', (e) => events.push(e));
    let runs = 0;
    const store = memoryStore({ clock });
    const charge = idempotent(
      (_order: { id: string }, ctx: IdempotentContext) =>
        new Promise<string>((_resolve, reject) => {
          runs++; // the request to the payment provider leaves here
          ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true });
        }),
      { store, key: (order) => order.id, clock, bus },
    );
    const policy = pipeline(retry({ maxAttempts: 5, budget: false, clock, bus }), timeout(1_000, { clock, bus }));
    const call = policy.execute((ctx) => charge({ id: 'order-1' }, ctx)).catch((e: unknown) => e);
    for (let i = 0; i < 20 && events.every((e) => e.type !== 'retry.giveUp'); i++) await clock.runAll();
    const error = (await call) as { code?: string; name?: string };
    const attempts = events.filter((e) => e.type === 'retry.attempt').length;
    // One timed-out attempt, one retry that met the stored verdict, and no more waits after it.
    expect({ runs, attempts, code: error.code }).toEqual({ runs: 1, attempts: 1, code: 'E_IDEMPOTENCY_ABORTED' });
    expect(events.map((e) => e.type)).toContain('idempotency.lost');
    store.dispose();
  });

  it('the first attempt times out in a read-only step and says nothingDone(): released, the next attempt charges once', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('*', (e) => events.push(e));
    let runs = 0;
    let charges = 0;
    const store = memoryStore({ clock });
    const charge = idempotent(
      async (_order: { id: string }, { signal, nothingDone }: IdempotentContext) => {
        runs++;
        try {
          // A quote lookup that follows the signal: the first one hangs until the timeout.
          await new Promise<void>((resolve, reject) => {
            if (runs > 1) return resolve();
            signal.addEventListener('abort', () => reject(signal.reason), { once: true });
          });
        } catch (error) {
          nothingDone();
          throw error;
        }
        charges++;
        return 'charged';
      },
      { store, key: (order) => order.id, clock, bus },
    );
    const policy = pipeline(retry({ maxAttempts: 5, budget: false, clock, bus }), timeout(1_000, { clock, bus }));
    const call = policy.execute((ctx) => charge({ id: 'order-1' }, ctx)).catch((e: unknown) => e);
    let settled = false;
    void call.then(() => (settled = true));
    for (let i = 0; i < 20 && !settled; i++) await clock.runAll();
    expect({ result: await call, runs, charges }).toEqual({ result: 'charged', runs: 2, charges: 1 });
    const types = events.map((e) => e.type);
    expect(types).toContain('idempotency.release');
    expect(types).not.toContain('idempotency.lost');
    store.dispose();
  });
});
