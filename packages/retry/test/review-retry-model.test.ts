/**
 * Outside review: a model-based attack on retry() and retryBudget().
 *
 * Every call gets its own policy (name `c<i>`) sharing one budget, one bus and one ManualClock,
 * so each event's `source` names its call. Generated: the policy's options, and a sequence of
 * calls (each a script of attempt outcomes: ok, retryable, fatal, nonRetryable-marked, hanging
 * until aborted), clock advances and aborts. Checked against the README after everything settles.
 */
import { type CallContext, createBus, HoldfastConfigError, ManualClock } from '@holdfast/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { nonRetryable, RetryBudgetExhaustedError, RetryExhaustedError, retry, retryBudget } from '../src/index.js';

type Outcome = 'ok' | 'retryable' | 'fatal' | 'marked' | 'hang';
type Op = { kind: 'call'; script: Outcome[] } | { kind: 'advance'; ms: number } | { kind: 'abort'; target: number };

const START = Date.UTC(2026, 0, 1);

function lcg(seed: number) {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Lets promise chains (and the one-off dynamic import of p-retry) run: no clock time passes. */
const flush = async () => {
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
};

const configArb = fc.record({
  maxAttempts: fc.integer({ min: 1, max: 5 }),
  type: fc.constantFrom('exponential' as const, 'linear' as const, 'constant' as const),
  initialDelay: fc.constantFrom(0, 1, 50, 100, 333),
  maxDelayExtra: fc.constantFrom(0, 100, 1000, 10_000),
  factor: fc.constantFrom(1, 1.5, 2, 3),
  jitter: fc.constantFrom('full' as const, 'equal' as const, 'decorrelated' as const, 'none' as const),
  ratio: fc.constantFrom(0, 0.1, 0.2, 0.5, 1),
  minPerSecond: fc.constantFrom(0, 0.5, 1, 2, 2.5, 5),
  ttl: fc.constantFrom(1000, 2000),
  seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
});

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('call' as const),
      script: fc.array(fc.constantFrom<Outcome>('ok', 'retryable', 'retryable', 'fatal', 'marked', 'hang'), {
        minLength: 1,
        maxLength: 6,
      }),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 700 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('abort' as const), target: fc.nat(40) }) },
);

interface CallRec {
  name: string;
  script: Outcome[];
  attempts: number[];
  errors: Error[];
  start: number;
  controller: AbortController;
  reason: Error;
  abortedWhilePending: boolean;
  settled: boolean;
  result?: { ok: true; value: unknown } | { ok: false; error: unknown };
}

