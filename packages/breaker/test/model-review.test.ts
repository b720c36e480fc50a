import { createBus, hasCode, ManualClock } from '@holdfast/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type CircuitBreakerPolicy, circuitBreaker } from '../src/index.js';

/**
 * A model-based test of the breaker's state machine: random runs of calls (settled at once or
 * held and settled later), clock steps and manual open/close/isolate/disable, checked against a
 * reference model a few lines long. consecutiveFailures rule, fixed openFor, no maxWait.
 */

type State = 'closed' | 'open' | 'halfOpen' | 'isolated' | 'disabled';

interface Config {
  readonly failures: number; // consecutiveFailures
  readonly openFor: number;
  readonly maxProbes: number;
  readonly successesToClose: number;
}

/** A call of the model: which generation it ran in, whether as a probe; undefined when untracked (disabled). */
interface ModelCall {
  readonly gen: number;
  readonly probe: boolean;
}

class Model {
  state: State = 'closed';
  now = 0;
  retryAt = 0;
  consecutive = 0;
  probes = 0;
  successes = 0;
  gen = 0;

  constructor(readonly c: Config) {}

  enter(state: State): void {
    this.state = state;
    this.gen++;
    this.probes = 0;
    this.successes = 0;
    this.consecutive = 0;
  }

  openNow(): void {
    this.enter('open');
    this.retryAt = this.now + this.c.openFor;
  }

  /** An open breaker whose time is over is half-open, as soon as anyone looks. */
  refresh(): State {
    if (this.state === 'open' && this.now >= this.retryAt) this.enter('halfOpen');
    return this.state;
  }

  /** What a call meets: run (tracked or not) or a refusal. */
  start(): ModelCall | 'untracked' | 'refused' {
    switch (this.refresh()) {
      case 'closed':
        return { gen: this.gen, probe: false };
      case 'halfOpen':
        if (this.probes >= this.c.maxProbes) return 'refused';
        this.probes++;
        return { gen: this.gen, probe: true };
      case 'disabled':
        return 'untracked';
      default:
        return 'refused';
    }
  }

  settle(call: ModelCall | 'untracked', ok: boolean): void {
    if (call === 'untracked' || call.gen !== this.gen) return;
    if (call.probe) {
      this.probes--;
      if (!ok) this.openNow();
      else if (++this.successes >= this.c.successesToClose) this.enter('closed');
      return;
    }
    if (ok) this.consecutive = 0;
    else if (++this.consecutive >= this.c.failures) this.openNow();
  }

  /** By hand: open for openFor from now, unless it is open now (an open time that is over is not). */
  open(): void {
    if (this.refresh() !== 'open') this.openNow();
  }

  close(): void {
    if (this.state !== 'closed') this.enter('closed');
  }

  isolate(): void {
    if (this.state !== 'isolated') this.enter('isolated');
  }

  disable(): void {
    if (this.state !== 'disabled') this.enter('disabled');
  }
}

interface Held {
  readonly model: ModelCall | 'untracked';
  readonly settle: (ok: boolean) => void;
  readonly done: Promise<unknown>;
}

interface Real {
  readonly breaker: CircuitBreakerPolicy;
  readonly clock: ManualClock;
  readonly held: Held[];
}

const failure = () => Object.assign(new Error('connection reset'), { code: 'ECONNRESET' });

class Call implements fc.AsyncCommand<Model, Real> {
  constructor(readonly ok: boolean) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const expected = m.start();
    let ran = 0;
    const outcome = await r.breaker
      .execute(() => {
        ran++;
        return this.ok ? Promise.resolve('value') : Promise.reject(failure());
      })
      .then(
        (v) => v,
        (e: unknown) => (hasCode(e, 'E_CIRCUIT_OPEN') ? 'refused' : 'failed'),
      );
    if (expected === 'refused') {
      expect({ ran, outcome }).toEqual({ ran: 0, outcome: 'refused' });
      return;
    }
    expect({ ran, outcome }).toEqual({ ran: 1, outcome: this.ok ? 'value' : 'failed' });
    m.settle(expected, this.ok);
  }
  toString = () => (this.ok ? 'succeed' : 'fail');
}

