/**
 * An outside hostile review of hedge(), fallback(), timeout(), pipeline() and the bus: each
 * test attacks one thing production would, and asserts behaviour and counts, never timings.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type Bus,
  type CallContext,
  createBus,
  type FallbackCause,
  fallback,
  type HoldfastEvent,
  hedge,
  ManualClock,
  pipeline,
  TimeoutError,
  timeout,
} from '../src/index.js';

describe('fallback: the fallback itself fails', () => {
  it('a `to` that throws on a refused result is called once, and its error reaches the caller', async () => {
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('*', (e) => events.push(e));
    const causes: FallbackCause['reason'][] = [];
    const policy = fallback({
      bus,
      onResult: (r) => r === 'stale',
      to: (cause) => {
        causes.push(cause.reason);
        if (cause.reason === 'result') throw new Error('cache down');
        return 'served from the failure branch';
      },
    });
    await expect(policy.execute(() => 'stale')).rejects.toThrow('cache down');
    expect(causes).toEqual(['result']);
    expect(events.filter((e) => e.type === 'fallback')).toHaveLength(1);
  });

  it('a `to` that returns a rejected promise on a refused result: the rejection reaches the caller, `to` runs once', async () => {
    let calls = 0;
    const policy = fallback({
      bus: createBus(),
      onResult: () => true,
      to: () => {
        calls++;
        return Promise.reject(new Error('async cache down'));
      },
    });
    await expect(policy.execute(() => 'x')).rejects.toThrow('async cache down');
    expect(calls).toBe(1);
  });

  it('an `onResult` predicate that throws is a bug to surface, not a failure to paper over', async () => {
    let replaced = 0;
    const policy = fallback({
      bus: createBus(),
      onResult: () => {
        throw new Error('predicate bug');
      },
      to: () => {
        replaced++;
        return 'fallback';
      },
    });
    await expect(policy.execute(() => 'fine')).rejects.toThrow('predicate bug');
    expect(replaced).toBe(0);
  });

  it('a `to` that throws (sync or async) on a failure: its error reaches the caller, `to` runs once', async () => {
    for (const to of [
      () => {
        throw new Error('to failed');
      },
      () => Promise.reject(new Error('to failed')),
    ]) {
      let calls = 0;
      const policy = fallback({
        bus: createBus(),
        to: () => {
          calls++;
          return to();
        },
      });
      await expect(
        policy.execute(() => {
          throw new Error('original');
        }),
      ).rejects.toThrow('to failed');
      expect(calls).toBe(1);
    }
  });
});

/** An attempt that settles only when told, and counts the aborts it was sent. */
function attempts(options: { ignoreAbort?: boolean } = {}) {
  const started: { ctx: CallContext; resolve: (v: string) => void; reject: (e: unknown) => void }[] = [];
  let aborts = 0;
  const fn = (ctx: CallContext) =>
    new Promise<string>((resolve, reject) => {
      started.push({ ctx, resolve, reject });
      // As fetch does: a signal aborted already rejects at once.
      if (ctx.signal.aborted) {
        aborts++;
        reject(ctx.signal.reason);
        return;
      }
      ctx.signal.addEventListener('abort', () => {
        aborts++;
        if (!options.ignoreAbort) reject(ctx.signal.reason);
      });
    });
  return {
    fn,
    started,
    get aborts() {
      return aborts;
    },
  };
}

describe('hedge: what is never sent twice', () => {
  it('a call not marked safe runs once, however slow it is or however it fails', async () => {
    const clock = new ManualClock();
    const policy = hedge({ delay: 10, maxHedges: 3, budget: false, bus: createBus(), clock, policies: false });
    const slow = attempts();
    const call = policy.execute(slow.fn);
    await clock.advance(1_000);
    expect(slow.started).toHaveLength(1);
    slow.started[0]?.resolve('ok');
    await expect(call).resolves.toBe('ok');
    let runs = 0;
    await expect(
      policy.execute(() => {
        runs++;
        throw new Error('sync failure');
      }),
    ).rejects.toThrow('sync failure');
    expect(runs).toBe(1);
    expect(policy.snapshot().hedges).toBe(0);
  });

  it('safe: false per call overrides a safe policy', async () => {
    const clock = new ManualClock();
    const policy = hedge({ delay: 10, safe: true, budget: false, bus: createBus(), clock, policies: false });
    const slow = attempts();
    const call = policy.execute(slow.fn, { safe: false });
    await clock.advance(100);
    expect(slow.started).toHaveLength(1);
    slow.started[0]?.resolve('ok');
    await call;
  });
});