describe('review: retry() model', () => {
  it('holds its per-call, budget, backoff, abort, event and timer contracts over generated schedules', async () => {
    const reasonsSeen = new Set<unknown>();
    await fc.assert(
      fc.asyncProperty(configArb, fc.array(opArb, { minLength: 1, maxLength: 30 }), async (cfg, ops) => {
        const clock = new ManualClock(START);
        const bus = createBus();
        const events: Record<string, unknown>[] = [];
        bus.on('*', (e) => events.push(e as unknown as Record<string, unknown>));
        const budget = retryBudget({
          ratio: cfg.ratio,
          minPerSecond: cfg.minPerSecond,
          ttl: cfg.ttl,
          clock,
          policies: false,
        });
        const maxDelay = cfg.initialDelay + cfg.maxDelayExtra;
        const factor = cfg.type === 'exponential' ? cfg.factor : cfg.factor;
        const random = lcg(cfg.seed);
        const calls: CallRec[] = [];
        const promises: Promise<void>[] = [];

        for (const op of ops) {
          if (op.kind === 'advance') {
            await clock.advance(op.ms);
          } else if (op.kind === 'abort') {
            const c = calls[op.target % Math.max(1, calls.length)];
            if (c === undefined || c.controller.signal.aborted) continue;
            await flush();
            const wasPending = !c.settled;
            c.controller.abort(c.reason);
            await flush();
            if (wasPending) {
              c.abortedWhilePending = true;
              // "Aborting stops a wait at once": every attempt here honours its signal.
              expect(c.settled, `${c.name} still pending after abort`).toBe(true);
            }
          } else {
            const i = calls.length;
            const rec: CallRec = {
              name: `c${i}`,
              script: op.script,
              attempts: [],
              errors: [],
              start: clock.now(),
              controller: new AbortController(),
              reason: new Error(`abort c${i}`),
              abortedWhilePending: false,
              settled: false,
            };
            calls.push(rec);
            const policy = retry({
              name: rec.name,
              clock,
              bus,
              budget,
              maxAttempts: cfg.maxAttempts,
              backoff: { type: cfg.type, initialDelay: cfg.initialDelay, maxDelay, factor },
              jitter: cfg.jitter,
              random,
            });
            const fn = (ctx: CallContext): unknown => {
              rec.attempts.push(ctx.attempt);
              const outcome = rec.script[ctx.attempt - 1] ?? 'retryable';
              if (outcome === 'ok') return 'ok';
              if (outcome === 'hang') {
                return new Promise((_, reject) => {
                  if (ctx.signal.aborted) reject(ctx.signal.reason);
                  ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true });
                });
              }
              const e = new Error(`${rec.name} attempt ${ctx.attempt} ${outcome}`);
              rec.errors.push(e);
              if (outcome === 'fatal') throw Object.assign(e, { status: 400 });
              if (outcome === 'marked') throw nonRetryable(e);
              throw e;
            };
            promises.push(
              policy.execute(fn, { signal: rec.controller.signal }).then(
                (value) => {
                  rec.settled = true;
                  rec.result = { ok: true, value };
                },
                (error) => {
                  rec.settled = true;
                  rec.result = { ok: false, error };
                },
              ),
            );
            await flush();
          }
        }
        // Let everything finish: hanging attempts are aborted, every wait runs out.
        await clock.advance(0);
        for (const c of calls) {
          if (!c.settled && !c.controller.signal.aborted) {
            // Only calls stuck in a hanging attempt may be pending with no timer left: run timers first.
            await clock.runAll();
            if (!c.settled) {
              c.controller.abort(c.reason);
              c.abortedWhilePending = true;
              await flush();
            }
          }
        }
        await clock.runAll();
        await Promise.all(promises);
        // No timer left behind.
        expect(clock.pending).toBe(0);

        const law = { initialDelay: cfg.initialDelay, maxDelay, factor, type: cfg.type };
        const base = (n: number) => {
          if (law.initialDelay === 0) return 0;
          if (law.type === 'constant') return law.initialDelay;
          if (law.type === 'linear') return Math.min(maxDelay, law.initialDelay * (1 + factor * (n - 1)));
          return Math.min(maxDelay, law.initialDelay * factor ** (n - 1));
        };

        for (const c of calls) {
          const mine = events.filter((e) => e.source === c.name);
          const retriesEv = mine.filter((e) => e.type === 'retry.attempt');
          const giveUps = mine.filter((e) => e.type === 'retry.giveUp');
          const refusals = mine.filter((e) => e.type === 'retry.budgetExhausted');
          const k = c.attempts.length;
          // Attempts are 1..k, never more than maxAttempts.
          expect(c.attempts).toEqual(Array.from({ length: k }, (_, j) => j + 1));
          expect(k).toBeLessThanOrEqual(cfg.maxAttempts);
          expect(k).toBeGreaterThanOrEqual(1);
          // A non-retryable failure is terminal.
          for (let j = 0; j < k - 1; j++) {
            expect(['fatal', 'marked', 'ok']).not.toContain(c.script[j] ?? 'retryable');
          }
          // retry.attempt: 2..m with m = k, or k + 1 when the abort came during a wait.
          const evAttempts = retriesEv.map((e) => e.attempt);
          const m = evAttempts.length + 1;
          expect(evAttempts).toEqual(Array.from({ length: m - 1 }, (_, j) => j + 2));
          if (c.abortedWhilePending) expect([k, k + 1]).toContain(m);
          else expect(m).toBe(k);
          // Backoff bounds for the jitter mode.
          let previous: number = cfg.initialDelay;
          for (const e of retriesEv) {
            const d = e.delay as number;
            const n = (e.attempt as number) - 1;
            const b = base(n);
            expect(d).toBeGreaterThanOrEqual(0);
            expect(d).toBeLessThanOrEqual(maxDelay);
            if (cfg.jitter === 'none') expect(d).toBe(b);
            if (cfg.jitter === 'full') expect(d).toBeLessThanOrEqual(b);
            if (cfg.jitter === 'equal') {
              expect(d).toBeGreaterThanOrEqual(b / 2);
              expect(d).toBeLessThanOrEqual(b);
            }
            if (cfg.jitter === 'decorrelated') {
              expect(d).toBeGreaterThanOrEqual(cfg.initialDelay);
              expect(d).toBeLessThanOrEqual(Math.min(maxDelay, Math.max(cfg.initialDelay, 3 * previous)) + 1e-9);
            }
            previous = d;
          }
          // Outcome and give-up.
          const r = c.result;
          expect(r).toBeDefined();
          if (r === undefined) continue;
          if (r.ok) {
            expect(r.value).toBe('ok');
            expect(c.script[k - 1] ?? 'retryable').toBe('ok');
            expect(giveUps).toHaveLength(0);
            expect(c.abortedWhilePending).toBe(false);
            continue;
          }
          expect(giveUps).toHaveLength(1);
          const g = giveUps[0] as Record<string, unknown>;
          reasonsSeen.add(g.reason);
          const last = c.script[k - 1] ?? 'retryable';
          if (c.abortedWhilePending && g.reason === 'aborted') {
            expect(r.error).toBe(c.reason);
            continue;
          }
          expect(c.abortedWhilePending, `${c.name}: aborted while pending but gave up ${g.reason}`).toBe(false);
          expect(g.attempts).toBe(k);
          if (last === 'fatal' || last === 'marked') {
            expect(g.reason).toBe('notRetryable');
            expect(r.error).toBe(c.errors.at(-1));
          } else if (g.reason === 'maxAttempts') {
            expect(k).toBe(cfg.maxAttempts);
            expect(r.error).toBeInstanceOf(RetryExhaustedError);
            expect((r.error as RetryExhaustedError).cause).toBe(c.errors.at(-1));
            expect((r.error as RetryExhaustedError).attempts).toBe(k);
          } else {
            expect(g.reason).toBe('budget');
            expect(r.error).toBeInstanceOf(RetryBudgetExhaustedError);
            expect((r.error as RetryBudgetExhaustedError).code).toBe('E_BUDGET_EXHAUSTED');
            expect((r.error as RetryBudgetExhaustedError).cause).toBe(c.errors.at(-1));
            expect(refusals.map((e) => e.attempt)).toEqual([k + 1]);
          }
        }

        // Budget: at each grant, the retries in the last (ttl - one slice) are within
        // max(ratio × calls of the last ttl, floor(minPerSecond × ttl / 1000)).
        const grants = events.filter((e) => e.type === 'retry.attempt').map((e) => e.time as number);
        const starts = calls.map((c) => c.start);
        const floor = Math.floor((cfg.minPerSecond * cfg.ttl) / 1000 + 1e-9);
        const span = cfg.ttl - cfg.ttl / 10;
        for (const t of grants) {
          const retries = grants.filter((x) => x > t - span && x <= t).length;
          const callsIn = starts.filter((x) => x >= t - cfg.ttl && x <= t).length;
          expect(retries).toBeLessThanOrEqual(Math.max(cfg.ratio * callsIn + 1e-6, floor));
        }
      }),
      { numRuns: 300 },
    );
    // The generator reaches every way of giving up it models.
    expect([...reasonsSeen].sort()).toEqual(['aborted', 'budget', 'maxAttempts', 'notRetryable']);
  }, 30_000);
});

