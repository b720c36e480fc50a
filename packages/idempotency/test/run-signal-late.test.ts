import { ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { type IdempotentContext, idempotent, memoryStore } from '../src/index.js';

/** ctx.signal is made when first read (9d85a30): read late, twice, or never, it says the same. */
describe('ctx.signal read late', () => {
  it('first read after the run ended: not aborted, and a caller aborting then does not abort it', async () => {
    let kept!: IdempotentContext;
    const caller = new AbortController();
    const job = idempotent(
      async (_: undefined, ctx) => {
        kept = ctx;
        return 'done';
      },
      { store: memoryStore(), key: () => 'k' },
    );
    expect(await job(undefined, { signal: caller.signal })).toBe('done');
    caller.abort(new Error('too late'));
    const read = kept.signal;
    expect(read.aborted).toBe(false);
    expect(kept.signal).toBe(read); // read twice: the same signal
  });

  it('read during the run, the caller aborting after it ended: its listener is not called', async () => {
    let kept!: IdempotentContext;
    const caller = new AbortController();
    let heard = 0;
    const job = idempotent(
      async (_: undefined, ctx) => {
        kept = ctx;
        ctx.signal.addEventListener('abort', () => heard++);
        return 'done';
      },
      { store: memoryStore(), key: () => 'k' },
    );
    await job(undefined, { signal: caller.signal });
    caller.abort();
    expect([heard, kept.signal.aborted]).toEqual([0, false]);
  });

  it('the caller aborted while the run went on without reading it: read after, it is aborted with the reason', async () => {
    let kept!: IdempotentContext;
    let finish!: () => void;
    const caller = new AbortController();
    const reason = new Error('caller left');
    const job = idempotent(
      (_: undefined, ctx) =>
        new Promise<string>((resolve) => {
          kept = ctx;
          finish = () => resolve('done');
        }),
      { store: memoryStore(), key: () => 'k' },
    );
    const call = job(undefined, { signal: caller.signal }).catch((e: unknown) => e);
    await new Promise((resolve) => setImmediate(resolve));
    caller.abort(reason);
    expect(await call).toBe(reason);
    finish();
    await new Promise((resolve) => setImmediate(resolve));
    expect([kept.signal.aborted, kept.signal.reason]).toEqual([true, reason]);
  });

  it('the cap at maxRunMs aborts a run that never read ctx.signal: read then, it is aborted (E_TIMEOUT), twice the same', async () => {
    const clock = new ManualClock(1_000);
    let kept!: IdempotentContext;
    let runs = 0;
    const job = idempotent(
      (_: undefined, ctx) => {
        runs++;
        kept = ctx;
        return new Promise<string>(() => {});
      },
      { store: memoryStore({ clock }), key: () => 'k', leaseMs: 300, maxRunMs: 600, clock },
    );
    void job(undefined);
    for (let t = 0; t < 900; t += 50) await clock.advance(50);
    const read = kept.signal; // first read: after the cap
    expect([read.aborted, (read.reason as { code?: string }).code]).toEqual([true, 'E_TIMEOUT']);
    expect(kept.signal).toBe(read);
    expect(await job(undefined).catch((e: { code: string }) => e.code)).toBe('E_IDEMPOTENCY_ABORTED');
    expect(runs).toBe(1);
  });
});
