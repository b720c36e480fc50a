import { createBus, HoldfastConfigError, TimeoutError } from '@holdfast/core';
import { retryBudget } from '@holdfast/retry';
import { describe, expect, it } from 'vitest';
import { failover, NoHealthyEndpointError } from '../src/index.js';
import { harness, refused, tally } from './support.js';

const ok = (e: { name: string }) => Promise.resolve(e.name);

describe('retries on another endpoint', () => {
  it('never picks an endpoint named in avoid, and fails when avoid leaves none', async () => {
    const { clock, bus } = harness();
    const set = failover({ clock, bus, endpoints: ['a', 'b', 'c'], ejection: false });
    const picked = new Set<string>();
    for (let i = 0; i < 30; i++) picked.add(await set.execute(ok, { avoid: ['a', 'c'] }));
    expect([...picked]).toEqual(['b']);
    const tried: string[] = [];
    const result = await set.execute(
      (e) => {
        tried.push(e.name);
        return e.name === 'b' ? Promise.reject(refused()) : ok(e);
      },
      { avoid: ['a'] },
    );
    expect(tried).toEqual(['b', 'c']); // a retry also keeps away from the avoided endpoint
    expect(result).toBe('c');
    await expect(set.execute(ok, { avoid: ['a', 'b', 'c'] })).rejects.toBeInstanceOf(NoHealthyEndpointError);
    const all = new Set<string>();
    for (let i = 0; i < 30; i++) all.add(await set.execute(ok, { avoid: [] }));
    expect(all.size).toBe(3);
  });

  it('retries an error that never reached the endpoint on a different one', async () => {
    const { clock, bus, of } = harness();
    const set = failover({ clock, bus, endpoints: ['a', 'b', 'c'], ejection: false });
    const tried: string[] = [];
    const result = await set.execute(async (e, ctx) => {
      tried.push(`${e.name}#${ctx.attempt}`);
      if (e.name === 'a') throw refused();
      return e.name;
    });
    expect(result).toBe('b');
    expect(tried).toEqual(['a#1', 'b#2']);
    expect(of('retry.attempt')).toMatchObject([{ attempt: 2, delay: 0, code: 'TypeError' }]);
  });

  it('does not retry an error that may have reached the endpoint, unless the calls are idempotent', async () => {
    const boom = () => Promise.reject(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));
    const { clock, bus } = harness();
    const plain = failover({ clock, bus, endpoints: ['a', 'b'] });
    let calls = 0;
    await expect(
      plain.execute(() => {
        calls++;
        return boom();
      }),
    ).rejects.toThrow('socket hang up');
    expect(calls).toBe(1);
    const idempotent = failover({ clock, bus, endpoints: ['a', 'b'], retry: { idempotent: true } });
    const tried: string[] = [];
    await expect(
      idempotent.execute((e) => {
        tried.push(e.name);
        return boom();
      }),
    ).rejects.toThrow('socket hang up');
    expect(tried).toEqual(['a', 'b']);
  });

  it('stops after maxAttempts, never tries one endpoint twice, and passes the last error on', async () => {
    const { clock, bus } = harness();
    const set = failover({ clock, bus, endpoints: ['a', 'b', 'c', 'd'], retry: { maxAttempts: 3 }, ejection: false });
    const tried: string[] = [];
    const error = await set
      .execute((e) => {
        tried.push(e.name);
        return Promise.reject(Object.assign(refused(), { message: `down: ${e.name}` }));
      })
      .catch((err: Error) => err);
    expect(tried).toHaveLength(3);
    expect(new Set(tried).size).toBe(3);
    expect((error as Error).message).toBe(`down: ${tried[2]}`);
    const two = failover({ clock, bus, endpoints: ['a', 'b'], retry: { maxAttempts: 5 }, ejection: false });
    tried.length = 0;
    await two
      .execute((e) => {
        tried.push(e.name);
        return Promise.reject(refused());
      })
      .catch(() => {});
    expect(tried).toEqual(['a', 'b']);
  });

  it('follows retryOn when given', async () => {
    const { clock, bus } = harness();
    const set = failover({
      clock,
      bus,
      endpoints: ['a', 'b'],
      retry: { retryOn: (error) => (error as Error).message === 'again' },
    });
    expect(await set.execute(async (e) => (e.name === 'a' ? Promise.reject(new Error('again')) : e.name))).toBe('b');
    await expect(set.execute(() => Promise.reject(refused()))).rejects.toThrow('fetch failed');
  });

  it('keeps a total outage to at most 1.2 backend attempts per call, with the default budget', async () => {
    const { clock, bus, of } = harness();
    const set = failover({ clock, bus, endpoints: ['a', 'b', 'c'], retry: { maxAttempts: 3 }, panic: 'all' });
    let attempts = 0;
    let calls = 0;
    // 200 calls a second for 10 s against three dead endpoints.
    for (let tick = 0; tick < 2_000; tick++) {
      calls++;
      await set
        .execute(() => {
          attempts++;
          return Promise.reject(refused());
        })
        .catch(() => {});
      await clock.advance(5);
    }
    expect(attempts / calls).toBeLessThanOrEqual(1.2);
    expect(attempts / calls).toBeGreaterThan(1);
    expect(of('retry.budgetExhausted').length).toBeGreaterThan(0);
  });

  it('shares a budget from @holdfast/retry between sets', async () => {
    const { clock, bus } = harness();
    const budget = retryBudget({ ratio: 0, minPerSecond: 1, ttl: 1_000, clock });
    const one = failover({ clock, bus, endpoints: ['a', 'b'], retry: { budget }, ejection: false });
    const two = failover({ clock, bus, endpoints: ['c', 'd'], retry: { budget }, ejection: false });
    let attempts = 0;
    const fail = () => {
      attempts++;
      return Promise.reject(refused());
    };
    await one.execute(fail).catch(() => {});
    await two.execute(fail).catch(() => {});
    // One retry a second, shared: the first call got it, the second did not.
    expect(attempts).toBe(3);
  });

  it('moves on after the per-try timeout, and counts the hung call in flight until it settles', async () => {
    const { clock, bus } = harness();
    const set = failover({ clock, bus, endpoints: ['hung', 'fine'], timeout: 100, retry: { idempotent: true } });
    let hungSignal: AbortSignal | undefined;
    const pending = set.execute((e, { signal }) => {
      if (e.name === 'fine') return Promise.resolve('fine');
      hungSignal = signal;
      return new Promise<string>(() => {});
    });
    await clock.advance(100);
    expect(await pending).toBe('fine');
    expect(hungSignal?.reason).toBeInstanceOf(TimeoutError);
    expect(set.snapshot().endpoints[0]).toMatchObject({ name: 'hung', inFlight: 1 });
  });
});

