import { BrokenCircuitError, type Clock, createBus, type HoldfastEvent, pipeline, timeout } from '@holdfast/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { breakerRegistry, circuitBreaker } from '../src/index.js';
import { failTimes, setup, succeed } from './support.js';

/** An error whose `name`, `message`, `code` or `cause` getter throws when read. */
function trap(field: 'name' | 'message' | 'code' | 'cause' | 'status'): Error {
  const error = new Error('downstream failed');
  Object.defineProperty(error, field, {
    get() {
      throw new Error(`getter ${field} exploded`);
    },
  });
  return error;
}

/** A clock that only moves when `set` says so, backwards too: Date.now after an NTP step. */
function steppingClock(start: number) {
  let now = start;
  const clock: Clock = { now: () => now, setTimeout: () => undefined, clearTimeout: () => undefined };
  return { clock, set: (t: number) => (now = t), add: (ms: number) => (now += ms) };
}

const settle = (p: Promise<unknown>) =>
  p.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );

describe('hostile errors: getters that throw', () => {
  for (const field of ['name', 'code', 'status'] as const) {
    it(`a failed probe whose error's ${field} getter throws still reopens the breaker, and the caller gets its own error`, async () => {
      const { breaker, clock } = setup({ openFor: 1_000 });
      breaker.open();
      await clock.advance(1_000);
      const error = trap(field);
      const probe = await settle(
        breaker.execute(() => {
          throw error;
        }),
      );
      // The probe counted as a failure: the breaker is open again, not stuck half-open with its slot taken.
      expect(breaker.state).toBe('open');
      // The caller's error, not the getter's (compared by identity: printing it would trip the getter).
      expect(probe.ok === false && probe.error === error).toBe(true);
      await clock.advance(2_000);
      await expect(breaker.execute(succeed)).resolves.toBe('ok');
      expect(breaker.state).toBe('closed');
    });
  }

  it('a closed breaker counts a failure whose error has throwing getters, with a listener on every event', async () => {
    const { breaker, bus } = setup({ minimumCalls: 2, failureRateThreshold: 1 });
    const seen: HoldfastEvent[] = [];
    bus.on('*', (e) => seen.push(e));
    for (const field of ['name', 'code'] as const) {
      const error = trap(field);
      const outcome = await settle(
        breaker.execute(() => {
          throw error;
        }),
      );
      expect(outcome.ok === false && outcome.error === error).toBe(true);
    }
    expect(breaker.state).toBe('open');
    expect(seen.filter((e) => e.type === 'breaker.failure')).toHaveLength(2);
  });

  it('a Proxy that throws on every read, thrown by the call, is a failure and reaches the caller as is', async () => {
    const { breaker } = setup({ minimumCalls: 1, failureRateThreshold: 1 });
    const hostile = new Proxy(
      {},
      {
        get() {
          throw new Error('proxy read');
        },
        getPrototypeOf() {
          throw new Error('proxy prototype');
        },
      },
    );
    const outcome = await settle(breaker.execute(() => Promise.reject(hostile)));
    expect(outcome.ok === false && outcome.error === hostile).toBe(true);
    expect(breaker.state).toBe('open');
  });

  it('non-Error rejections (string, undefined, null, a number) count as failures', async () => {
    const { breaker } = setup({ minimumCalls: 4, failureRateThreshold: 1 });
    for (const value of ['boom', undefined, null, 42]) {
      expect(await settle(breaker.execute(() => Promise.reject(value)))).toEqual({ ok: false, error: value });
    }
    expect(breaker.state).toBe('open');
  });

  it('isFailure that returns a non-boolean, non-outcome (1, "yes", null, a promise) counts as a failure', async () => {
    for (const answer of [1, 'yes', null, undefined, Promise.resolve('success'), Number.NaN]) {
      const { breaker } = setup({ minimumCalls: 1, failureRateThreshold: 1, isFailure: () => answer as never });
      await breaker.execute(succeed);
      expect(breaker.state).toBe('open');
    }
  });
});