describe('review: retryBudget() window', () => {
  it('a slice leaves whole: 2 retries at 950 ms, none at 1,899 ms, 2 more at 1,900 ms (the README example)', async () => {
    // README: the window is kept in ten slices and a slice leaves whole, so what was counted
    // leaves between 0.9 x ttl and ttl after it was: over a whole ttl, up to twice the bound.
    // (The review first took "in any ttl window" for a promise over every span of ttl.)
    const clock = new ManualClock(START); // START is a whole number of slices (100 ms)
    const budget = retryBudget({ ratio: 0, minPerSecond: 2, ttl: 1_000, clock, policies: false });
    const granted: number[] = [];
    const ask = () => {
      if (budget.tryWithdraw()) granted.push(clock.now() - START);
    };
    await clock.advance(950);
    budget.deposit();
    ask();
    ask();
    await clock.advance(949); // t = 1899: the retries of t = 950 are still in the window
    budget.deposit();
    ask();
    await clock.advance(1); // t = 1900: their slice has left
    ask();
    ask();
    ask();
    expect(granted).toEqual([950, 950, 1900, 1900]);
  });

  it('the same through retry(): at most twice a floor of 2 a second inside one second, the documented worst case', async () => {
    const clock = new ManualClock(START);
    const bus = createBus();
    const times: number[] = [];
    bus.on('retry.attempt', (e) => times.push(e.time - START));
    const budget = retryBudget({ ratio: 0, minPerSecond: 2, ttl: 1_000, clock, policies: false });
    const p = retry({ clock, bus, budget, maxAttempts: 2, jitter: 'none', backoff: { initialDelay: 10 } });
    const fail = () => {
      let n = 0;
      return () => {
        n++;
        if (n === 1) throw new Error('down');
        return 'ok';
      };
    };
    await clock.advance(950);
    const first = [p.execute(fail()), p.execute(fail())];
    await clock.advance(950);
    const second = [p.execute(fail()), p.execute(fail())];
    await clock.runAll();
    await Promise.allSettled([...first, ...second]);
    const inOneSecond = times.filter((t) => t >= 950 && t < 1950).length;
    expect(inOneSecond).toBe(4);
  });

  it('holds the formula over spans of ttl less one slice (what the slices can promise)', async () => {
    const clock = new ManualClock(START);
    const budget = retryBudget({ ratio: 0, minPerSecond: 2, ttl: 1_000, clock, policies: false });
    let granted = 0;
    for (let t = 0; t < 900; t += 10) {
      budget.deposit();
      if (budget.tryWithdraw()) granted++;
      await clock.advance(10);
    }
    expect(granted).toBe(2);
  });
});