describe('panic in active-active', () => {
  const setup = (panic: 'all' | 'fail-fast') => {
    const h = harness();
    const up: Record<string, boolean> = { a: true, b: true, c: true, d: true };
    const set = failover({
      clock: h.clock,
      bus: h.bus,
      panic,
      panicThreshold: 0.5,
      endpoints: ['a', 'b', 'c', 'd'],
      health: { interval: 1_000, jitter: 0, unhealthyAfter: 1, healthyAfter: 1, check: (e) => up[e.name] },
    });
    return { ...h, up, set };
  };

  it("'all' spreads calls over every endpoint when fewer than the threshold are healthy", async () => {
    const { set, up, clock, of } = setup('all');
    up.a = false;
    up.b = false;
    await clock.advance(0);
    expect(set.snapshot().panic).toBe(false);
    const healthyOnly: string[] = [];
    for (let i = 0; i < 8; i++) healthyOnly.push(await set.execute(ok));
    expect(tally(healthyOnly)).toEqual({ c: 4, d: 4 });
    up.c = false;
    await clock.advance(1_000);
    expect(of('failover.panic')).toMatchObject([{ active: true, healthy: 1, total: 4 }]);
    const all: string[] = [];
    for (let i = 0; i < 8; i++) all.push(await set.execute(ok));
    expect(tally(all)).toEqual({ a: 2, b: 2, c: 2, d: 2 });
    up.c = true;
    await clock.advance(1_000);
    expect(of('failover.panic').at(-1)).toMatchObject({ active: false, healthy: 2, total: 4 });
    set.dispose();
  });

  it("'fail-fast' rejects with NoHealthyEndpointError without touching an endpoint", async () => {
    const { set, up, clock } = setup('fail-fast');
    up.a = false;
    up.b = false;
    up.c = false;
    await clock.advance(0);
    let reached = 0;
    const error = await set.execute(() => ++reached).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NoHealthyEndpointError);
    expect(error).toMatchObject({ code: 'E_NO_HEALTHY_ENDPOINT', healthy: 1, total: 4 });
    expect(reached).toBe(0);
    set.dispose();
  });
});

