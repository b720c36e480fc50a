import { DisposedError, HoldfastConfigError } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { type FailoverOptions, failover } from '../src/index.js';
import { harness } from './support.js';

function set(names: string[], options: Partial<FailoverOptions<string>> = {}) {
  const h = harness();
  const api = failover<string>({ clock: h.clock, bus: h.bus, endpoints: names, retry: false, ...options });
  const picks = async (n: number) => {
    const seen = new Set<string>();
    for (let i = 0; i < n; i++) seen.add(await api.execute((e) => e.name));
    return [...seen].sort();
  };
  return { ...h, api, picks };
}

describe('eject(name, { durationMs, reason }) and restore(name)', () => {
  it('takes an endpoint out for the time given, says why, then probes it back with one call', async () => {
    const { api, clock, of, picks } = set(['a', 'b', 'c']);
    expect(api.eject('b', { durationMs: 5_000, reason: 'anomaly' })).toBe(true);
    expect(of('failover.eject')).toEqual([
      {
        type: 'failover.eject',
        source: 'failover',
        time: 1_000_000,
        endpoint: 'b',
        until: 1_005_000,
        ejections: 1,
        reason: 'anomaly',
      },
    ]);
    expect(api.snapshot().endpoints[1]).toMatchObject({
      ejection: 'ejected',
      ejectedUntil: 1_005_000,
      ejectionReason: 'anomaly',
      role: 'member',
    });
    expect(await picks(30)).toEqual(['a', 'c']);
    await clock.advance(5_000);
    // Still out, for the same reason, until a probe passes.
    expect(api.snapshot().endpoints[1]).toMatchObject({ ejection: 'probe', ejectionReason: 'anomaly' });
    // The first call after the time is up proves it, and it is back in the rotation.
    expect(await api.execute((e) => e.name)).toBe('b');
    expect(api.snapshot().endpoints[1]).toMatchObject({ ejection: 'none', ejectionReason: null });
    expect(of('failover.restore')).toMatchObject([{ endpoint: 'b', time: 1_005_000 }]);
    expect(await picks(30)).toEqual(['a', 'b', 'c']);
  });

  it('restore(name) takes it back at once; restoring one that is not out changes nothing', async () => {
    const { api, of, picks } = set(['a', 'b']);
    api.eject('a', { durationMs: 60_000 });
    expect(of('failover.eject')[0]?.reason).toBe('manual');
    expect(await picks(10)).toEqual(['b']);
    expect(api.restore('a')).toBe(true);
    expect(api.restore('a')).toBe(false);
    expect(of('failover.restore')).toHaveLength(1);
    expect(await picks(10)).toEqual(['a', 'b']);
  });

  it('does not eject a drained endpoint: it takes no calls, and the drain stays the operator’s', async () => {
    const { api, of, picks } = set(['a', 'b', 'c']);
    await api.drain('b');
    expect(api.eject('b', { durationMs: 5_000, reason: 'anomaly' })).toBe(false);
    expect(of('failover.eject')).toEqual([]);
    expect(api.snapshot().endpoints[1]).toMatchObject({ role: 'drained', ejection: 'none', ejectionReason: null });
    api.undrain('b');
    expect(await picks(30)).toEqual(['a', 'b', 'c']);
  });

  it('a later eject() of an endpoint out sets its reason anew', () => {
    const { api } = set(['a', 'b', 'c']);
    api.eject('a', { durationMs: 5_000, reason: 'anomaly' });
    api.eject('a', { durationMs: 5_000, reason: 'maintenance' });
    expect(api.snapshot().endpoints[0]).toMatchObject({ ejection: 'ejected', ejectionReason: 'maintenance' });
  });

  it('never ejects the last endpoint that takes calls, nor more than ejection.maxShare of the set', async () => {
    const two = set(['a', 'b']);
    expect(two.api.eject('a', { durationMs: 1_000 })).toBe(true);
    expect(two.api.eject('b', { durationMs: 1_000 })).toBe(false); // the last one left
    expect(two.of('failover.eject').map((e) => e.endpoint)).toEqual(['a']);

    const one = set(['only']);
    expect(one.api.eject('only', { durationMs: 1_000 })).toBe(false);
    expect(await one.picks(3)).toEqual(['only']);

    // Five endpoints, maxShare 0.5: two out at most, whoever asks.
    const five = set(['a', 'b', 'c', 'd', 'e'], { ejection: { maxShare: 0.5 } });
    expect(['a', 'b', 'c', 'd'].map((n) => five.api.eject(n, { durationMs: 1_000 }))).toEqual([
      true,
      true,
      false,
      false,
    ]);
    // One already out may be ejected again (its time starts over): it takes no more share.
    await five.clock.advance(500);
    expect(five.api.eject('a', { durationMs: 1_000 })).toBe(true);
    expect(five.api.snapshot().endpoints[0]?.ejectedUntil).toBe(1_001_500);
    expect(await five.picks(40)).toEqual(['c', 'd', 'e']);

    // Drained or unhealthy endpoints do not count as ones left to take calls.
    const drained = set(['a', 'b', 'c']);
    await drained.api.drain('c');
    expect(drained.api.eject('a', { durationMs: 1_000 })).toBe(true);
    expect(drained.api.eject('b', { durationMs: 1_000 })).toBe(false);
  });

  it('shares the count with outlier ejection: an endpoint ejected by hand blocks one for failures past the share', async () => {
    const { api, of } = set(['a', 'b'], { ejection: { consecutiveFailures: 2, maxShare: 0.5 } });
    api.eject('a', { durationMs: 10_000 });
    for (let i = 0; i < 4; i++) {
      await api
        .execute(() => {
          throw new Error('down');
        })
        .catch(() => undefined);
    }
    expect(of('failover.eject').map((e) => `${e.endpoint}:${e.reason}`)).toEqual(['a:manual']);
  });

  it('with ejection off, an endpoint ejected by hand still comes back through its probe', async () => {
    const { api, clock, of } = set(['a', 'b'], { ejection: false });
    expect(api.eject('a', { durationMs: 1_000 })).toBe(true);
    await clock.advance(1_000);
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) seen.push(await api.execute((e) => e.name));
    expect(seen[0]).toBe('a');
    expect(seen).toContain('a');
    expect(of('failover.restore')).toMatchObject([{ endpoint: 'a' }]);
  });

  it('counts ejections in a row: again from the probe is the next one, again while out only starts the time over', async () => {
    const { api, clock, of } = set(['a', 'b', 'c']);
    api.eject('b', { durationMs: 1_000 });
    api.eject('b', { durationMs: 2_000 }); // still out: the same ejection, longer
    await clock.advance(2_000);
    expect(api.snapshot().endpoints[1]?.ejection).toBe('probe');
    api.eject('b', { durationMs: 1_000 }); // its time was over, and it had not proved itself
    expect(of('failover.eject').map((e) => [e.until - e.time, e.ejections])).toEqual([
      [1_000, 1],
      [2_000, 1],
      [1_000, 2],
    ]);
    expect(api.snapshot().endpoints[1]).toMatchObject({ ejection: 'ejected', ejections: 2 });
  });

  it('validates its options with zod, naming the path; an unknown name is a HoldfastConfigError naming it', () => {
    const { api } = set(['a', 'b']);
    const error = (options: unknown) => {
      try {
        api.eject('a', options as never);
      } catch (e) {
        return e as HoldfastConfigError;
      }
      throw new Error('no error');
    };
    expect(error({})).toBeInstanceOf(HoldfastConfigError);
    expect(error({}).issues[0]?.path).toBe('durationMs');
    expect(error({ durationMs: 0 }).message).toMatch(/^failover\.eject: durationMs /);
    expect(error({ durationMs: Number.POSITIVE_INFINITY }).issues[0]?.path).toBe('durationMs');
    expect(error({ durationMs: 2 ** 31 }).issues[0]?.path).toBe('durationMs');
    expect(error({ durationMs: 10, reason: '' }).issues[0]?.path).toBe('reason');
    expect(error({ durationMs: 10, why: 'x' }).issues[0]).toMatchObject({
      path: 'why',
      message: 'is not a known option',
    });
    expect(error(undefined)).toBeInstanceOf(HoldfastConfigError);
    expect(() => api.eject('nope', { durationMs: 10 })).toThrow(HoldfastConfigError);
    expect(() => api.restore('nope')).toThrow('name is not an endpoint of this set (got "nope")');
    expect(api.snapshot().endpoints.every((e) => e.ejection === 'none')).toBe(true);
    api.dispose();
    expect(() => api.eject('a', { durationMs: 10 })).toThrow(DisposedError);
    expect(() => api.restore('a')).toThrow(DisposedError);
  });
});
