import { HoldfastConfigError } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { type Endpoint, failover, NoPrimaryError, type RoleReport } from '../src/index.js';
import { harness, refused } from './support.js';

/** What each named server's role check answers now; `down` throws. */
function servers(initial: Record<string, RoleReport | 'down'>) {
  const now = { ...initial };
  const check = (e: Endpoint) => {
    const r = now[e.name];
    if (r === undefined || r === 'down')
      throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    return r;
  };
  const endpoints = Object.keys(initial).map((name) => ({ name, target: name }));
  return { now, check, endpoints };
}

const primary = (token: unknown): RoleReport => ({ role: 'primary', token });
const replica = (lag?: number): RoleReport => (lag === undefined ? { role: 'replica' } : { role: 'replica', lag });

describe('fencing is sticky', () => {
  it('a primary that lost to a newer token stays fenced when the winner goes, until it reports replica', async () => {
    const { clock, bus, of } = harness();
    const s = servers({ a: primary([1, 100]), b: replica(0) });
    const db = failover({ clock, bus, endpoints: s.endpoints, roles: { check: s.check, interval: 1_000 } });
    await clock.advance(0);
    expect(db.snapshot().primary).toBe('a');
    s.now.b = primary([2, 50]); // b promoted while a still runs: a is stale
    await clock.advance(1_000);
    expect(db.snapshot().primary).toBe('b');
    s.now.b = 'down'; // b dies: a is the only node that claims primary, and still stale
    await clock.advance(3_000);
    const refusedWrite = await db.execute((e) => e.name).catch((e: unknown) => e);
    expect(refusedWrite).toBeInstanceOf(NoPrimaryError);
    expect(db.snapshot()).toMatchObject({ primary: null, endpoints: [{ name: 'a', discovered: 'fenced' }, {}] });
    // A token of its own history, however far it ran ahead, does not lift the fence ...
    s.now.a = primary([1, 10_000]);
    await clock.advance(1_000);
    expect(db.snapshot().primary).toBeNull();
    // ... rebuilt as a replica, it is not fenced any more, and a later promotion makes it primary.
    s.now.a = replica(0);
    await clock.advance(1_000);
    s.now.a = primary([3, 0]);
    await clock.advance(1_000);
    expect(await db.execute((e) => e.name)).toBe('a');
    expect(of('failover.fence').map((e) => [e.endpoint, e.primary])).toEqual([['a', 'b']]);
    db.dispose();
  });

  it('a token newer than the one it lost to lifts the fence at once', async () => {
    const { clock, bus } = harness();
    const s = servers({ a: primary([1, 100]), b: primary([2, 0]) });
    const db = failover({ clock, bus, endpoints: s.endpoints, roles: { check: s.check, interval: 1_000 } });
    await clock.advance(0);
    expect(db.snapshot().primary).toBe('b');
    s.now.b = replica(0);
    s.now.a = primary([3, 0]);
    await clock.advance(1_000);
    expect(await db.execute((e) => e.name)).toBe('a');
    db.dispose();
  });

  it('a compare that throws or answers NaN orders nothing: no write goes to either claimant', async () => {
    for (const compare of [
      () => {
        throw new TypeError('bad token');
      },
      () => Number.NaN,
    ]) {
      const { clock, bus } = harness();
      const s = servers({ a: primary([2]), b: primary([1]) });
      const db = failover({ clock, bus, endpoints: s.endpoints, roles: { check: s.check, compare, interval: 1_000 } });
      await clock.advance(0);
      await expect(db.execute((e) => e.name)).rejects.toBeInstanceOf(NoPrimaryError);
      expect(db.snapshot().endpoints.map((e) => e.discovered)).toEqual(['fenced', 'fenced']);
      db.dispose();
    }
  });
});

describe('maxLag and an unknown lag', () => {
  it('with maxLag, a replica that reports no lag takes no reads; without, it does', async () => {
    for (const maxLag of [1_000, undefined]) {
      const { clock, bus } = harness();
      const s = servers({ p: primary([1]), fresh: replica(10), unknown: replica() });
      const db = failover({
        clock,
        bus,
        endpoints: s.endpoints,
        roles: { check: s.check, interval: 1_000, ...(maxLag === undefined ? {} : { maxLag }) },
      });
      await clock.advance(0);
      const reads = new Set<string>();
      for (let i = 0; i < 8; i++) reads.add(await db.execute((e) => e.name, { intent: 'read' }));
      expect([...reads].sort()).toEqual(maxLag === undefined ? ['fresh', 'unknown'] : ['fresh']);
      db.dispose();
    }
  });
});