describe('abort', () => {
  it('settles at once when the caller aborts, without counting it against the endpoint or retrying', async () => {
    const { clock, bus, of } = harness();
    const set = failover({
      clock,
      bus,
      endpoints: ['a', 'b'],
      retry: { idempotent: true },
      ejection: { consecutiveFailures: 1 },
    });
    const controller = new AbortController();
    let seen: AbortSignal | undefined;
    let calls = 0;
    const pending = set.execute(
      (_e, { signal }) => {
        calls++;
        seen = signal;
        return new Promise(() => {});
      },
      { signal: controller.signal },
    );
    controller.abort(new Error('client left'));
    await expect(pending).rejects.toThrow('client left');
    expect(seen?.aborted).toBe(true);
    expect(calls).toBe(1);
    expect(of('failover.eject')).toEqual([]);
  });

  it('rejects before any try when the signal is already aborted', async () => {
    const { clock, bus } = harness();
    const set = failover({ clock, bus, endpoints: ['a'] });
    let calls = 0;
    await expect(set.execute(() => ++calls, { signal: AbortSignal.abort(new Error('early')) })).rejects.toThrow(
      'early',
    );
    expect(calls).toBe(0);
  });
});

describe('drain', () => {
  it('takes no new calls and resolves once the calls in flight have settled', async () => {
    const { clock, bus } = harness();
    const set = failover({ clock, bus, endpoints: ['a', 'b'] });
    let release: () => void = () => {};
    const held = set.execute(() => new Promise<void>((r) => (release = r)));
    let drained = false;
    const draining = set.drain('a').then(() => (drained = true));
    for (let i = 0; i < 4; i++) expect(await set.execute(ok)).toBe('b');
    await clock.advance(0);
    expect(drained).toBe(false);
    expect(set.snapshot().endpoints[0]).toMatchObject({ role: 'drained', inFlight: 1, available: false });
    release();
    await held;
    await draining;
    expect(drained).toBe(true);
    set.undrain('a');
    expect(tally([await set.execute(ok), await set.execute(ok)])).toEqual({ a: 1, b: 1 });
    expect(() => set.undrain('nope')).toThrow('name is not an endpoint of this set (got "nope")');
    // drain() settles later, as documented: a wrong name rejects its promise, never throws.
    await expect(set.drain('nope')).rejects.toMatchObject({ code: 'E_CONFIG' });
  });
});