describe('review: abort, non-retryable, timers', () => {
  it('an abort during a wait rejects with the reason at once, no further attempt, no timer left', async () => {
    const clock = new ManualClock(START);
    const bus = createBus();
    const giveUps: unknown[] = [];
    bus.on('retry.giveUp', (e) => giveUps.push(e.reason));
    const p = retry({ clock, bus, budget: false, maxAttempts: 5, jitter: 'none', backoff: { initialDelay: 1000 } });
    const ac = new AbortController();
    let attempts = 0;
    const call = p.execute(
      () => {
        attempts++;
        throw new Error('x');
      },
      { signal: ac.signal },
    );
    const settled = call.then(
      () => 'resolved',
      (e) => e,
    );
    await clock.advance(10);
    const reason = new Error('stop');
    ac.abort(reason);
    await flush();
    expect(await Promise.race([settled, Promise.resolve('pending')])).toBe(reason);
    expect(attempts).toBe(1);
    expect(giveUps).toEqual(['aborted']);
    expect(clock.pending).toBe(0);
  });

  it('a custom retryOn.error that says yes does not retry a nonRetryable() or AbortError', async () => {
    const clock = new ManualClock(START);
    for (const make of [
      () => nonRetryable(new Error('no')),
      () => Object.assign(new Error('ab'), { name: 'AbortError' }),
    ]) {
      const p = retry({ clock, budget: false, retryOn: { error: () => true }, jitter: 'none' });
      const e = make();
      let n = 0;
      await expect(
        p.execute(() => {
          n++;
          throw e;
        }),
      ).rejects.toBe(e);
      expect(n).toBe(1);
    }
  });
});

