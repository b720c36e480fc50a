import { describe, expect, it } from 'vitest';
import { failover } from '../src/index.js';
import { harness } from './support.js';

/** A set whose endpoints fail while `down[name]` is set; no retries, so every outcome is seen. */
function outliers(names: string[], ejection: Record<string, number>) {
  const h = harness();
  const down: Record<string, boolean> = {};
  const set = failover({
    clock: h.clock,
    bus: h.bus,
    endpoints: names,
    retry: false,
    panicThreshold: 0,
    ejection: { consecutiveFailures: 3, baseTime: 1_000, maxTime: 8_000, maxShare: 0.5, ...ejection },
  });
  const call = () =>
    set.execute(async (e) => {
      if (down[e.name]) throw new Error(`${e.name} is down`);
      return e.name;
    });
  /** Calls until `n` calls reached `name` (round-robin spreads them). */
  const hit = async (name: string, n: number) => {
    const seen: string[] = [];
    for (let reached = 0; reached < n; ) {
      const picked = await call().catch((error: Error) => error.message.split(' ')[0] as string);
      seen.push(picked);
      if (picked === name) reached++;
    }
    return seen;
  };
  return { ...h, down, set, call, hit };
}

describe('passive outlier ejection', () => {
  it('ejects after N consecutive failures; a success in between starts the count over', async () => {
    const { set, down, hit, of, call } = outliers(['a', 'b'], {});
    down.a = true;
    await hit('a', 2);
    down.a = false;
    await hit('a', 1);
    down.a = true;
    await hit('a', 2);
    expect(of('failover.eject')).toEqual([]);
    await hit('a', 1);
    expect(of('failover.eject')).toMatchObject([{ endpoint: 'a', ejections: 1, until: 1_000_000 + 1_000 }]);
    const picks = new Set<string>();
    for (let i = 0; i < 10; i++) picks.add(await call());
    expect([...picks]).toEqual(['b']);
    expect(set.snapshot().endpoints[0]).toMatchObject({
      ejection: 'ejected',
      ejectedUntil: 1_001_000,
      ejectionReason: 'failures',
      available: false,
    });
  });

  it('ejects for longer each time in a row, up to the cap, and restores after a passing probe', async () => {
    const { set, down, clock, hit, of } = outliers(['a', 'b'], {});
    down.a = true;
    await hit('a', 3);
    const durations: number[] = [];
    for (let i = 0; i < 5; i++) {
      const last = of('failover.eject').at(-1);
      durations.push((last?.until ?? 0) - (last?.time ?? 0));
      await clock.advance((last?.until ?? 0) - clock.now());
      // The probe fails: ejected again at once, for longer.
      await hit('a', 1);
    }
    expect(durations).toEqual([1_000, 2_000, 4_000, 8_000, 8_000]);
    expect(of('failover.eject').map((e) => e.ejections)).toEqual([1, 2, 3, 4, 5, 6]);
    down.a = false;
    await clock.advance(8_000);
    expect(set.snapshot().endpoints[0]?.ejection).toBe('probe');
    await hit('a', 1);
    expect(of('failover.restore')).toMatchObject([{ endpoint: 'a' }]);
    expect(set.snapshot().endpoints[0]).toMatchObject({ ejection: 'none', ejectedUntil: null, available: true });
  });

  it('forgives one ejection per base time spent back in service', async () => {
    const { down, clock, hit, of } = outliers(['a', 'b'], {});
    down.a = true;
    await hit('a', 3);
    await clock.advance(1_000);
    await hit('a', 1); // failed probe: second ejection, 2 s
    await clock.advance(2_000);
    down.a = false;
    await hit('a', 1); // restored
    await clock.advance(10_000);
    down.a = true;
    await hit('a', 3);
    expect(of('failover.eject').map((e) => e.ejections)).toEqual([1, 2, 1]);
  });

  it('ejects at most maxShare of the endpoints', async () => {
    const { down, hit, of, set } = outliers(['a', 'b', 'c', 'd'], { maxShare: 0.5 });
    down.a = true;
    down.b = true;
    down.c = true;
    // Round-robin: a, b and c each fail 3 times in the first 12 calls, then c fails on.
    await hit('d', 10);
    expect(of('failover.eject').map((e) => e.endpoint)).toEqual(['a', 'b']);
    expect(set.snapshot().endpoints.map((e) => e.ejection)).toEqual(['ejected', 'ejected', 'none', 'none']);
  });

  it('can always eject one endpoint, even with maxShare 0 or a single endpoint', async () => {
    for (const names of [['a', 'b'], ['a']]) {
      const { down, hit, of, set } = outliers(names, { maxShare: 0 });
      for (const n of names) down[n] = true;
      await hit('a', 3);
      if (names.length > 1) await hit('b', 3);
      expect(of('failover.eject').map((e) => e.endpoint)).toEqual(['a']);
      set.dispose();
    }
  });

  it('lets one probe at a time through to an ejected endpoint', async () => {
    const { set, down, clock, hit, of } = outliers(['a', 'b'], {});
    down.a = true;
    await hit('a', 3);
    await clock.advance(1_000);
    down.a = false;
    const release: (() => void)[] = [];
    const reached: string[] = [];
    const held = Array.from({ length: 10 }, () =>
      set.execute((e) => {
        reached.push(e.name);
        return new Promise<void>((r) => release.push(r));
      }),
    );
    expect(reached.filter((n) => n === 'a')).toHaveLength(1);
    expect(set.snapshot().endpoints[0]).toMatchObject({ ejection: 'probe', inFlight: 1 });
    for (const r of release) r();
    await Promise.all(held);
    expect(of('failover.restore')).toHaveLength(1);
    const after: string[] = [];
    for (let i = 0; i < 4; i++) after.push(await set.execute(async (e) => e.name));
    expect(after.sort()).toEqual(['a', 'a', 'b', 'b']);
  });

  it('a probe the caller aborted proves nothing: the endpoint waits for the next one', async () => {
    const { set, down, clock, hit, of } = outliers(['a', 'b'], {});
    down.a = true;
    await hit('a', 3);
    await clock.advance(1_000);
    const controller = new AbortController();
    const probe = set.execute(
      (_e, { signal }) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))),
      {
        signal: controller.signal,
      },
    );
    controller.abort(new Error('client went away'));
    await expect(probe).rejects.toThrow('client went away');
    expect(set.snapshot().endpoints[0]).toMatchObject({ ejection: 'probe', inFlight: 0, ejections: 1 });
    expect(of('failover.eject')).toHaveLength(1);
  });

  it('does nothing with ejection: false', async () => {
    const h = harness();
    const set = failover({ clock: h.clock, bus: h.bus, endpoints: ['a', 'b'], ejection: false, retry: false });
    for (let i = 0; i < 50; i++) await set.execute(() => Promise.reject(new Error('x'))).catch(() => {});
    expect(h.of('failover.eject')).toEqual([]);
  });

  it("counts only what isFailure says is the endpoint's fault", async () => {
    const h = harness();
    const notFound = Object.assign(new Error('HTTP 404'), { status: 404 });
    const set = failover({
      clock: h.clock,
      bus: h.bus,
      endpoints: ['a', 'b'],
      retry: { idempotent: true },
      ejection: { consecutiveFailures: 2 },
      isFailure: (error) => (error as { status?: number }).status !== 404,
    });
    const tried: string[] = [];
    for (let i = 0; i < 6; i++) {
      await set
        .execute((e) => {
          tried.push(e.name);
          return Promise.reject(notFound);
        })
        .catch(() => {});
    }
    // Not the endpoint's fault: never ejected, and not retried elsewhere either.
    expect(h.of('failover.eject')).toEqual([]);
    expect(tried).toHaveLength(6);
  });

  it('consistent-hash probes an ejected endpoint only with keys that belong to it', async () => {
    const h = harness();
    const down: Record<string, boolean> = { b: true };
    const set = failover({
      clock: h.clock,
      bus: h.bus,
      balancer: 'consistent-hash',
      endpoints: ['a', 'b', 'c'],
      retry: false,
      ejection: { consecutiveFailures: 1, baseTime: 1_000 },
    });
    const owner = new Map<string, string>();
    for (let i = 0; i < 300; i++) {
      const key = `k${i}`;
      owner.set(key, await set.execute(async (e) => e.name, { key }));
    }
    const ofB = [...owner].filter(([, o]) => o === 'b').map(([k]) => k);
    const notB = [...owner].filter(([, o]) => o !== 'b').map(([k]) => k);
    await set
      .execute(async (e) => (down[e.name] ? Promise.reject(new Error('down')) : e.name), { key: ofB[0] })
      .catch(() => {});
    expect(h.of('failover.eject')).toMatchObject([{ endpoint: 'b' }]);
    await h.clock.advance(1_000);
    down.b = false;
    // Keys of a and c stay where they are while b waits for its probe...
    for (const key of notB.slice(0, 20)) expect(await set.execute(async (e) => e.name, { key })).toBe(owner.get(key));
    expect(set.snapshot().endpoints[1]?.ejection).toBe('probe');
    // ...and one of b's own keys brings it back.
    expect(await set.execute(async (e) => e.name, { key: ofB[1] })).toBe('b');
    expect(h.of('failover.restore')).toMatchObject([{ endpoint: 'b' }]);
  });
});
