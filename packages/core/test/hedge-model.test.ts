import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Clock, createBus, hedge, ManualClock } from '../src/index.js';

/**
 * A model-based test of hedge() (fixed delay, no budget): calls started safe or not, attempts
 * settled one by one (ok or failing), callers aborting, time passing, dispose() in the middle,
 * a bus listener that throws; checked against a model of when each attempt goes out, which
 * attempt wins, and which losers are aborted (with `onFailure: false`, a failed attempt leaves
 * the next delay hedge due while another attempt is still out). Then the budget on a clock stepped back.
 */

interface ModelCall {
  safe: boolean;
  sent: number[]; // launch times
  state: ('running' | 'ok' | 'failed' | 'aborted')[];
  nextDue: number | undefined;
  result: 'pending' | 'value' | 'failed' | 'aborted';
  callerAborted: boolean;
}

interface RealCall {
  attempts: { settle: (ok: boolean) => void; signal: AbortSignal; launchedAt: number }[];
  result: 'pending' | 'value' | 'failed' | 'aborted';
  controller: AbortController;
}

type Op =
  | { kind: 'start'; safe: boolean }
  | { kind: 'settle'; call: number; attempt: number; ok: boolean }
  | { kind: 'abort'; call: number }
  | { kind: 'wait'; ms: number }
  | { kind: 'dispose' };

const op: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('start' as const), safe: fc.boolean() }), weight: 3 },
  {
    arbitrary: fc.record({ kind: fc.constant('settle' as const), call: fc.nat(), attempt: fc.nat(), ok: fc.boolean() }),
    weight: 4,
  },
  { arbitrary: fc.record({ kind: fc.constant('abort' as const), call: fc.nat() }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 120 }) }), weight: 3 },
  { arbitrary: fc.constant({ kind: 'dispose' as const }), weight: 1 },
);