describe('user callbacks that throw never break a call', () => {
  it('a retryOn that throws retries nothing, and the call fails with its own error', async () => {
    const { clock, bus } = harness();
    const api = failover({
      clock,
      bus,
      endpoints: ['a', 'b'],
      retry: {
        retryOn: () => {
          throw new TypeError('bug in retryOn');
        },
      },
    });
    const tries: string[] = [];
    const error = await api
      .execute((e) => {
        tries.push(e.name);
        throw refused();
      })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ message: 'fetch failed' });
    expect(tries).toHaveLength(1);
    api.dispose();
  });

  it('an isFailure that throws counts the error against the endpoint (it is ejected), the call fails with its own error', async () => {
    const { clock, bus, of } = harness();
    const api = failover({
      clock,
      bus,
      endpoints: ['a', 'b', 'c'],
      retry: false,
      ejection: { consecutiveFailures: 2 },
      isFailure: (error) => (error as { response: { status: number } }).response.status >= 500,
    });
    const errors: unknown[] = [];
    for (let i = 0; i < 6; i++) {
      await api
        .execute((e) => {
          if (e.name === 'a') throw new Error('a is down');
          return e.name;
        })
        .catch((e: unknown) => errors.push(e));
    }
    expect(errors.map((e) => (e as Error).message)).toEqual(['a is down', 'a is down']);
    expect(of('failover.eject').map((e) => e.endpoint)).toEqual(['a']);
    api.dispose();
  });
});

describe('secrets in string endpoints', () => {
  it('names a string endpoint by its URL without credentials or secret parameters; calls still get the real URL', async () => {
    const { clock, bus, events } = harness();
    const url = 'https://svc:pa55w0rd@orders.internal/?api_key=k3y-SECRET&region=eu';
    const api = failover({ clock, bus, endpoints: [url, 'http://10.0.0.2:8080'], timeout: 50 });
    expect(api.endpoints.map((e) => e.name)).toEqual([
      'https://***@orders.internal/?api_key=***&region=eu',
      'http://10.0.0.2:8080', // a URL with nothing to hide keeps its exact name
    ]);
    expect(await api.execute((e) => e.target)).toBe(url);
    // Operator calls take the name shown, or the URL as it was given.
    await api.drain(url);
    expect(api.snapshot().endpoints[0]).toMatchObject({ role: 'drained' });
    api.undrain('https://***@orders.internal/?api_key=***&region=eu');
    expect(api.snapshot().endpoints[0]).toMatchObject({ role: 'member' });
    const shown = JSON.stringify([api.snapshot(), events]);
    expect(shown).not.toContain('pa55w0rd');
    expect(shown).not.toContain('k3y-SECRET');
    api.dispose();
  });

  it('a config error about such an endpoint does not print its password', () => {
    const url = 'https://svc:pa55w0rd@orders.internal';
    let error: unknown;
    try {
      failover({ endpoints: [url, 'https://svc:other-pa55w0rd@orders.internal'] }); // the same name twice
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(HoldfastConfigError);
    expect((error as Error).message).toContain('endpoints.1.name is not unique');
    expect((error as Error).message).not.toContain('pa55w0rd');
  });

  it('an unknown name given to an operator call is a HoldfastConfigError, redacted too', async () => {
    const api = failover({ endpoints: ['a', 'b'] });
    await expect(api.drain('https://svc:pa55w0rd@x')).rejects.toSatisfy(
      (e) => e instanceof HoldfastConfigError && !(e as Error).message.includes('pa55w0rd'),
    );
    expect(() => api.undrain('nope')).toThrow(HoldfastConfigError);
    api.dispose();
  });
});

describe('a hung probe with ejection off', () => {
  it('an endpoint taken out by eject() whose probe hung for its ejection time and at least 10 s is out again for twice as long, then probed', async () => {
    const { clock, bus } = harness();
    const api = failover({ clock, bus, endpoints: ['a', 'b'], ejection: false, retry: false });
    expect(api.eject('a', { durationMs: 1_000 })).toBe(true);
    await clock.advance(1_000);
    let hang = true;
    const seen: string[] = [];
    const call = () =>
      api.execute((e) => {
        seen.push(e.name);
        return e.name === 'a' && hang ? new Promise<string>(() => {}) : e.name;
      });
    void call(); // the probe: hangs
    await clock.advance(1_000);
    expect(api.snapshot().endpoints[0]).toMatchObject({ ejection: 'probe' }); // slow is not hung yet
    await clock.advance(9_000); // unanswered for 10 s: hung, so failed: out for twice its last time
    hang = false;
    seen.length = 0;
    expect(api.snapshot().endpoints[0]).toMatchObject({ ejection: 'ejected' });
    for (let i = 0; i < 3; i++) await call();
    expect(seen).toEqual(['b', 'b', 'b']);
    await clock.advance(2_000);
    for (let i = 0; i < 3; i++) await call();
    expect(seen[3]).toBe('a');
    expect(api.snapshot().endpoints[0]).toMatchObject({ ejection: 'none' });
    api.dispose();
  });
});