/** A hedge of safe calls: up to 3 hedges, 10 ms apart, no budget, on `clock`. */
function threeHedges(clock: ManualClock) {
  return hedge({ delay: 10, maxHedges: 3, safe: true, budget: false, bus: createBus(), clock, policies: false });
}

describe('hedge: losers', () => {
  it('every loser is aborted once and counted; a loser that ignores its abort leaves no timer behind', async () => {
    const clock = new ManualClock();
    const policy = threeHedges(clock);
    const deaf = attempts({ ignoreAbort: true });
    const call = policy.execute(deaf.fn);
    await clock.advance(35);
    expect(deaf.started).toHaveLength(4);
    deaf.started[2]?.resolve('third');
    await expect(call).resolves.toBe('third');
    expect(deaf.aborts).toBe(3);
    expect(policy.snapshot()).toMatchObject({ hedges: 3, hedgeWins: 1, losersAborted: 3 });
    expect(clock.pending).toBe(0);
    // The deaf losers settle late, one each way: nothing changes, nothing is counted twice.
    deaf.started[0]?.resolve('late');
    deaf.started[1]?.reject(new Error('late failure'));
    await clock.advance(100);
    expect(policy.snapshot()).toMatchObject({ calls: 1, hedges: 3, hedgeWins: 1, losersAborted: 3 });
  });

  it('the caller aborts mid-call: every running attempt is aborted, no hedge follows, the caller reason wins', async () => {
    const clock = new ManualClock();
    const policy = threeHedges(clock);
    const a = attempts();
    const controller = new AbortController();
    const reason = new Error('caller left');
    const call = policy.execute(a.fn, { signal: controller.signal });
    const settled = call.catch((e: unknown) => e);
    await clock.advance(15);
    expect(a.started).toHaveLength(2);
    controller.abort(reason);
    await clock.advance(1_000);
    expect(await settled).toBe(reason);
    expect(a.started).toHaveLength(2);
    expect(a.aborts).toBe(2);
    expect(clock.pending).toBe(0);
  });

  it('aborted before it starts: the function never runs', async () => {
    const policy = hedge({ delay: 10, safe: true, bus: createBus(), policies: false });
    let runs = 0;
    const reason = new Error('gone');
    await expect(
      policy.execute(
        () => {
          runs++;
          return 'x';
        },
        { signal: AbortSignal.abort(reason) },
      ),
    ).rejects.toBe(reason);
    expect(runs).toBe(0);
  });

  it('a listener that aborts the caller when a hedge goes out: the hedge is not run, no timer is left', async () => {
    const clock = new ManualClock();
    const bus = createBus();
    const controller = new AbortController();
    bus.on('hedge.attempt', () => controller.abort(new Error('listener aborted')));
    const policy = hedge({ delay: 10, maxHedges: 3, safe: true, budget: false, bus, clock, policies: false });
    const a = attempts();
    const settled = policy.execute(a.fn, { signal: controller.signal }).catch((e: unknown) => e);
    await clock.advance(10);
    expect(((await settled) as Error).message).toBe('listener aborted');
    expect(a.started).toHaveLength(1);
    expect(clock.pending).toBe(0);
  });

  it('listeners that throw on every event never break a hedged call', async () => {
    const clock = new ManualClock();
    const bus = createBus({ onListenerError: () => {} });
    bus.on('*', () => {
      throw new Error('listener bug');
    });
    const policy = hedge({
      delay: 10,
      maxHedges: 2,
      safe: true,
      budget: { ratio: 0, minPerSecond: 0 },
      bus,
      clock,
      policies: false,
    });
    const a = attempts();
    const call = policy.execute(a.fn);
    await clock.advance(50);
    expect(a.started).toHaveLength(1); // refused by the budget, reported to a throwing listener
    a.started[0]?.resolve('ok');
    await expect(call).resolves.toBe('ok');
  });
});

