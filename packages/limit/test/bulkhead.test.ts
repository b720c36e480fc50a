import {
  createBus,
  createPolicyRegistry,
  DisposedError,
  HoldfastConfigError,
  type HoldfastEvent,
  ManualClock,
  pipeline,
  timeout,
} from '@holdfast/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { adaptiveConcurrency, BulkheadRejectedError, bulkhead } from '../src/index.js';

// The 10,000-call tests are CPU-bound, bounded by their counts (never by time): room for a machine
// at load 20 on two cores.
const loaded = { timeout: 60_000 };

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('bulkhead()', loaded, () => {
  it('never runs more than maxConcurrent of 10,000 concurrent calls, and runs every admitted one', async () => {
    const b = bulkhead({ maxConcurrent: 7, maxQueue: 10_000, policies: false });
    let running = 0;
    let peak = 0;
    let ran = 0;
    const calls = Array.from({ length: 10_000 }, (_, i) =>
      b.execute(async () => {
        running++;
        peak = Math.max(peak, running);
        // Vary how long each call holds its slot, some synchronously resolved, some a macrotask.
        if (i % 3 === 0) await tick();
        else await Promise.resolve();
        running--;
        ran++;
        return i;
      }),
    );
    const results = await Promise.all(calls);
    expect(peak).toBe(7);
    expect(ran).toBe(10_000);
    expect(results[9_999]).toBe(9_999);
    expect(b.snapshot()).toMatchObject({ running: 0, queued: 0, rejected: 0 });
  });

  it('property: 10,000 calls with random aborts (before, queued, running, late), throws and pipelines never leak a permit nor pass the limit', async () => {
    const call = fc.record({
      abortAt: fc.constantFrom('never', 'before', 'queued', 'running', 'late'),
      how: fc.constantFrom('syncThrow', 'syncValue', 'asyncValue', 'asyncThrow', 'slow'),
      piped: fc.boolean(),
    });
    let calls = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 0, max: 5 }),
        fc.array(call, { minLength: 40, maxLength: 60 }),
        async (maxConcurrent, maxQueue, plan) => {
          const b = bulkhead({ maxConcurrent, maxQueue, policies: false });
          const inner = adaptiveConcurrency({
            algorithm: 'aimd',
            initialLimit: 3,
            minLimit: 3,
            maxLimit: 3,
            policies: false,
          });
          const piped = pipeline(b, inner);
          let running = 0;
          let peak = 0;
          const queuedAborts: (() => void)[] = [];
          const settled = plan.map((c) => {
            calls++;
            const caller = new AbortController();
            if (c.abortAt === 'before') caller.abort(new Error('before'));
            const fn = (): number | Promise<number> => {
              running++;
              peak = Math.max(peak, running);
              if (c.abortAt === 'running') queueMicrotask(() => caller.abort(new Error('running')));
              if (c.how === 'syncThrow' || c.how === 'syncValue') {
                running--;
                if (c.how === 'syncThrow') throw new Error('sync');
                return 1;
              }
              return (async () => {
                await (c.how === 'slow' ? tick() : Promise.resolve());
                running--;
                if (c.how === 'asyncThrow') throw new Error('async');
                return 2;
              })();
            };
            const signal = c.abortAt === 'never' ? undefined : { signal: caller.signal };
            const p = (c.piped ? piped : b).execute(fn, signal);
            if (c.abortAt === 'queued') queuedAborts.push(() => caller.abort(new Error('queued')));
            if (c.abortAt === 'late') setImmediate(() => caller.abort(new Error('late')));
            return p.then(
              () => undefined,
              () => undefined,
            );
          });
          for (const abort of queuedAborts) abort();
          await Promise.all(settled);
          expect(peak).toBeLessThanOrEqual(maxConcurrent);
          expect(running).toBe(0);
          expect(b.snapshot()).toMatchObject({ running: 0, queued: 0 });
          expect(inner.inFlight).toBe(0);
        },
      ),
      { numRuns: 220, seed: 7 },
    );
    expect(calls).toBeGreaterThanOrEqual(10_000);
  });

  it('refuses at once with E_BULKHEAD_FULL when slots and queue are full, and says so on the bus', async () => {
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('bulkhead.reject', (e) => events.push(e));
    const b = bulkhead({ maxConcurrent: 2, maxQueue: 1, bus, policies: false, name: 'reports' });
    const gates: (() => void)[] = [];
    const hold = () => new Promise<void>((r) => gates.push(r));
    const admitted = [b.execute(hold), b.execute(hold), b.execute(hold)];
    const refused = await b.execute(hold).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(BulkheadRejectedError);
    expect(refused).toMatchObject({ code: 'E_BULKHEAD_FULL', reason: 'full', status: 503 });
    expect(events).toEqual([
      expect.objectContaining({ type: 'bulkhead.reject', source: 'reports', reason: 'full', running: 2, queued: 1 }),
    ]);
    expect(b.snapshot()).toMatchObject({ running: 2, queued: 1, rejected: 1, status: 'warn' });
    while (gates.length > 0) {
      for (const g of gates.splice(0)) g();
      await tick();
    }
    await Promise.all(admitted);
  });

  it('admits queued calls in arrival order', async () => {
    const b = bulkhead({ maxConcurrent: 1, maxQueue: 100, policies: false });
    const order: number[] = [];
    let release!: () => void;
    const first = b.execute(() => new Promise<void>((r) => (release = r)));
    const queued = Array.from({ length: 50 }, (_, i) => b.execute(() => void order.push(i)));
    expect(b.queued).toBe(50);
    release();
    await Promise.all([first, ...queued]);
    expect(order).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  it('refuses a call that waited past queueTimeout, and the call never runs', async () => {
    const clock = new ManualClock();
    const b = bulkhead({ maxConcurrent: 1, maxQueue: 5, queueTimeout: 100, clock, policies: false });
    let release!: () => void;
    const first = b.execute(() => new Promise<void>((r) => (release = r)));
    let ran = false;
    const late = b.execute(() => {
      ran = true;
    });
    const outcome = late.catch((e: unknown) => e);
    await clock.advance(99);
    expect(b.queued).toBe(1);
    await clock.advance(1);
    expect(await outcome).toMatchObject({ code: 'E_BULKHEAD_FULL', reason: 'queueTimeout' });
    expect(b.queued).toBe(0);
    release();
    await first;
    expect(ran).toBe(false);
    expect(b.running).toBe(0);
  });

  it('a caller that aborts leaves the queue at once: with its reason, before any slot frees, never running', async () => {
    const b = bulkhead({ maxConcurrent: 1, maxQueue: 3, policies: false });
    let release!: () => void;
    const first = b.execute(() => new Promise<void>((r) => (release = r)));
    const callers = [new AbortController(), new AbortController(), new AbortController()];
    const ran: number[] = [];
    const queued = callers.map((c, i) =>
      b.execute(() => void ran.push(i), { signal: c.signal }).catch((e: unknown) => e),
    );
    const reason = new Error('client went away');
    callers[1]?.abort(reason);
    expect(await queued[1]).toBe(reason);
    expect(b.queued).toBe(2);
    // The freed queue place is usable at once.
    const extra = b.execute(() => void ran.push(3));
    expect(b.queued).toBe(3);
    release();
    await Promise.all([first, queued[0], queued[2], extra]);
    expect(ran).toEqual([0, 2, 3]);
    expect(b.snapshot()).toMatchObject({ running: 0, queued: 0 });
  });

  it('an outer timeout in a pipeline takes a queued call out of the queue', async () => {
    const b = bulkhead({ maxConcurrent: 1, maxQueue: 1, policies: false });
    let release!: () => void;
    const first = b.execute(() => new Promise<void>((r) => (release = r)));
    const p = pipeline(timeout(20), b);
    const error = await p.execute(() => 'never').catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'E_TIMEOUT' });
    expect(b.queued).toBe(0);
    release();
    await first;
  });

  it('an already-aborted caller is refused without taking a slot; a throwing function frees its slot', async () => {
    const b = bulkhead({ maxConcurrent: 1, policies: false });
    const aborted = AbortSignal.abort(new Error('gone'));
    await expect(b.execute(() => 1, { signal: aborted })).rejects.toThrow('gone');
    await expect(
      b.execute(() => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(await b.execute(() => 2)).toBe(2);
    expect(b.running).toBe(0);
  });

  it('a call through a free slot gives the slot back however it settles, after it settles', async () => {
    const b = bulkhead({ maxConcurrent: 1, maxQueue: 1, policies: false });
    let finish: (value: string) => void = () => {};
    const slow = b.execute(() => new Promise<string>((resolve) => (finish = resolve)));
    // Held until the function settles: the next call waits.
    const next = b.execute(() => 'next');
    expect(b.running).toBe(1);
    expect(b.queued).toBe(1);
    finish('slow');
    expect(await slow).toBe('slow');
    expect(await next).toBe('next');
    // A plain value, a thenable, a rejected promise and a synchronous throw each hand back the slot.
    expect(await b.execute(() => 'plain')).toBe('plain');
    // biome-ignore lint/suspicious/noThenProperty: a PromiseLike that is not a Promise is the point here.
    const thenable = { then: (resolve: (value: string) => void) => resolve('thenable') } as PromiseLike<string>;
    expect(await b.execute(() => thenable)).toBe('thenable');
    const failed = new Error('rejected');
    await expect(b.execute(() => Promise.reject(failed))).rejects.toBe(failed);
    await expect(
      b.execute(() => {
        throw failed;
      }),
    ).rejects.toBe(failed);
    expect(b.running).toBe(0);
    expect(b.queued).toBe(0);
    // The function gets a full call context: attempt 1 and a signal that is not aborted.
    const ctx = await b.execute((c) => ({ attempt: c.attempt, aborted: c.signal.aborted }));
    expect(ctx).toEqual({ attempt: 1, aborted: false });
  });

  it('dispose() refuses queued and later calls, and leaves the registry', async () => {
    const policies = createPolicyRegistry();
    const b = bulkhead({ maxConcurrent: 1, maxQueue: 2, policies, name: 'pdf' });
    expect(policies.snapshots('bulkhead')).toEqual([
      { kind: 'bulkhead', name: 'pdf', snapshot: expect.objectContaining({ maxConcurrent: 1, running: 0 }) },
    ]);
    let release!: () => void;
    const first = b.execute(() => new Promise<void>((r) => (release = r)));
    const waiting = b.execute(() => 1).catch((e: unknown) => e);
    b.dispose();
    expect(await waiting).toBeInstanceOf(DisposedError);
    await expect(b.execute(() => 1)).rejects.toBeInstanceOf(DisposedError);
    expect(policies.size).toBe(0);
    release();
    await first;
  });

  it('bad options throw HoldfastConfigError naming the option', () => {
    expect(() => bulkhead({ maxConcurrent: 0 })).toThrow(HoldfastConfigError);
    expect(() => bulkhead({ maxConcurrent: 2, maxQueue: -1 })).toThrow(/maxQueue/);
    expect(() => bulkhead({ maxConcurrent: 2, queueTimeout: 0 })).toThrow(/queueTimeout/);
    expect(() => bulkhead({ maxConcurrent: 2, queue: 3 } as never)).toThrow(/queue is not a known option/);
  });
});