describe('half-open under load', () => {
  it('lets exactly maxProbes of 1,000 concurrent calls run, whatever order the probes settle in (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 5 }),
        fc.array(fc.constantFrom('success', 'failure', 'ignored'), { minLength: 5, maxLength: 5 }),
        fc.array(fc.nat(4), { minLength: 5, maxLength: 5 }),
        async (maxProbes, outcomes, order) => {
          const { breaker, clock } = setup({
            openFor: 1_000,
            halfOpen: { maxProbes, successesToClose: maxProbes },
            isFailure: (s) => (s.ok ? 'success' : (s.error as 'failure' | 'ignored')),
          });
          breaker.open();
          await clock.advance(1_000);
          let ran = 0;
          const release: (() => void)[] = [];
          const calls: Promise<unknown>[] = [];
          for (let i = 0; i < 1_000; i++) {
            calls.push(
              settle(
                breaker.execute(
                  () =>
                    new Promise((resolve, reject) => {
                      const outcome = outcomes[ran] as string;
                      ran++;
                      release.push(() => (outcome === 'success' ? resolve('ok') : reject(outcome)));
                    }),
                ),
              ),
            );
          }
          expect(ran).toBe(maxProbes);
          // Settle the probes in an arbitrary order; none lets a non-probe call through.
          const pending = [...release];
          for (const pick of order) {
            if (pending.length === 0) break;
            pending.splice(pick % pending.length, 1)[0]?.();
            await Promise.resolve();
          }
          for (const r of pending) r();
          await Promise.all(calls);
          expect(ran).toBe(maxProbes);
          expect(['open', 'halfOpen', 'closed']).toContain(breaker.state);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('a probe its caller aborts (the call honours the signal) frees its slot: the breaker is not stuck half-open', async () => {
    const { breaker, clock } = setup({ openFor: 1_000 });
    breaker.open();
    await clock.advance(1_000);
    const controller = new AbortController();
    const probe = settle(
      breaker.execute(
        ({ signal }) =>
          new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true })),
        { signal: controller.signal },
      ),
    );
    await expect(breaker.execute(succeed)).rejects.toBeInstanceOf(BrokenCircuitError);
    controller.abort(new Error('caller gave up'));
    expect((await probe).ok).toBe(false);
    await expect(breaker.execute(succeed)).resolves.toBe('ok');
    expect(breaker.state).toBe('closed');
  });
});

describe('a probe that never settles', () => {
  it('is given up after halfOpen.maxWait: the next call reopens the breaker, the late answer is not counted, a later probe closes it', async () => {
    const { breaker, clock, of } = setup({ openFor: 1_000 });
    breaker.open();
    await clock.advance(1_000);
    let settle: (value: string) => void = () => {};
    const hung = breaker.execute(() => new Promise<string>((resolve) => (settle = resolve)));
    // Within maxWait (60 s by default), callers are refused half-open while the probe is out.
    await clock.advance(59_000);
    await expect(breaker.execute(succeed)).rejects.toBeInstanceOf(BrokenCircuitError);
    expect(breaker.state).toBe('halfOpen');
    await clock.advance(1_000);
    const refused = (await breaker.execute(succeed).catch((e: unknown) => e)) as BrokenCircuitError;
    expect(refused).toBeInstanceOf(BrokenCircuitError);
    expect(breaker.state).toBe('open');
    expect(of('breaker.open').at(-1)).toMatchObject({ reason: 'halfOpenFailure', code: 'E_PROBE_HUNG' });
    // The hung probe answers at last: it does not close the breaker.
    settle('late');
    await expect(hung).resolves.toBe('late');
    expect(breaker.state).toBe('open');
    await clock.advance((refused.retryAt ?? 0) - clock.now());
    await expect(breaker.execute(succeed)).resolves.toBe('ok');
    expect(breaker.state).toBe('closed');
  });

  it('with halfOpen.maxWait: false it holds the breaker half-open (as opossum without its timeout, and cockatiel); inside pipeline(breaker, aggressive timeout()) it fails and reopens', async () => {
    const { breaker, clock, bus } = setup({ openFor: 1_000, halfOpen: { maxWait: false } });
    breaker.open();
    await clock.advance(1_000);
    const hang = () => new Promise<never>(() => undefined);
    void breaker.execute(hang);
    await clock.advance(3_600_000);
    await expect(breaker.execute(succeed)).rejects.toBeInstanceOf(BrokenCircuitError);
    expect(breaker.state).toBe('halfOpen');

    const guarded = circuitBreaker({ name: 'guarded', clock, bus, policies: false, openFor: 1_000 });
    const call = pipeline(guarded, timeout(500, { clock, bus, strategy: 'aggressive' }));
    guarded.open();
    await clock.advance(1_000);
    const probe = call.execute(hang).catch((e: unknown) => e);
    await clock.advance(500);
    expect(await probe).toMatchObject({ code: 'E_TIMEOUT' });
    expect(guarded.state).toBe('open');
  });
});