describe('hedge: the budget under bursts (fast-check)', () => {
  it('hedges in any span of window - window/10 never exceed ratio x calls of the window before, plus the floor', async () => {
    const window = 10_000;
    const slice = window / 10;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ wait: fc.integer({ min: 0, max: 3_000 }), calls: fc.integer({ min: 0, max: 40 }) }), {
          minLength: 1,
          maxLength: 30,
        }),
        fc.constantFrom(0, 0.1, 0.5),
        fc.constantFrom(0, 1, 5),
        async (steps, ratio, minPerSecond) => {
          const clock = new ManualClock(1_000_000);
          const bus = createBus();
          const hedges: number[] = [];
          const calls: number[] = [];
          bus.on('hedge.attempt', (e) => hedges.push(e.time));
          const policy = hedge({
            delay: 5,
            maxHedges: 3,
            safe: true,
            budget: { ratio, minPerSecond, window },
            bus,
            clock,
            policies: false,
          });
          const release: (() => void)[] = [];
          const running: Promise<unknown>[] = [];
          for (const step of steps) {
            await clock.advance(step.wait);
            for (let i = 0; i < step.calls; i++) {
              calls.push(clock.now());
              running.push(policy.execute(() => new Promise<string>((resolve) => release.push(() => resolve('x')))));
            }
          }
          await clock.advance(100);
          for (const r of release) r();
          await Promise.all(running);
          const floor = (minPerSecond * window) / 1000;
          for (const t of hedges) {
            const spent = hedges.filter((x) => x > t - (window - slice) && x <= t).length;
            const seen = calls.filter((x) => x > t - window && x <= t).length;
            expect(spent).toBeLessThanOrEqual(ratio * seen + floor + 1e-9);
          }
          expect(policy.snapshot().hedges).toBe(hedges.length);
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe('timeout: hostile functions', () => {
  for (const strategy of ['cooperative', 'aggressive'] as const) {
    it(`${strategy}: a function that throws synchronously rejects with its error; no deadline is left`, async () => {
      const clock = new ManualClock();
      const policy = timeout(100, { strategy, clock, bus: createBus() });
      const boom = new Error('sync throw');
      await expect(
        policy.execute(() => {
          throw boom;
        }),
      ).rejects.toBe(boom);
      expect(clock.pending).toBe(0);
    });

    it(`${strategy}: a function that ignores its signal; the deadline aborts it; caller abort before, during, after`, async () => {
      const clock = new ManualClock();
      const policy = timeout(100, { strategy, clock, bus: createBus() });
      // before
      let runs = 0;
      const before = new Error('before');
      await expect(
        policy.execute(
          () => {
            runs++;
          },
          { signal: AbortSignal.abort(before) },
        ),
      ).rejects.toBe(before);
      expect(runs).toBe(0);
      // during: the caller's reason wins over the function's late result
      const controller = new AbortController();
      let finish!: () => void;
      const during = policy
        .execute(() => new Promise<string>((resolve) => (finish = () => resolve('late'))), {
          signal: controller.signal,
        })
        .catch((e: unknown) => e);
      const reason = new Error('during');
      controller.abort(reason);
      finish();
      expect(await during).toBe(reason);
      // after: changes nothing
      const after = new AbortController();
      await expect(policy.execute(() => 'ok', { signal: after.signal })).resolves.toBe('ok');
      after.abort(new Error('after'));
      // the deadline: a deaf function still ends in a TimeoutError once it settles
      let deafDone!: (e: unknown) => void;
      const deaf = policy
        .execute(() => new Promise<string>((_, reject) => (deafDone = reject)))
        .catch((e: unknown) => e);
      await clock.advance(100);
      deafDone(new Error('late failure'));
      expect(await deaf).toBeInstanceOf(TimeoutError);
      expect(clock.pending).toBe(0);
    });
  }

  it('pipeline(timeout, hedge): the deadline aborts every hedged attempt with the TimeoutError', async () => {
    const clock = new ManualClock();
    const bus = createBus();
    const a = attempts();
    const policy = pipeline(
      timeout(100, { clock, bus }),
      hedge({ delay: 30, maxHedges: 2, safe: true, budget: false, bus, clock, policies: false }),
    );
    const settled = policy.execute(a.fn).catch((e: unknown) => e);
    await clock.advance(100);
    expect(await settled).toBeInstanceOf(TimeoutError);
    expect(a.started).toHaveLength(3);
    expect(a.aborts).toBe(3);
    expect(clock.pending).toBe(0);
  });

  it('listeners that throw on the timeout event never break the call, nor later deadlines', async () => {
    const clock = new ManualClock();
    const bus = createBus({ onListenerError: () => {} });
    bus.on('timeout', () => {
      throw new Error('listener bug');
    });
    const policy = timeout(100, { clock, bus });
    const outcomes = [1, 2, 3].map(() =>
      policy
        .execute(
          ({ signal }) =>
            new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))),
        )
        .catch((e: unknown) => e),
    );
    await clock.advance(100);
    for (const o of outcomes) expect(await o).toBeInstanceOf(TimeoutError);
  });
});

