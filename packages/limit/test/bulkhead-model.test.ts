import { getEventListeners } from 'node:events';
import { createBus, fallback, ManualClock, type Policy, pipeline } from '@holdfast/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Bulkhead, bulkhead } from '../src/index.js';

// CPU-bound, bounded by its counts (never by time): room for a machine at load 20 on two cores.
const loaded = { timeout: 60_000 };

/**
 * A model-based test of the bulkhead (fc.commands): random starts (with a caller's signal or
 * none), finishes (one or several in the same tick), aborts at every point, queue timeouts on a
 * ManualClock and dispose() in the middle, against a FIFO queue and a count a few lines long.
 * A bus listener that throws watches every run.
 */

type Status = 'queued' | 'running' | 'ok' | 'failed' | 'aborted' | 'full' | 'timeout' | 'disposed';

interface Config {
  readonly max: number;
  readonly maxQueue: number;
  readonly queueTimeout: number;
}

interface Model {
  readonly c: Config;
  now: number;
  disposed: boolean;
  running: number[];
  queue: { id: number; due: number }[];
  status: Map<number, Status>;
  aborted: Set<number>;
  next: number;
}

interface Call {
  started: boolean;
  settled: Status | undefined;
  controller: AbortController | undefined;
  resolve: (v: string) => void;
  reject: (e: Error) => void;
}

interface Real {
  readonly bh: Bulkhead;
  /** The bulkhead inside a pipeline: it is handed the outer policy's scope, not a signal. */
  readonly piped: Policy;
  readonly clock: ManualClock;
  readonly calls: Map<number, Call>;
  readonly signals: AbortSignal[];
}

const settle = (r: Real) => r.clock.advance(0);

/** The status the real bulkhead shows for each call, and its counts, must be the model's. */
function compare(m: Model, r: Real): void {
  for (const [id, expected] of m.status) {
    const call = r.calls.get(id) as Call;
    const seen = call.settled ?? (call.started ? 'running' : 'queued');
    expect(seen, `call ${id}`).toBe(expected);
    // Settled as the model says: it cannot change any more, so it is checked no further.
    if (call.settled !== undefined) {
      m.status.delete(id);
      r.calls.delete(id);
    }
  }
  expect(r.bh.running, 'running').toBe(m.running.length);
  expect(r.bh.queued, 'queued').toBe(m.queue.length);
  expect(r.bh.running).toBeLessThanOrEqual(m.c.max);
  expect(r.bh.queued).toBeLessThanOrEqual(m.c.maxQueue);
}

/** The model's slot handover: a finished call's slot goes to the head of the queue. */
function handOver(m: Model): void {
  const first = m.queue.shift();
  if (first !== undefined) {
    m.running.push(first.id);
    m.status.set(first.id, 'running');
  }
}

class Start implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly withSignal: boolean,
    readonly piped = false,
  ) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const id = m.next++;
    // Model
    if (m.disposed) m.status.set(id, 'disposed');
    else if (m.running.length < m.c.max) {
      m.running.push(id);
      m.status.set(id, 'running');
    } else if (m.queue.length >= m.c.maxQueue) m.status.set(id, 'full');
    else {
      m.queue.push({ id, due: m.now + m.c.queueTimeout });
      m.status.set(id, 'queued');
    }
    // Real
    const controller = this.withSignal ? new AbortController() : undefined;
    if (controller) r.signals.push(controller.signal);
    const call = { started: false, settled: undefined, controller } as unknown as Call;
    r.calls.set(id, call);
    (this.piped ? r.piped : r.bh)
      .execute(
        () =>
          new Promise<string>((resolve, reject) => {
            call.started = true;
            call.resolve = resolve;
            call.reject = reject;
          }),
        controller ? { signal: controller.signal } : undefined,
      )
      .then(
        () => {
          call.settled = 'ok';
        },
        (e: { code?: string; reason?: string; message?: string }) => {
          call.settled =
            e.code === 'E_DISPOSED'
              ? 'disposed'
              : e.code === 'E_BULKHEAD_FULL'
                ? e.reason === 'queueTimeout'
                  ? 'timeout'
                  : 'full'
                : e.message === 'caller left'
                  ? 'aborted'
                  : e.message === 'boom'
                    ? 'failed'
                    : (`unexpected ${String(e)}` as Status);
        },
      );
    await settle(r);
    compare(m, r);
  }
  toString = () => `start(${this.withSignal ? 'signal' : ''}${this.piped ? ', piped' : ''})`;
}

/** Finishes `picks.length` running calls in the same tick, before any promise reaction runs. */
class Finish implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly picks: number[],
    readonly ok: boolean,
  ) {}
  check = (m: Readonly<Model>) => m.running.length > 0;
  async run(m: Model, r: Real): Promise<void> {
    const done: number[] = [];
    // Only calls whose function runs now: one admitted in this tick has not been called yet.
    const before = [...m.running];
    for (const pick of this.picks) {
      if (before.length === 0) break;
      const [id] = before.splice(pick % before.length, 1) as [number];
      m.running.splice(m.running.indexOf(id), 1);
      m.status.set(id, m.aborted.has(id) ? 'aborted' : this.ok ? 'ok' : 'failed');
      handOver(m);
      done.push(id);
    }
    for (const id of done) {
      const call = r.calls.get(id) as Call;
      if (this.ok) call.resolve('v');
      else call.reject(new Error('boom'));
    }
    await settle(r);
    compare(m, r);
  }
  toString = () => `finish(${this.picks}, ${this.ok})`;
}

