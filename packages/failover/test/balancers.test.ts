import { describe, expect, it } from 'vitest';
import { failover } from '../src/index.js';
import { harness, seeded, tally } from './support.js';

const ok = (e: { name: string }) => Promise.resolve(e.name);

describe('round-robin', () => {
  it('gives each endpoint exactly its weight in every run of sum(weights) calls, interleaved', async () => {
    const { clock, bus } = harness();
    const set = failover({
      clock,
      bus,
      endpoints: [
        { name: 'a', target: 1, weight: 5 },
        { name: 'b', target: 2, weight: 1 },
        { name: 'c', target: 3, weight: 1 },
      ],
    });
    const picks: string[] = [];
    for (let i = 0; i < 700; i++) picks.push(await set.execute(ok));
    for (let run = 0; run < 100; run++) {
      expect(tally(picks.slice(run * 7, run * 7 + 7))).toEqual({ a: 5, b: 1, c: 1 });
    }
    // Smooth: the heavy endpoint never takes more than 3 in a row out of 5 per 7.
    expect(picks.slice(0, 7).join('')).toBe('aabacaa');
  });

  it('spreads equally without weights', async () => {
    const { clock, bus } = harness();
    const set = failover({ clock, bus, endpoints: ['x', 'y', 'z'] });
    const picks: string[] = [];
    for (let i = 0; i < 300; i++) picks.push(await set.execute(ok));
    expect(tally(picks)).toEqual({ x: 100, y: 100, z: 100 });
  });
});

describe('least-connections (power of two choices)', () => {
  it('prefers idle endpoints over busy ones', async () => {
    const { clock, bus, random } = harness();
    const set = failover({ clock, bus, random, balancer: 'least-connections', endpoints: ['a', 'b', 'c', 'd'] });
    // Hold 20 calls open on 'a'.
    const release: (() => void)[] = [];
    const held: Promise<unknown>[] = [];
    set.undrain('a');
    await set.drain('b');
    await set.drain('c');
    await set.drain('d');
    for (let i = 0; i < 20; i++) {
      held.push(set.execute(() => new Promise<void>((resolve) => release.push(resolve))));
    }
    set.undrain('b');
    set.undrain('c');
    set.undrain('d');
    expect(set.snapshot().endpoints.map((e) => e.inFlight)).toEqual([20, 0, 0, 0]);
    const picks: string[] = [];
    for (let i = 0; i < 300; i++) picks.push(await set.execute(ok));
    // 'a' wins a pair only against another endpoint with 20 in flight: never.
    expect(tally(picks).a).toBeUndefined();
    for (const r of release) r();
    await Promise.all(held);
  });

  it('balances concurrent calls by what each endpoint has in flight', async () => {
    const { clock, bus, random } = harness();
    const set = failover({ clock, bus, random, balancer: 'least-connections', endpoints: ['a', 'b', 'c'] });
    const release: (() => void)[] = [];
    const held: Promise<unknown>[] = [];
    for (let i = 0; i < 30; i++) held.push(set.execute(() => new Promise<void>((r) => release.push(r))));
    const loads = set.snapshot().endpoints.map((e) => e.inFlight);
    expect(Math.max(...loads) - Math.min(...loads)).toBeLessThanOrEqual(2);
    for (const r of release) r();
    await Promise.all(held);
  });
});

describe('p2c-ewma', () => {
  it("keeps a failing endpoint's latency average bounded over a long run of failures", async () => {
    const { clock, bus, random } = harness();
    const set = failover({ clock, bus, random, balancer: 'p2c-ewma', endpoints: ['a'], ejection: false, retry: false });
    for (let i = 0; i < 200; i++) {
      const call = set
        .execute(async () => {
          await new Promise<void>((r) => clock.setTimeout(r, 10));
          throw new Error('down');
        })
        .catch(() => undefined);
      await clock.advance(10);
      await call;
    }
    const ewmas = set.snapshot().endpoints.map((e) => e.ewma);
    // Each failure doubles the average; unbounded, 200 of them reached 1e15 and more.
    for (const ewma of ewmas) expect(ewma).toBeLessThanOrEqual(60_000);
    set.dispose();
  });

  it('moves at least 80% of traffic off an endpoint made 10x slower, within 2 s', async () => {
    const { clock, bus, random } = harness();
    const latency: Record<string, number> = { a: 10, b: 10, c: 10 };
    const set = failover({ clock, bus, random, balancer: 'p2c-ewma', endpoints: ['a', 'b', 'c'], decay: 10_000 });
    const call = async () => {
      const picked = set.execute(async (e) => {
        await new Promise<void>((r) => clock.setTimeout(r, latency[e.name] ?? 0));
        return e.name;
      });
      await clock.advance(latency.a ?? 0);
      await clock.advance(100);
      return picked;
    };
    const before: string[] = [];
    for (let i = 0; i < 60; i++) before.push(await call());
    expect(tally(before).a).toBeGreaterThan(10);
    latency.a = 100;
    // 2 s of sequential traffic: about 18 calls at 110 ms each.
    const start = clock.now();
    const after: string[] = [];
    while (clock.now() - start < 2_000) after.push(await call());
    expect((tally(after).a ?? 0) / after.length).toBeLessThanOrEqual(0.2);
  });

  it('tries a once-slow endpoint again after its latency average fades', async () => {
    const { clock, bus, random } = harness();
    const set = failover({ clock, bus, random, balancer: 'p2c-ewma', endpoints: ['a', 'b'], decay: 1_000 });
    const timed = async () => {
      const p = set.execute(async (e) => {
        await new Promise<void>((r) => clock.setTimeout(r, e.name === 'a' ? 500 : 5));
        return e.name;
      });
      await clock.advance(500);
      return p;
    };
    await set.drain('b');
    expect(await timed()).toBe('a');
    set.undrain('b');
    expect(set.snapshot().endpoints[0]?.ewma).toBe(500);
    expect(await timed()).toBe('b');
    expect(await timed()).toBe('b');
    // 30 decay constants later both averages are near zero and 'a' is back in the draw.
    await clock.advance(30_000);
    expect(set.snapshot().endpoints[0]?.ewma).toBeLessThan(0.01);
    const next = [await timed(), await timed()];
    expect(next).toContain('a');
  });
});

