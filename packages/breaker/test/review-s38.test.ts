import { createBus, ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { breakerRegistry, circuitBreaker } from '../src/index.js';

describe('review s38', () => {
  it("a breaker held from hosts.get(key) (the README's pipeline pattern) and called every 100 ms is dropped as 'idle' after idleTtl: every later call rejects E_DISPOSED", async () => {
    const clock = new ManualClock(0);
    const hosts = breakerRegistry({ clock, bus: createBus(), policies: false, idleTtl: 1_000 });
    const breaker = hosts.get('payments.internal'); // as README: pipeline(hosts.get(host), timeout(1_000))
    for (let t = 0; t < 3_000; t += 100) {
      await breaker.execute(() => 'ok');
      hosts.get('search.internal'); // other traffic through the registry (or a health snapshot())
      await clock.advance(100);
    }
    // Busy for 3 s, never idle: it must still serve.
    await expect(breaker.execute(() => 'ok')).resolves.toBe('ok');
  });

  it('maxProbes 2: after one probe is aborted by its caller, two probes out for 10 s and 1 s are given up as hung (E_PROBE_HUNG) though maxWait is 60 s', async () => {
    const clock = new ManualClock(0);
    const bus = createBus();
    const opened: unknown[] = [];
    bus.on('breaker.open', (e) => opened.push(e.code));
    const breaker = circuitBreaker({
      clock,
      bus,
      policies: false,
      openFor: 1_000,
      halfOpen: { maxProbes: 2, maxWait: 60_000 },
    });
    breaker.open();
    await clock.advance(1_000);
    const hang = ({ signal }: { signal: AbortSignal }) =>
      new Promise<string>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
    const ac = new AbortController();
    const a = breaker.execute(hang, { signal: ac.signal }).catch(() => 'aborted'); // probe A, t=1s
    await clock.advance(50_000);
    void breaker.execute(hang).catch(() => undefined); // probe B, t=51s
    await clock.advance(5_000);
    ac.abort(); // A's caller gives up at t=56s: ignored, its slot freed
    expect(await a).toBe('aborted');
    await clock.advance(4_000);
    void breaker.execute(hang).catch(() => undefined); // probe C, t=60s
    await clock.advance(1_000);
    // t=61s: B has been out 10 s, C 1 s. Neither is past maxWait.
    await breaker.execute(() => 'x').catch(() => undefined);
    expect(opened).toEqual([undefined]); // the manual open only
    expect(breaker.state).toBe('halfOpen');
  });
});

describe('found while fixing', () => {
  it('a key may not set restore, name, bus, clock or policies in its overrides: refused, naming the path', () => {
    const restore = circuitBreaker({ policies: false }).snapshot();
    for (const option of ['restore', 'name', 'bus', 'clock', 'policies']) {
      const value = option === 'restore' ? { ...restore, state: 'open' } : option === 'name' ? 'other' : false;
      expect(() =>
        breakerRegistry({ bus: createBus(), policies: false, overrides: { a: { [option]: value } as never } }),
      ).toThrow(new RegExp(`overrides\\.a\\.${option} is not a known option`));
      const lazy = breakerRegistry({
        bus: createBus(),
        policies: false,
        overrides: () => ({ [option]: value }) as never,
      });
      expect(() => lazy.get('a')).toThrow(new RegExp(`overrides\\("a"\\)\\.${option} is not a known option`));
    }
    // What a key may set still applies.
    const hosts = breakerRegistry({ bus: createBus(), policies: false, overrides: { a: { openFor: 5 } } });
    expect(hosts.get('a').state).toBe('closed');
  });

  it('under maxKeys pressure the least recently used goes: not a breaker called through a reference held', async () => {
    const clock = new ManualClock(0);
    const hosts = breakerRegistry({ clock, bus: createBus(), policies: false, maxKeys: 3 });
    const held = hosts.get('held');
    for (let i = 0; i < 50; i++) {
      await clock.advance(2_000);
      await held.execute(() => 'ok');
      hosts.get(`fresh-${i}`); // a stream of other keys
    }
    expect(hosts.has('held')).toBe(true);
    await expect(held.execute(() => 'ok')).resolves.toBe('ok');
    expect(hosts.get('held')).toBe(held);
  });

  it('on the real clock (calls that read no clock), a breaker called through a reference held is not dropped as idle', async () => {
    const hosts = breakerRegistry({ bus: createBus(), policies: false, idleTtl: 200 });
    const held = hosts.get('held');
    // Past 32 calls a slice most successes read no clock: the registry's next look counts them.
    for (let i = 0; i < 40; i++) await held.execute(() => 'ok');
    const until = performance.now() + 500;
    while (performance.now() < until) {
      for (let i = 0; i < 20; i++) await held.execute(() => 'ok');
      hosts.prune();
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await expect(held.execute(() => 'ok')).resolves.toBe('ok');
    expect(hosts.get('held')).toBe(held);
    // Unused, it goes: an untimed call's time is taken when the registry next looks, so within twice idleTtl.
    for (let i = 0; i < 14; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      hosts.prune();
    }
    expect(hosts.has('held')).toBe(false);
  });

  it("maxProbes 2: a probe whose outcome isFailure says 'ignored' frees its slot and its start; one out past maxWait is still given up", async () => {
    const clock = new ManualClock(0);
    const bus = createBus();
    const codes: unknown[] = [];
    bus.on('breaker.open', (e) => codes.push(e.code));
    const breaker = circuitBreaker({
      clock,
      bus,
      policies: false,
      openFor: 1_000,
      halfOpen: { maxProbes: 2, maxWait: 60_000 },
      isFailure: (settled) => (settled.ok ? (settled.result === 'skip' ? 'ignored' : 'success') : 'failure'),
    });
    breaker.open();
    await clock.advance(1_000);
    let answer: (v: string) => void = () => undefined;
    const first = breaker.execute(() => new Promise<string>((resolve) => (answer = resolve))); // t=1s
    await clock.advance(30_000);
    void breaker.execute(() => new Promise<string>(() => undefined)).catch(() => undefined); // hangs, t=31s
    await clock.advance(10_000);
    answer('skip'); // t=41s: ignored
    await first;
    await clock.advance(49_000); // t=90s: the hung one out 59 s
    void breaker.execute(() => new Promise<string>(() => undefined)).catch(() => undefined); // its slot was freed
    expect(breaker.snapshot().probes.inFlight).toBe(2);
    await breaker.execute(() => 'x').catch(() => undefined); // refused: both slots taken, none hung
    expect(codes).toEqual([undefined]);
    await clock.advance(1_000); // t=91s: the hung one out 60 s
    await breaker.execute(() => 'x').catch(() => undefined);
    expect(codes).toEqual([undefined, 'E_PROBE_HUNG']);
  });
});