class Abort implements fc.AsyncCommand<Model, Real> {
  constructor(readonly pick: number) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const live = [...r.calls.entries()].filter(([id, c]) => c.controller && !m.aborted.has(id));
    const picked = live[this.pick % Math.max(1, live.length)];
    if (picked === undefined) return;
    const [id, call] = picked;
    m.aborted.add(id);
    const at = m.queue.findIndex((q) => q.id === id);
    if (at !== -1) {
      m.queue.splice(at, 1);
      m.status.set(id, 'aborted');
    }
    call.controller?.abort(new Error('caller left'));
    await settle(r);
    compare(m, r);
  }
  toString = () => `abort(${this.pick})`;
}

class Advance implements fc.AsyncCommand<Model, Real> {
  constructor(readonly ms: number) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    m.now += this.ms;
    for (const q of m.queue.filter((q) => q.due <= m.now)) m.status.set(q.id, 'timeout');
    m.queue = m.queue.filter((q) => q.due > m.now);
    await r.clock.advance(this.ms);
    compare(m, r);
  }
  toString = () => `advance(${this.ms})`;
}

class Dispose implements fc.AsyncCommand<Model, Real> {
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    m.disposed = true;
    for (const q of m.queue) m.status.set(q.id, 'disposed');
    m.queue = [];
    r.bh.dispose();
    await settle(r);
    compare(m, r);
  }
  toString = () => 'dispose()';
}

function command(disposeWeight: number): fc.Arbitrary<fc.AsyncCommand<Model, Real>> {
  return fc.oneof(
    fc.boolean().map((s) => new Start(s)),
    fc.tuple(fc.boolean(), fc.boolean()).map(([s, p]) => new Start(s, p)),
    fc.tuple(fc.array(fc.nat(), { minLength: 1, maxLength: 3 }), fc.boolean()).map(([p, ok]) => new Finish(p, ok)),
    fc.nat().map((p) => new Abort(p)),
    fc.integer({ min: 0, max: 60 }).map((ms) => new Advance(ms)),
    fc.integer({ min: 0, max: disposeWeight }).map((n) => (n === 0 ? new Dispose() : new Advance(0))),
  );
}

async function runModel(c: Config, cmds: Iterable<fc.AsyncCommand<Model, Real>>): Promise<void> {
  const clock = new ManualClock(0);
  const bus = createBus();
  bus.on('*', () => {
    throw new Error('a listener that throws');
  });
  const bh = bulkhead({
    maxConcurrent: c.max,
    maxQueue: c.maxQueue,
    queueTimeout: c.queueTimeout,
    clock,
    bus,
    policies: false,
  });
  const model: Model = {
    c,
    now: 0,
    disposed: false,
    running: [],
    queue: [],
    status: new Map(),
    aborted: new Set(),
    next: 0,
  };
  // A fallback that serves nothing of its own (it passes every error on) as the outer policy.
  const outer = fallback({ value: 'never', on: () => false, bus, clock });
  const real: Real = { bh, piped: pipeline(outer, bh), clock, calls: new Map(), signals: [] };
  await fc.asyncModelRun(() => ({ model, real }), cmds);
  ops.push(model.next);
  // Everything settles: every running call finishes, every queued one times out.
  while (model.running.length > 0) await new Finish([0], true).run(model, real);
  await new Advance(c.queueTimeout).run(model, real);
  expect(bh.snapshot()).toMatchObject({ running: 0, queued: 0 });
  expect(clock.pending, 'timers left behind').toBe(0);
  // No call left a listener on its caller's signal.
  for (const signal of real.signals)
    expect(getEventListeners(signal, 'abort'), 'listeners left on a signal').toEqual([]);
}

/** How many calls each run started (to report the size of the long run). */
const ops: number[] = [];

const config = fc.record({
  max: fc.integer({ min: 1, max: 4 }),
  maxQueue: fc.integer({ min: 0, max: 5 }),
  queueTimeout: fc.integer({ min: 1, max: 100 }),
});

describe('bulkhead (model)', loaded, () => {
  it('random runs match the model: at most N running, a bounded FIFO queue, timeouts, aborts, dispose', async () => {
    await fc.assert(
      fc.asyncProperty(config, fc.commands([command(20)], { maxCommands: 60 }), (c, cmds) => runModel(c, cmds)),
      { numRuns: 150 },
    );
  });

  it('no slot leaks over 10,000 random operations', async () => {
    await fc.assert(
      fc.asyncProperty(config, fc.array(command(5_000), { minLength: 10_000, maxLength: 10_000 }), (c, cmds) =>
        runModel(c, cmds),
      ),
      { numRuns: 1, endOnFailure: true },
    );
    expect(ops.at(-1)).toBeGreaterThan(3_000);
  });
});