describe('hedge: the process waits for the hedge a caller awaits', () => {
  it('a first attempt that holds nothing open (a promise-only queue or lock): the process stays up for the hedge', () => {
    // The hedge timer was unref'd: the process exited (code 13, "unsettled top-level await") before the hedge went.
    const script = fileURLToPath(new URL('./fixtures/hedge-unref.ts', import.meta.url));
    const child = spawnSync(process.execPath, ['--conditions=@holdfast/source', '--import', 'tsx', script], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(child.stderr).toBe('');
    expect(child.status).toBe(0);
    expect(child.stdout.trim()).toBe('hedge');
  }, 40_000);
});

describe('one caller signal shared by many calls (a shutdown signal)', () => {
  it('50 concurrent calls through timeout, hedge, fallback and pipeline: no MaxListenersExceededWarning', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    try {
      const shutdown = new AbortController();
      const bus = createBus();
      const policies = [
        timeout(1_000, { bus }),
        hedge({ delay: 1_000, safe: true, bus, policies: false }),
        fallback({ value: 'x', bus }),
        pipeline(timeout(1_000, { bus }), fallback({ value: 'x', bus })),
      ];
      for (const policy of policies) {
        let release!: () => void;
        const gate = new Promise<void>((resolve) => {
          release = resolve;
        });
        const calls = Array.from({ length: 50 }, () =>
          policy.execute(() => gate.then(() => 'ok'), { signal: shutdown.signal }),
        );
        release();
        expect(await Promise.all(calls)).toHaveLength(50);
      }
      await new Promise((resolve) => setImmediate(resolve));
      // Plain fetch and timers/promises take one signal for any number of calls without a warning.
      expect(warnings.filter((w) => w.startsWith('MaxListenersExceededWarning'))).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });
});

describe('pipeline: a policy of the user that throws instead of rejecting', () => {
  it('execute still returns a rejected promise, at any depth', async () => {
    const broken = {
      name: 'broken',
      execute(): Promise<never> {
        throw new Error('sync throw in execute');
      },
    };
    const bus = createBus();
    for (const p of [
      pipeline(broken),
      pipeline(broken, timeout(100, { bus })),
      pipeline(timeout(100, { bus }), broken),
    ]) {
      let call: Promise<unknown> | undefined;
      expect(() => {
        call = p.execute(() => 'x');
      }).not.toThrow();
      await expect(call).rejects.toThrow('sync throw in execute');
    }
  });
});

describe('timeout: a bus of the user own that throws', () => {
  it('the deadline still times the call out, and every later deadline of the policy still fires', async () => {
    const inner = createBus();
    const broken: Bus = {
      on: inner.on.bind(inner) as Bus['on'],
      once: inner.once.bind(inner) as Bus['once'],
      wants: () => true,
      emit: () => {
        throw new Error('my bus adapter broke');
      },
    };
    const warnings: string[] = [];
    const onWarning = (w: Error & { code?: string }) => warnings.push(String(w.code));
    process.on('warning', onWarning);
    try {
      const clock = new ManualClock();
      const policy = timeout(100, { bus: broken, clock });
      const hang = (signal: AbortSignal) =>
        new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
      const first = [1, 2].map(() => policy.execute(({ signal }) => hang(signal)).catch((e: unknown) => e));
      // Was: the throw left the timer callback (an uncaught exception on the real clock), and
      // the queue never re-armed: these calls, and every later one, hung past their deadline.
      await clock.advance(100);
      const later = policy.execute(({ signal }) => hang(signal)).catch((e: unknown) => e);
      await clock.advance(100);
      for (const outcome of [...first, later]) expect(await outcome).toBeInstanceOf(TimeoutError);
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings.filter((c) => c === 'HOLDFAST_BUS_ERROR')).toHaveLength(1);
    } finally {
      process.off('warning', onWarning);
    }
  });
});