describe('the clock steps (Date.now is not monotonic)', () => {
  it('an open breaker whose clock steps back an hour waits no longer than openFor from then', () => {
    const t = steppingClock(10_000_000);
    const breaker = circuitBreaker({ clock: t.clock, bus: createBus(), policies: false, openFor: 5_000 });
    breaker.open();
    t.add(-3_600_000); // an NTP step back
    expect(breaker.state).toBe('open');
    t.add(5_000);
    expect(breaker.state).toBe('halfOpen');
  });

  it('a snapshot saved on a machine whose clock ran a day ahead waits what it had left, not a day', () => {
    const ahead = steppingClock(1_700_000_000_000 + 86_400_000);
    const saved = circuitBreaker({ clock: ahead.clock, bus: createBus(), policies: false, openFor: 5_000 });
    saved.open();
    const t = steppingClock(1_700_000_000_000);
    const restored = circuitBreaker({
      clock: t.clock,
      bus: createBus(),
      policies: false,
      openFor: 5_000,
      restore: JSON.parse(JSON.stringify(saved.snapshot())),
    });
    expect(restored.state).toBe('open');
    t.add(5_000);
    expect(restored.state).toBe('halfOpen');
  });

  it('a window whose clock steps back still forgets old calls: ten minutes of successes cannot hide an outage', async () => {
    const t = steppingClock(10_000_000);
    const breaker = circuitBreaker({
      clock: t.clock,
      bus: createBus(),
      policies: false,
      minimumCalls: 10,
      failureRateThreshold: 0.5,
      window: { duration: 10_000, buckets: 10 },
    });
    await breaker.execute(succeed);
    t.add(-3_600_000); // an NTP step back of an hour
    // Ten minutes of healthy traffic, 2 calls a second.
    for (let s = 0; s < 600; s++) {
      await breaker.execute(succeed);
      await breaker.execute(succeed);
      t.add(1_000);
    }
    // Then the downstream dies: up to a minute of failures, 2 a second.
    let failures = 0;
    for (let s = 0; s < 60 && breaker.state === 'closed'; s++) {
      await failTimes(breaker, 2);
      failures += 2;
      t.add(1_000);
    }
    // A 10 s window holds about 20 calls: it opens within about 10 s of failures, not 50 minutes later.
    expect({ state: breaker.state, failures: failures <= 22 }).toEqual({ state: 'open', failures: true });
  });

  it('a clock jump forward empties the window and turns an open breaker half-open, nothing worse', async () => {
    const t = steppingClock(0);
    const breaker = circuitBreaker({ clock: t.clock, bus: createBus(), policies: false, minimumCalls: 2 });
    await failTimes(breaker, 1);
    t.add(10 ** 12);
    await failTimes(breaker, 1);
    expect(breaker.state).toBe('closed');
    expect(breaker.snapshot().window.calls).toBe(1);
    await failTimes(breaker, 1);
    expect(breaker.state).toBe('open');
    t.add(10 ** 12);
    expect(breaker.state).toBe('halfOpen');
  });
});

describe('keyed breakers under an attacker who picks keys', () => {
  it('cycling maxKeys fresh keys does not evict an open breaker into a fresh closed one', async () => {
    const t = steppingClock(0);
    const hosts = breakerRegistry({
      clock: t.clock,
      bus: createBus(),
      policies: false,
      maxKeys: 100,
      defaults: { minimumCalls: 1, openFor: 60_000 },
    });
    await hosts.execute('payments.internal', () => Promise.reject(new Error('down'))).catch(() => undefined);
    expect(hosts.get('payments.internal').state).toBe('open');
    t.add(2_000);
    // An attacker sends 1,000 requests, each with a key of its own (a Host header, a tenant id).
    for (let i = 0; i < 1_000; i++) await hosts.execute(`attacker-${i}.example`, succeed);
    expect(hosts.size).toBeLessThanOrEqual(100);
    let ran = 0;
    const outcome = await settle(
      hosts.execute('payments.internal', () => {
        ran++;
        return 'ok';
      }),
    );
    expect(ran).toBe(0);
    expect(outcome.ok).toBe(false);
    expect((outcome as { error: unknown }).error).toBeInstanceOf(BrokenCircuitError);
  });

  it('stays bounded when every breaker it holds is open: 30,000 failing keys hold at most maxKeys', async () => {
    const t = steppingClock(0);
    const hosts = breakerRegistry({
      clock: t.clock,
      bus: createBus(),
      policies: false,
      maxKeys: 1_000,
      defaults: { minimumCalls: 1, openFor: 600_000 },
    });
    let largest = 0;
    const down = () => Promise.reject(new Error('down'));
    for (let i = 0; i < 30_000; i++) {
      await hosts.execute(`k${i}`, down).catch(() => undefined);
      if (i % 1_000 === 0) largest = Math.max(largest, hosts.size);
    }
    expect(Math.max(largest, hosts.size)).toBe(1_000);
    expect(hosts.get('k29999').state).toBe('open');
    hosts.dispose();
  }, 30_000);

  it("keys such as '__proto__', 'constructor', '' and a 1 MB string are keys like any other, and round-trip a snapshot", async () => {
    const bus = createBus();
    const hosts = breakerRegistry({ bus, policies: false, defaults: { minimumCalls: 1 } });
    const huge = 'h'.repeat(1 << 20);
    const keys = ['__proto__', 'constructor', 'hasOwnProperty', 'toString', '', huge];
    for (const key of keys) await hosts.execute(key, () => Promise.reject(new Error('down'))).catch(() => undefined);
    expect(hosts.size).toBe(keys.length);
    expect(keys.every((k) => hosts.get(k).state === 'open')).toBe(true);
    const saved = JSON.parse(JSON.stringify(hosts.snapshot()));
    expect(Object.keys(saved.breakers).sort()).toEqual([...keys].sort());
    const again = breakerRegistry({ bus, policies: false, restore: saved });
    for (const key of keys) expect([key.slice(0, 20), again.get(key).state]).toEqual([key.slice(0, 20), 'open']);
    expect(({} as Record<string, unknown>).state).toBeUndefined(); // nothing leaked onto Object.prototype
    hosts.dispose();
    again.dispose();
  });
});