describe('review: invalid options', () => {
  const bad: [string, Record<string, unknown>, string][] = [
    ['maxAttempts NaN', { maxAttempts: Number.NaN }, 'maxAttempts'],
    ['maxAttempts 0', { maxAttempts: 0 }, 'maxAttempts'],
    ['maxAttempts Infinity', { maxAttempts: Number.POSITIVE_INFINITY }, 'maxAttempts'],
    ['maxAttempts 2.5', { maxAttempts: 2.5 }, 'maxAttempts'],
    ['maxAttempts string', { maxAttempts: '3' }, 'maxAttempts'],
    ['initialDelay -1', { backoff: { initialDelay: -1 } }, 'backoff.initialDelay'],
    ['initialDelay NaN', { backoff: { initialDelay: Number.NaN } }, 'backoff.initialDelay'],
    ['initialDelay Infinity', { backoff: { initialDelay: Number.POSITIVE_INFINITY } }, 'backoff.initialDelay'],
    ['maxDelay < initialDelay', { backoff: { initialDelay: 100, maxDelay: 10 } }, 'backoff.maxDelay'],
    ['maxDelay NaN', { backoff: { maxDelay: Number.NaN } }, 'backoff.maxDelay'],
    ['factor 0.5 exponential', { backoff: { factor: 0.5 } }, 'backoff.factor'],
    ['factor NaN', { backoff: { factor: Number.NaN } }, 'backoff.factor'],
    ['factor -1 linear', { backoff: { type: 'linear', factor: -1 } }, 'backoff.factor'],
    ['factor Infinity', { backoff: { factor: Number.POSITIVE_INFINITY } }, 'backoff.factor'],
    ['jitter bogus', { jitter: 'half' }, 'jitter'],
    ['maxElapsed 0', { maxElapsed: 0 }, 'maxElapsed'],
    ['maxElapsed -5', { maxElapsed: -5 }, 'maxElapsed'],
    ['maxElapsed NaN', { maxElapsed: Number.NaN }, 'maxElapsed'],
    ['budget object', { budget: {} }, 'budget'],
    ['budget true', { budget: true }, 'budget'],
    ['random number', { random: 0.5 }, 'random'],
    ['retryAfter string', { retryAfter: 'yes' }, 'retryAfter'],
    ['unknown key', { retries: 3 }, 'retries'],
  ];
  it.each(bad)('retry(): %s throws HoldfastConfigError naming it', (_, options, path) => {
    let caught: unknown;
    try {
      retry(options as never);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(HoldfastConfigError);
    expect((caught as Error).message).toContain(path);
  });

  const badBudget: [string, Record<string, unknown>, string][] = [
    ['ratio NaN', { ratio: Number.NaN }, 'ratio'],
    ['ratio -0.1', { ratio: -0.1 }, 'ratio'],
    ['ratio Infinity', { ratio: Number.POSITIVE_INFINITY }, 'ratio'],
    ['ratio 11', { ratio: 11 }, 'ratio'],
    ['minPerSecond -1', { minPerSecond: -1 }, 'minPerSecond'],
    ['minPerSecond Infinity', { minPerSecond: Number.POSITIVE_INFINITY }, 'minPerSecond'],
    ['minPerSecond NaN', { minPerSecond: Number.NaN }, 'minPerSecond'],
    ['ttl 999', { ttl: 999 }, 'ttl'],
    ['ttl 60001', { ttl: 60_001 }, 'ttl'],
    ['ttl NaN', { ttl: Number.NaN }, 'ttl'],
    ['ttl string', { ttl: '1000' }, 'ttl'],
  ];
  it.each(badBudget)('retryBudget(): %s throws HoldfastConfigError naming it', (_, options, path) => {
    let caught: unknown;
    try {
      retryBudget({ ...options, policies: false } as never);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(HoldfastConfigError);
    expect((caught as Error).message).toContain(path);
  });
});
