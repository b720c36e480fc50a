import { BrokenCircuitError, type Clock, createBus, type HoldfastEvent } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { breakerRegistry, circuitBreaker } from '../src/index.js';
import { after, setup, succeed } from './support.js';

/** A clock that only moves when told, backwards too: Date.now after an NTP step. */
function steppingClock(start: number) {
  let now = start;
  const clock: Clock = { now: () => now, setTimeout: () => undefined, clearTimeout: () => undefined };
  return { clock, set: (t: number) => (now = t), add: (ms: number) => (now += ms) };
}
const hang = () => new Promise<never>(() => undefined);

describe('halfOpen.maxWait (review)', () => {
  it('a clock stepped back while a probe hangs: the probe is still given up maxWait later, not maxWait plus the step', async () => {
    const t = steppingClock(10_000_000);
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('*', (e) => events.push(e));
    const breaker = circuitBreaker({ name: 'b', clock: t.clock, bus, openFor: 1_000 });
    breaker.open();
    t.add(1_000);
    void breaker.execute(hang);
    t.add(10_000);
    t.add(-3_600_000); // NTP steps the wall clock back an hour
    await breaker.execute(succeed).catch(() => undefined);
    t.add(60_000);
    await expect(breaker.execute(succeed)).rejects.toBeInstanceOf(BrokenCircuitError);
    expect(breaker.state).toBe('open');
    expect(events.filter((e) => e.type === 'breaker.open').at(-1)).toMatchObject({ code: 'E_PROBE_HUNG' });
  });

  it('maxProbes 2, successesToClose 2: one probe hung, the other slot keeps probing and closes it', async () => {
    const { breaker, clock } = setup({ openFor: 1_000, halfOpen: { maxProbes: 2, successesToClose: 2 } });
    breaker.open();
    await clock.advance(1_000);
    void breaker.execute(hang);
    await expect(breaker.execute(succeed)).resolves.toBe('ok');
    await clock.advance(30_000);
    await expect(breaker.execute(succeed)).resolves.toBe('ok');
    expect(breaker.state).toBe('closed');
  });

  it('maxProbes 2: the oldest probe hung past maxWait, a fresh one out: the next call reopens', async () => {
    const { breaker, clock, of } = setup({ openFor: 1_000, halfOpen: { maxProbes: 2, successesToClose: 3 } });
    breaker.open();
    await clock.advance(1_000);
    void breaker.execute(hang);
    await clock.advance(59_000);
    void breaker.execute(hang);
    await clock.advance(1_000);
    await expect(breaker.execute(succeed)).rejects.toBeInstanceOf(BrokenCircuitError);
    expect(of('breaker.open').at(-1)).toMatchObject({ code: 'E_PROBE_HUNG' });
  });

  it('a probe that settled resets the clock for the next: a probe sent later is given maxWait of its own', async () => {
    const { breaker, clock } = setup({ openFor: 1_000, halfOpen: { successesToClose: 2 } });
    breaker.open();
    await clock.advance(1_000);
    await expect(breaker.execute(succeed)).resolves.toBe('ok');
    await clock.advance(59_000);
    void breaker.execute(hang);
    await clock.advance(1_000);
    await expect(breaker.execute(succeed)).rejects.toBeInstanceOf(BrokenCircuitError);
    expect(breaker.state).toBe('halfOpen');
  });

  it('snapshot while a probe hangs, restored: the new breaker probes, and gives its own hung probe up', async () => {
    const { breaker, clock } = setup({ openFor: 1_000 });
    breaker.open();
    await clock.advance(1_000);
    void breaker.execute(hang);
    const snap = breaker.snapshot();
    expect(snap.state).toBe('halfOpen');
    const again = circuitBreaker({
      name: 'p2',
      clock,
      bus: createBus(),
      openFor: 1_000,
      restore: snap,
      policies: false,
    });
    void again.execute(hang);
    await clock.advance(60_000);
    await expect(again.execute(succeed)).rejects.toBeInstanceOf(BrokenCircuitError);
    expect(again.state).toBe('open');
  });

  it('registry: defaults.halfOpen.maxWait survives a key override of halfOpen.maxProbes', async () => {
    const clock = setup().clock;
    const reg = breakerRegistry({
      clock,
      bus: createBus(),
      defaults: { openFor: 1_000, halfOpen: { maxWait: 5_000 } },
      overrides: { a: { halfOpen: { maxProbes: 1 } } },
    } as never);
    const b = reg.get('a');
    b.open();
    await clock.advance(1_000);
    void b.execute(hang);
    await clock.advance(5_000);
    await expect(b.execute(succeed)).rejects.toBeInstanceOf(BrokenCircuitError);
    expect(b.state).toBe('open');
  });

  for (const bad of [0, -1, Number.NaN, '5000', null, true]) {
    it(`rejects halfOpen.maxWait ${String(bad)} with an error naming it`, () => {
      expect(() => circuitBreaker({ halfOpen: { maxWait: bad as never } })).toThrow(/halfOpen\.maxWait/);
    });
  }
  it('rejects halfOpen.maxWait Infinity (false is the way to wait however long)', () => {
    expect(() => circuitBreaker({ halfOpen: { maxWait: Number.POSITIVE_INFINITY } })).toThrow(/halfOpen\.maxWait/);
  });
});