describe('hedge (model)', () => {
  it('sends each attempt when the model says, the first success wins, losers are aborted, nothing is left behind', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 50 }),
        fc.integer({ min: 1, max: 3 }),
        fc.boolean(),
        fc.array(op, { maxLength: 50 }),
        async (delay, maxHedges, onFailure, ops) => {
          const clock = new ManualClock(1_000);
          const bus = createBus();
          bus.on('*', () => {
            throw new Error('a listener that throws');
          });
          const h = hedge({ delay, maxHedges, onFailure, budget: false, clock, bus, policies: false });
          const model: ModelCall[] = [];
          const real: RealCall[] = [];
          let disposed = false;

          /** The model's launch of the next attempt of call `m` at `now`. */
          const launch = (m: ModelCall, now: number) => {
            m.sent.push(now);
            m.state.push('running');
            m.nextDue = m.safe && m.sent.length <= maxHedges ? now + delay : undefined;
          };
          const finishIfIdle = (m: ModelCall) => {
            if (m.result === 'pending' && !m.state.includes('running'))
              m.result = m.callerAborted ? 'aborted' : 'failed';
          };
          const compare = () => {
            for (let i = 0; i < model.length; i++) {
              const m = model[i] as ModelCall;
              const r = real[i] as RealCall;
              expect(
                r.attempts.map((a) => a.launchedAt),
                `call ${i} launches`,
              ).toEqual(m.sent);
              expect(r.result, `call ${i} result`).toBe(m.result);
              const aborted = r.attempts.map((a) => a.signal.aborted);
              expect(aborted, `call ${i} attempts aborted`).toEqual(m.state.map((s) => s === 'aborted'));
            }
          };

          for (const o of ops) {
            if (o.kind === 'start') {
              const m: ModelCall = {
                safe: o.safe,
                sent: [],
                state: [],
                nextDue: undefined,
                result: 'pending',
                callerAborted: false,
              };
              const r: RealCall = { attempts: [], result: 'pending', controller: new AbortController() };
              model.push(m);
              real.push(r);
              if (disposed) m.result = 'failed';
              else launch(m, clock.now());
              h.execute(
                ({ signal }) =>
                  new Promise<string>((resolve, reject) => {
                    const a = {
                      settle: (ok: boolean) => (ok ? resolve('v') : reject(new Error('attempt failed'))),
                      signal,
                      launchedAt: clock.now(),
                    };
                    r.attempts.push(a);
                    signal.addEventListener('abort', () => reject(signal.reason));
                  }),
                { signal: r.controller.signal, safe: o.safe },
              ).then(
                () => {
                  r.result = 'value';
                },
                (e: Error) => {
                  r.result = e.message === 'caller left' ? 'aborted' : 'failed';
                },
              );
            } else if (o.kind === 'wait') {
              const target = clock.now() + o.ms;
              // Timers fire in order of due time; each launch arms the next.
              for (;;) {
                const due = model.filter(
                  (m) => m.result === 'pending' && m.nextDue !== undefined && m.nextDue <= target,
                );
                if (due.length === 0) break;
                const m = due.reduce((a, b) => ((b.nextDue as number) < (a.nextDue as number) ? b : a));
                if (disposed) m.nextDue = undefined;
                else launch(m, m.nextDue as number);
              }
              await clock.advance(o.ms);
            } else if (o.kind === 'dispose') {
              disposed = true;
              h.dispose();
            } else if (o.kind === 'abort') {
              if (model.length === 0) continue;
              const i = o.call % model.length;
              const m = model[i] as ModelCall;
              if (m.result === 'pending') {
                m.callerAborted = true;
                m.nextDue = undefined;
                m.state = m.state.map((s) => (s === 'running' ? 'aborted' : s));
                finishIfIdle(m);
              }
              (real[i] as RealCall).controller.abort(new Error('caller left'));
            } else {
              const live = model.flatMap((m, i) =>
                m.state.flatMap((s, j) => (s === 'running' ? [[i, j] as const] : [])),
              );
              if (live.length === 0) continue;
              const [i, j] = live[(o.call + o.attempt) % live.length] as readonly [number, number];
              const m = model[i] as ModelCall;
              m.state[j] = o.ok ? 'ok' : 'failed';
              if (o.ok) {
                m.result = 'value';
                m.nextDue = undefined;
                m.state = m.state.map((s) => (s === 'running' ? 'aborted' : s));
              } else {
                // onFailure: the next attempt goes now, its delay after it. Off: only the delay
                // hedges, so the next hedge stays due while another attempt is still out.
                if (onFailure) m.nextDue = undefined;
                if (onFailure && m.safe && m.sent.length <= maxHedges && !disposed) launch(m, clock.now());
                finishIfIdle(m);
              }
              (real[i] as RealCall).attempts[j]?.settle(o.ok);
            }
            await clock.advance(0);
            compare();
          }
          // Everything settles: every attempt still out answers, then the timers run out.
          for (const r of real) for (const a of r.attempts) a.settle(true);
          await clock.runAll();
          expect(
            real.every((r) => r.result !== 'pending'),
            'a call never settled',
          ).toBe(true);
          expect(clock.pending, 'timers left behind').toBe(0);
        },
      ),
      {
        numRuns: 1000,
        // Rare among random runs: onFailure off, a hedge failing while the first attempt is still
        // out, then time reaching the next hedge (which must go).
        examples: [
          [
            2,
            2,
            false,
            [
              { kind: 'start', safe: true },
              { kind: 'wait', ms: 2 },
              { kind: 'settle', call: 0, attempt: 1, ok: false },
              { kind: 'wait', ms: 2 },
            ],
          ],
        ],
      },
    );
  });

  it('a hedge budget spent before a clock without monotonic() stepped back an hour hedges again a window later', async () => {
    const timers = new ManualClock(50_000_000);
    let offset = 0;
    const clock: Clock = {
      now: () => timers.now() + offset,
      setTimeout: (cb, ms) => timers.setTimeout(cb, ms),
      clearTimeout: (handle) => timers.clearTimeout(handle),
    };
    const h = hedge({
      delay: 10,
      safe: true,
      budget: { ratio: 0, minPerSecond: 10, window: 100 }, // one hedge per 100 ms
      clock,
      bus: createBus(),
      policies: false,
    });
    // The first attempt fails: the hedge goes at once, if the budget allows.
    const call = () =>
      h.execute(({ attempt }) => (attempt === 1 ? Promise.reject(new Error('first')) : 'hedged')).catch(() => 'failed');
    expect(await call()).toBe('hedged');
    expect(await call()).toBe('failed'); // spent
    offset -= 3_600_000;
    // It cannot tell how long ago the step came: what it spent counts on from the first look.
    expect(await call()).toBe('failed');
    await timers.advance(250);
    expect(await call(), 'a hedge 2.5 windows after it saw the step').toBe('hedged');
    offset -= 50_000_000; // below zero on the line
    expect(await call()).toBe('failed');
    await timers.advance(250);
    expect(await call(), 'a hedge on a line below zero').toBe('hedged');
    expect(h.snapshot().hedges).toBe(3);
  });
});