class Hold implements fc.AsyncCommand<Model, Real> {
  check = (m: Readonly<Model>) => m.state !== 'isolated';
  async run(m: Model, r: Real): Promise<void> {
    const expected = m.start();
    let settle: (ok: boolean) => void = () => {};
    let ran = 0;
    const done = r.breaker.execute(() => {
      ran++;
      return new Promise((resolve, reject) => {
        settle = (ok) => (ok ? resolve('late') : reject(failure()));
      });
    });
    if (expected === 'refused') {
      expect(await done.catch((e: unknown) => hasCode(e, 'E_CIRCUIT_OPEN'))).toBe(true);
      expect(ran).toBe(0);
      return;
    }
    expect(ran).toBe(1);
    r.held.push({ model: expected, settle: (ok) => settle(ok), done: done.catch(() => undefined) });
  }
  toString = () => 'hold';
}

class Release implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly pick: number,
    readonly ok: boolean,
  ) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    if (r.held.length === 0) return;
    const [call] = r.held.splice(this.pick % r.held.length, 1) as [Held];
    call.settle(this.ok);
    await call.done;
    m.settle(call.model, this.ok);
  }
  toString = () => `release(${this.pick}, ${this.ok ? 'ok' : 'fail'})`;
}

class Advance implements fc.AsyncCommand<Model, Real> {
  constructor(readonly ms: number) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    m.now += this.ms;
    await r.clock.advance(this.ms);
  }
  toString = () => `advance(${this.ms})`;
}

class Manual implements fc.AsyncCommand<Model, Real> {
  constructor(readonly action: 'open' | 'close' | 'isolate' | 'disable') {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    m[this.action]();
    r.breaker[this.action]();
  }
  toString = () => `${this.action}()`;
}

/** Looks, as a dashboard would: the state (which turns a due open breaker half-open) and the counts. */
class Look implements fc.AsyncCommand<Model, Real> {
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const state = m.refresh();
    const s = r.breaker.snapshot();
    expect({ state: s.state, probes: s.probes.inFlight, consecutive: s.consecutiveFailures }).toEqual({
      state,
      probes: m.probes,
      consecutive: m.consecutive,
    });
    if (state === 'open') expect(s.retryAt).toBe(m.retryAt);
  }
  toString = () => 'look';
}

const commands = [
  fc.boolean().map((ok) => new Call(ok)),
  fc.constant(new Hold()),
  fc.tuple(fc.nat(7), fc.boolean()).map(([pick, ok]) => new Release(pick, ok)),
  fc.constantFrom(1, 400, 1_000, 2_500).map((ms) => new Advance(ms)),
  fc.constantFrom('open', 'close', 'isolate', 'disable').map((a) => new Manual(a as Manual['action'])),
  fc.constant(new Look()),
];

const configs = fc.record({
  failures: fc.integer({ min: 1, max: 4 }),
  openFor: fc.constant(1_000),
  maxProbes: fc.integer({ min: 1, max: 3 }),
  successesToClose: fc.integer({ min: 1, max: 3 }),
});

describe('breaker state machine against a reference model (review)', () => {
  it('agrees with the model on every call, refusal, probe and state', async () => {
    await fc.assert(
      fc.asyncProperty(configs, fc.commands(commands, { maxCommands: 80, size: 'max' }), async (c, cmds) => {
        const clock = new ManualClock();
        const breaker = circuitBreaker({
          name: 'model',
          bus: createBus(),
          clock,
          policies: false,
          consecutiveFailures: c.failures,
          openFor: c.openFor,
          halfOpen: { maxProbes: c.maxProbes, successesToClose: c.successesToClose, maxWait: false },
        });
        const real: Real = { breaker, clock, held: [] };
        try {
          await fc.asyncModelRun(() => ({ model: new Model(c), real }), cmds);
        } finally {
          for (const h of real.held) h.settle(true);
          await Promise.all(real.held.map((h) => h.done));
          breaker.dispose();
        }
      }),
      { numRuns: 300 },
    );
  });

  it('open() by hand after an open time ran out unobserved opens it again for openFor', async () => {
    const clock = new ManualClock();
    const breaker = circuitBreaker({ bus: createBus(), clock, policies: false, openFor: 1_000 });
    breaker.open();
    await clock.advance(2_000); // nobody looked: still open inside, though its time is over
    breaker.open();
    let ran = 0;
    const outcome = await breaker
      .execute(() => ++ran)
      .catch((e: unknown) => (hasCode(e, 'E_CIRCUIT_OPEN') ? 'refused' : e));
    expect(outcome).toBe('refused');
    expect(ran).toBe(0);
    expect(breaker.snapshot().retryAt).toBe(3_000);
  });
});