describe('halfOpen.maxWait under the probe time', () => {
  it('a call refused while the probe is out is told to come back when the open time after its give-up ends, if maxWait comes before its expected answer', async () => {
    const { breaker, clock, of } = setup({
      minimumCalls: 3,
      failureRateThreshold: 1,
      openFor: 10_000,
      halfOpen: { maxWait: 200 },
    });
    // Calls of 800 ms opened it: a probe is expected back in about 800 ms, but is given up at 200.
    for (let i = 0; i < 3; i++) {
      const call = breaker
        .execute(() => new Promise((_, reject) => clock.setTimeout(() => reject(new Error('slow')), 800)))
        .catch(() => undefined);
      await clock.advance(800);
      await call;
    }
    expect(breaker.state).toBe('open');
    await clock.advance(10_000);
    const probeAt = clock.now();
    void breaker.execute(hang);
    const refused = await breaker.execute(succeed).catch((e: unknown) => e as BrokenCircuitError);
    expect(refused).toBeInstanceOf(BrokenCircuitError);
    // Given up at probeAt + 200, the breaker opens again for openFor: that is when a probe goes through.
    expect((refused as BrokenCircuitError).retryAt).toBe(probeAt + 200 + 10_000);
    // A caller that comes at the give-up finds the breaker open again (the open time counting from it).
    await clock.advance(200);
    const reopened = await breaker.execute(succeed).catch((e: unknown) => e as BrokenCircuitError);
    expect(reopened).toBeInstanceOf(BrokenCircuitError);
    expect((reopened as BrokenCircuitError).retryAt).toBe(probeAt + 200 + 10_000);
    expect(of('breaker.open').at(-1)).toMatchObject({ code: 'E_PROBE_HUNG' });
  });
});

describe('halfOpen.maxWait with probes that answer (review of 9e67c71)', () => {
  it('maxProbes 2: probes that keep answering are not given up as hung maxWait after the first began', async () => {
    const { breaker, clock, of } = setup({
      openFor: 1_000,
      halfOpen: { maxProbes: 2, successesToClose: 10, maxWait: 1_000 },
    });
    breaker.open();
    await clock.advance(1_000);
    const probe = () =>
      breaker.execute(() => new Promise((resolve) => clock.setTimeout(() => resolve('ok'), 300))).catch((e) => e);
    // Two slots, each probe 300 ms, a caller every 100 ms: a probe answers every 150 ms.
    const calls: Promise<unknown>[] = [];
    for (let t = 0; t < 2_000 && breaker.state === 'halfOpen'; t += 100) {
      calls.push(probe());
      await clock.advance(100);
    }
    await clock.advance(300);
    await Promise.all(calls);
    expect(of('breaker.open').filter((e) => e.code === 'E_PROBE_HUNG')).toEqual([]);
    expect(breaker.state).toBe('closed');
  });

  it('a caller that comes back at the retryAt it was given while a probe hangs past maxWait is let through', async () => {
    const { breaker, clock } = setup({
      minimumCalls: 3,
      failureRateThreshold: 1,
      openFor: 10_000,
      halfOpen: { maxWait: 200 },
    });
    // Calls of 800 ms opened it: a probe is expected back in about 800 ms, and given up at 200.
    for (let i = 0; i < 3; i++) {
      const call = breaker.execute(after(clock, 800, new Error('slow'), true)).catch(() => undefined);
      await clock.advance(800);
      await call;
    }
    await clock.advance(10_000);
    void breaker.execute(hang);
    // Nobody calls at the give-up: the caller's next call is the first to see it.
    await clock.advance(100);
    const refused = (await breaker.execute(succeed).catch((e: unknown) => e)) as BrokenCircuitError;
    expect(refused).toBeInstanceOf(BrokenCircuitError);
    await clock.advance((refused.retryAt as number) - clock.now());
    // README: retryAt "says when the breaker next lets a probe through".
    await expect(breaker.execute(succeed)).resolves.toBe('ok');
  });
});