describe('the state machine (property)', () => {
  type Command =
    | { kind: 'call'; fails: boolean; settleAfter: number }
    | { kind: 'advance'; ms: number }
    | { kind: 'settleAll' };
  const command: fc.Arbitrary<Command> = fc.oneof(
    fc.record({ kind: fc.constant('call' as const), fails: fc.boolean(), settleAfter: fc.constantFrom(0, 5, 50, 500) }),
    fc.record({ kind: fc.constant('advance' as const), ms: fc.constantFrom(1, 10, 100, 1_000, 5_000) }),
    fc.constant({ kind: 'settleAll' as const }),
  );

  it('moves only closed → open → halfOpen → closed | open, and runs nothing while open or past maxProbes', async () => {
    let probed = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(command, { minLength: 30, maxLength: 80 }),
        fc.integer({ min: 1, max: 3 }),
        fc.boolean(),
        async (commands, maxProbes, consecutive) => {
          const { breaker, clock, types } = setup({
            minimumCalls: 3,
            ...(consecutive ? { consecutiveFailures: 2 } : { failureRateThreshold: 0.5 }),
            openFor: 1_000,
            window: { duration: 2_000, buckets: 4 },
            halfOpen: { maxProbes, successesToClose: 2 },
          });
          const pending: Promise<unknown>[] = [];
          let inFlightProbes = 0;
          let most = 0;
          for (const c of commands) {
            if (c.kind === 'advance') await clock.advance(c.ms);
            else if (c.kind === 'settleAll') await clock.advance(1_000);
            else {
              const before = breaker.state;
              let ran = false;
              const call = breaker.execute(async () => {
                ran = true;
                if (before === 'halfOpen') most = Math.max(most, ++inFlightProbes);
                await new Promise<void>((resolve) => clock.setTimeout(resolve, c.settleAfter));
                if (before === 'halfOpen') inFlightProbes--;
                if (c.fails) throw new Error('down');
                return 'ok';
              });
              pending.push(call.catch(() => undefined));
              // Nothing runs while open; a call made while half-open runs only as a probe.
              if (before === 'open') expect(ran).toBe(false);
            }
          }
          await clock.advance(1_000);
          await Promise.all(pending);
          expect(most).toBeLessThanOrEqual(maxProbes);
          const transitions = types().filter(
            (t) => t === 'breaker.open' || t === 'breaker.halfOpen' || t === 'breaker.close',
          );
          if (transitions.includes('breaker.halfOpen')) probed++;
          let state = 'closed';
          const next: Record<string, Record<string, string>> = {
            closed: { 'breaker.open': 'open' },
            open: { 'breaker.halfOpen': 'halfOpen' },
            halfOpen: { 'breaker.close': 'closed', 'breaker.open': 'open' },
          };
          for (const t of transitions) {
            const to = next[state]?.[t];
            expect(to, `${state} --${t}-->`).toBeDefined();
            state = to as string;
          }
        },
      ),
      { numRuns: 200 },
    );
    // Not vacuous: most runs went through half-open.
    expect(probed).toBeGreaterThan(50);
  });
});
