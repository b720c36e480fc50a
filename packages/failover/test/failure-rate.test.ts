import { HoldfastConfigError } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { failover } from '../src/index.js';
import { harness } from './support.js';

/**
 * A set of round-robin endpoints, no retries (every outcome seen), one call every 10 ms. An
 * endpoint in `flaky` fails every other call it takes: never `consecutiveFailures` in a row.
 */
function rig(names: string[], flaky: string[], ejection: Record<string, unknown>) {
  const h = harness();
  const set = failover({
    clock: h.clock,
    bus: h.bus,
    endpoints: names,
    retry: false,
    panicThreshold: 0,
    policies: false,
    ejection: { consecutiveFailures: 5, baseTime: 60_000, maxTime: 60_000, maxShare: 0.5, ...ejection },
  });
  const taken: Record<string, number> = {};
  const call = () =>
    set.execute(async (e) => {
      const n = (taken[e.name] = (taken[e.name] ?? 0) + 1);
      if (flaky.includes(e.name) && n % 2 === 0) throw new Error(`${e.name}: HTTP 503`);
      return e.name;
    });
  /** `n` calls, 10 ms apart; how many failed. */
  const run = async (n: number) => {
    let failed = 0;
    for (let i = 0; i < n; i++) {
      await call().catch(() => failed++);
      await h.clock.advance(10);
    }
    return failed;
  };
  return { ...h, set, run, taken };
}

// A threshold below one in two: the endpoint that fails every other call is over it in every interval.
const rate = { threshold: 0.4, requestVolume: 20, minimumHosts: 3, interval: 1_000 };

describe('failure-rate ejection (opt-in)', () => {
  it('ejects an endpoint of three that fails half its calls; the healthy two never are', async () => {
    const { set, run, of, taken } = rig(['a', 'b', 'c'], ['b'], { failureRate: rate });
    // One interval: 100 calls, 33 or 34 each, b failing every other one (never 5 in a row).
    expect(await run(100)).toBe(16);
    expect(of('failover.eject')).toEqual([]);
    await run(1); // the first call after the interval judges it
    expect(of('failover.eject')).toMatchObject([{ endpoint: 'b', ejections: 1, reason: 'failureRate' }]);
    expect(set.snapshot().endpoints[1]).toMatchObject({ ejection: 'ejected', ejectionReason: 'failureRate' });
    const before = taken.b;
    // 10 more intervals of traffic on a and c (b is out for 60 s): neither is ever ejected.
    expect(await run(1_000)).toBe(0);
    expect(taken.b).toBe(before);
    expect(of('failover.eject').map((e) => e.endpoint)).toEqual(['b']);
  });

  it('judges an interval at the first call after it, and drops one that ended more than an interval ago', async () => {
    const { clock, run, of } = rig(['a', 'b', 'c'], ['b'], { failureRate: rate });
    expect(await run(100)).toBe(16);
    await clock.advance(2_000); // idle: the interval with b's failures ended 1.01 s before the next call
    await run(1);
    expect(of('failover.eject')).toEqual([]);
    await run(100);
    await run(1);
    expect(of('failover.eject').map((e) => e.endpoint)).toEqual(['b']);
  });

  it('without it (the default), the same endpoint is never ejected: 5 failures never come in a row', async () => {
    const { run, of } = rig(['a', 'b', 'c'], ['b'], {});
    expect(await run(1_000)).toBe(166);
    expect(of('failover.eject')).toEqual([]);
  });

  it('maxShare still holds: two endpoints of three failing half their calls, only one is ejected', async () => {
    const { set, run, of } = rig(['a', 'b', 'c'], ['b', 'c'], { failureRate: rate, maxShare: 0.5 });
    await run(101);
    await run(500);
    expect(of('failover.eject').map((e) => e.endpoint)).toEqual(['b']);
    expect(set.snapshot().endpoints.map((e) => e.ejection)).toEqual(['none', 'ejected', 'none']);
  });

  it('judges no endpoint with fewer than minimumHosts busy enough, nor one below requestVolume', async () => {
    // minimumHosts 4 of a set of three: never.
    const few = rig(['a', 'b', 'c'], ['b'], { failureRate: { ...rate, minimumHosts: 4 } });
    await few.run(600);
    expect(few.of('failover.eject')).toEqual([]);
    // 100 calls an interval, 33 each: below a requestVolume of 40, nobody is judged.
    const quiet = rig(['a', 'b', 'c'], ['b'], { failureRate: { ...rate, requestVolume: 40 } });
    await quiet.run(600);
    expect(quiet.of('failover.eject')).toEqual([]);
  });

  it('refuses bad settings, naming them', () => {
    const bad = (failureRate: unknown) => () =>
      failover({ endpoints: ['a'], policies: false, ejection: { failureRate } as never });
    expect(bad({ threshold: 0 })).toThrow(HoldfastConfigError);
    expect(bad({ threshold: 0 })).toThrow(
      'failover: ejection.failureRate.threshold must be a share of the calls, above 0 and at most 1 (got 0)',
    );
    expect(bad({ threshold: 1.5 })).toThrow(/^failover: ejection\.failureRate\.threshold .* \(got 1\.5\)$/);
    expect(bad({ requestVolume: 0 })).toThrow(/^failover: ejection\.failureRate\.requestVolume .* \(got 0\)$/);
    expect(bad({ interval: -1 })).toThrow(/^failover: ejection\.failureRate\.interval .* \(got -1\)$/);
    expect(bad({ thresold: 0.5 })).toThrow('failover: ejection.failureRate.thresold is not a known option (got 0.5)');
    expect(bad('yes')).toThrow(/^failover: ejection\.failureRate /);
    expect(() => failover({ endpoints: ['a'], policies: false, ejection: { failureRate: {} } })).not.toThrow();
  });
});