describe('snapshot and dispose', () => {
  it('gives plain JSON per endpoint: health, ejection, in-flight, EWMA latency and role', async () => {
    const { clock, bus } = harness();
    const set = failover<unknown>({
      clock,
      bus,
      name: 'orders-db',
      mode: 'active-passive',
      endpoints: [
        { name: 'primary', target: 'postgres://db-1', priority: 0 },
        { name: 'standby', target: { pool: true }, priority: 1 },
      ],
    });
    const p = set.execute(async () => {
      await new Promise<void>((r) => clock.setTimeout(r, 40));
    });
    await clock.advance(40);
    await p;
    const snap = set.snapshot();
    expect(JSON.parse(JSON.stringify(snap))).toEqual(snap);
    expect(snap).toEqual({
      name: 'orders-db',
      mode: 'active-passive',
      balancer: 'priority',
      active: 'primary',
      primary: null,
      panic: false,
      splitBrain: null,
      endpoints: [
        {
          name: 'primary',
          target: 'postgres://db-1',
          priority: 0,
          weight: 1,
          role: 'active',
          health: 'healthy',
          available: true,
          ejection: 'none',
          ejectedUntil: null,
          ejectionReason: null,
          ejections: 0,
          inFlight: 0,
          ewma: 40,
          discovered: null,
          token: null,
          lag: null,
        },
        {
          name: 'standby',
          target: null,
          priority: 1,
          weight: 1,
          role: 'standby',
          health: 'healthy',
          available: true,
          ejection: 'none',
          ejectedUntil: null,
          ejectionReason: null,
          ejections: 0,
          inFlight: 0,
          ewma: 0,
          discovered: null,
          token: null,
          lag: null,
        },
      ],
    });
  });

  it('stops every timer on dispose and refuses calls afterwards', async () => {
    const { clock, bus } = harness();
    const set = failover({
      clock,
      bus,
      mode: 'active-passive',
      endpoints: [
        { name: 'p', target: 1, priority: 0 },
        { name: 's', target: 2, priority: 1 },
      ],
      ejection: { consecutiveFailures: 1 },
      health: { interval: 500, check: () => true },
    });
    await set.execute(() => Promise.reject(new Error('x'))).catch(() => {});
    expect(clock.pending).toBeGreaterThan(2);
    set.dispose();
    set.dispose();
    expect(clock.pending).toBe(0);
    await expect(set.execute(ok)).rejects.toMatchObject({ code: 'E_DISPOSED' });
    await expect(set.drain('p')).rejects.toMatchObject({ code: 'E_DISPOSED' });
    expect(() => set.failback()).toThrow(/after dispose/);
  });

  it('a throwing listener never breaks a call', async () => {
    const { clock } = harness();
    const bus = createBus({ onListenerError: () => {} });
    bus.on('*', () => {
      throw new Error('listener');
    });
    const set = failover({ clock, bus, endpoints: ['a', 'b'], ejection: { consecutiveFailures: 1 } });
    expect(await set.execute(async (e) => (e.name === 'a' ? Promise.reject(refused()) : e.name))).toBe('b');
  });
});

describe('options', () => {
  const bad = (options: unknown) => {
    try {
      failover(options as Parameters<typeof failover>[0]);
    } catch (error) {
      expect(error).toBeInstanceOf(HoldfastConfigError);
      return (error as Error).message;
    }
    throw new Error('no error thrown');
  };

  it('names the bad path and value', () => {
    expect(bad({ endpoints: [] })).toMatch(/^failover: endpoints .*\(got \[\]\)/);
    expect(bad({ endpoints: ['a', { name: 'a', target: 1 }] })).toBe(
      'failover: endpoints.1.name is not unique: endpoint 0 has the same name (got "a")',
    );
    // Two strings: there is no name field to show; it said "(got undefined)" of a name it had.
    expect(bad({ endpoints: ['a', 'b', 'a'] })).toBe(
      'failover: endpoints.2.name is not unique: endpoint 0 has the same name',
    );
    expect(bad({ endpoints: ['a'], ejection: { baseTime: 10_000, maxTime: 1_000 } })).toBe(
      'failover: ejection.maxTime must be >= ejection.baseTime (got 1000)',
    );
    expect(bad({ endpoints: ['a'], health: { check: () => true, interval: -1 } })).toMatch(
      /^failover: health\.interval .* \(got -1\)$/,
    );
    expect(bad({ endpoints: ['a'], health: { interval: 1_000 } })).toMatch(/health\.check must be a function/);
    expect(bad({ endpoints: ['a'], mode: 'active-standby' })).toMatch(/^failover: mode .*\(got "active-standby"\)/);
    expect(bad({ endpoints: ['a'], retries: 3 })).toBe('failover: retries is not a known option (got 3)');
    expect(bad({ endpoints: [{ name: 'a', target: 1, weight: 0 }] })).toMatch(/endpoints\.0\.weight .*\(got 0\)/);
    expect(bad({ endpoints: ['a'], retry: { budget: {} } })).toBe(
      'failover: retry.budget must be a retryBudget() from @holdfast/retry, or false (got {})',
    );
    expect(bad({ endpoints: ['a'], retry: { maxAttempts: 0 } })).toMatch(
      /^failover: retry\.maxAttempts .*>=1 \(got 0\)$/,
    );
    expect(bad({ endpoints: ['a'], ejection: { maxShare: 2 } })).toMatch(
      /^failover: ejection\.maxShare .*<=1 \(got 2\)$/,
    );
  });
});