describe('consistent-hash', () => {
  const names = Array.from({ length: 10 }, (_, i) => `node-${i}`);
  const keys = Array.from({ length: 50_000 }, (_, i) => `user-${i}`);

  async function assign(set: {
    execute: (fn: (e: { name: string }) => Promise<string>, o: { key: string }) => Promise<string>;
  }) {
    const out = new Map<string, string>();
    for (const key of keys) out.set(key, await set.execute(ok, { key }));
    return out;
  }

  it('sends the same key to the same endpoint, and spreads keys evenly', async () => {
    const { clock, bus } = harness();
    const set = failover({ clock, bus, balancer: 'consistent-hash', endpoints: names });
    const first = await assign(set);
    const second = await assign(set);
    expect(second).toEqual(first);
    const shares = Object.values(tally([...first.values()])).map((n) => n / keys.length);
    for (const s of shares) expect(Math.abs(s - 0.1)).toBeLessThan(0.01);
  });

  it('removing 1 of N endpoints remaps at most 1/N + 1% of keys, and only its own', async () => {
    const { clock, bus } = harness();
    const set = failover({ clock, bus, balancer: 'consistent-hash', endpoints: names, panicThreshold: 0 });
    const before = await assign(set);
    await set.drain('node-3');
    const after = await assign(set);
    let moved = 0;
    for (const key of keys) {
      if (before.get(key) !== after.get(key)) {
        moved++;
        expect(before.get(key)).toBe('node-3');
      }
    }
    expect(moved / keys.length).toBeLessThanOrEqual(1 / names.length + 0.01);
    set.undrain('node-3');
    expect(await assign(set)).toEqual(before);
  });

  it('follows weights', async () => {
    const { clock, bus } = harness();
    const set = failover({
      clock,
      bus,
      balancer: 'consistent-hash',
      endpoints: [
        { name: 'big', target: 0, weight: 3 },
        { name: 'small', target: 0, weight: 1 },
      ],
    });
    const share = (tally([...(await assign(set)).values()]).big ?? 0) / keys.length;
    expect(share).toBeGreaterThan(0.73);
    expect(share).toBeLessThan(0.77);
  });

  // From plain JavaScript (no type check), a key given as an object hashed as '[object Object]':
  // every such caller landed on one endpoint. It is refused, no endpoint touched.
  it('refuses a key that is not a string or a number, naming the option; numbers hash as their digits', async () => {
    const { clock, bus } = harness();
    const set = failover({ clock, bus, balancer: 'consistent-hash', endpoints: names });
    let calls = 0;
    const counted = async (e: { name: string }) => {
      calls++;
      return e.name;
    };
    const bad: unknown[] = [{ id: 1 }, { id: 2 }, ['u1'], null, true, Symbol('u1'), () => 'u1'];
    const outcomes = [];
    for (const key of bad) outcomes.push(await set.execute(counted, { key: key as string }).catch((e: unknown) => e));
    expect(outcomes.map((e) => (e as { code?: unknown }).code)).toEqual(bad.map(() => 'E_CONFIG'));
    // An object is not shown: a whole user or request object may carry a token.
    expect((outcomes[0] as Error).message).toBe(
      'failover: key must be a string or a number, hashed to pick the endpoint (got an object, not shown)',
    );
    expect((outcomes[3] as Error).message).toMatch(/key must be .* \(got null\)$/);
    expect(calls).toBe(0);
    // A number, a bigint (from plain JavaScript) and their digits go to the same endpoint.
    const seven = await set.execute(ok, { key: '7' });
    expect(await set.execute(ok, { key: 7 })).toBe(seven);
    expect(await set.execute(ok, { key: 7n as unknown as string })).toBe(seven);
  });

  it('spreads calls without a key at random', async () => {
    const { clock, bus } = harness();
    const set = failover({ clock, bus, balancer: 'consistent-hash', endpoints: ['a', 'b'], random: seeded(7) });
    const picks: string[] = [];
    for (let i = 0; i < 400; i++) picks.push(await set.execute(ok));
    expect(tally(picks).a).toBeGreaterThan(150);
    expect(tally(picks).b).toBeGreaterThan(150);
  });
});
