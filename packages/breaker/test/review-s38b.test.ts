import { createBus, HoldfastConfigError, ManualClock } from '@holdfast/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { breakerRegistry } from '../src/index.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('review s38b', () => {
  it('maxKeys: with every held breaker called since its last move, eviction drops the MOST recently called one, not the least recently used', async () => {
    const clock = new ManualClock(0);
    // idleTtl large: moveEvery is 1 s, so get() does not reorder within this test.
    const hosts = breakerRegistry({ clock, bus: createBus(), policies: false, maxKeys: 3, idleTtl: 1_000_000 });
    const a = hosts.get('a');
    const b = hosts.get('b');
    const c = hosts.get('c');
    await clock.advance(10);
    await c.execute(() => 'ok'); // c last used at 10: the least recently used
    await clock.advance(10);
    await b.execute(() => 'ok'); // b at 20
    await clock.advance(10);
    await a.execute(() => 'ok'); // a at 30: the most recently used
    await clock.advance(10);
    hosts.get('d'); // t=40: one must go, the least recently used (c); only d was used since a's call
    expect(hosts.has('c')).toBe(false);
    expect(hosts.has('a')).toBe(true);
    await expect(a.execute(() => 'ok')).resolves.toBe('ok');
  });

  it('idleTtl: a breaker called once through a held reference and then quiet for 100x idleTtl survives prune() (dropped far more than idleTtl late)', async () => {
    vi.useFakeTimers();
    // The real clock (untimed successes leave the "called, time not read" marker).
    const hosts = breakerRegistry({ bus: createBus(), policies: false, idleTtl: 1_000 });
    const held = Array.from({ length: 20 }, (_, i) => hosts.get(`host-${i}`));
    for (const breaker of held) {
      // Past the window's full sample, most successes read no clock.
      for (let n = 0; n < 40; n++) await breaker.execute(() => 'ok');
    }
    // Nobody calls anything for 100 s: every breaker has been idle 100x idleTtl.
    vi.advanceTimersByTime(100_000);
    hosts.prune();
    // README: "may be dropped up to idleTtl late, never early" -- all are 99 s past that.
    expect(hosts.size).toBe(0);
  });

  it('overrides as a function returning null: a raw TypeError not naming the key, instead of HoldfastConfigError', () => {
    const hosts = breakerRegistry({
      bus: createBus(),
      policies: false,
      overrides: (() => null) as never,
    });
    let error: unknown;
    try {
      hosts.get('api.example');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(HoldfastConfigError);
    expect(String((error as Error).message)).toContain('api.example');
  });

  it('overrides as an async function (a Promise of settings) is silently ignored: the key gets the defaults', () => {
    const hosts = breakerRegistry({
      bus: createBus(),
      policies: false,
      overrides: (async () => ({ halfOpen: { maxProbes: 5 } })) as never,
    });
    // A bad value (not settings, not undefined) should be refused naming the key, as a bad field is.
    expect(() => hosts.get('api.example')).toThrow(HoldfastConfigError);
  });
});
