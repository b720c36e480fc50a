import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { BlockList, isIP } from 'node:net';
import { fileURLToPath } from 'node:url';
import { createBus, createPolicyRegistry, HoldfastConfigError, type HoldfastEvent, ManualClock } from '@holdfast/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ipKey, type LocalRateLimiter, RateLimitedError, slidingWindow, tokenBucket } from '../src/index.js';
import { handClock } from './time.js';

// A child process that loads the sources through tsx, or a CPU-bound property bounded by its
// numRuns (never by time): room for a machine at load 20 on two cores.
const loaded = { timeout: 60_000 };

/** Time steps (ms) and costs, as fast-check draws them. */
const steps = fc.array(fc.record({ wait: fc.integer({ min: 0, max: 400 }), cost: fc.integer({ min: 1, max: 3 }) }), {
  minLength: 1,
  maxLength: 200,
});

describe('tokenBucket()', () => {
  it('lets burst through at once, then limit per interval, and says when to come back', async () => {
    const clock = new ManualClock();
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('rateLimit.reject', (e) => events.push(e));
    const rl = tokenBucket({ limit: 10, interval: 1000, burst: 5, clock, bus, policies: false, name: 'api' });
    for (let i = 0; i < 5; i++) expect(await rl.execute(() => i)).toBe(i);
    const error = await rl.execute(() => 'no').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RateLimitedError);
    expect(error).toMatchObject({ code: 'E_RATE_LIMITED', retryAfter: 100, status: 429 });
    expect(events).toEqual([expect.objectContaining({ source: 'api', retryAfter: 100 })]);
    await clock.advance(99);
    expect(rl.take()).toMatchObject({ allowed: false, retryAfter: 1 });
    await clock.advance(1);
    expect(rl.take()).toMatchObject({ allowed: true });
    expect(rl.snapshot()).toMatchObject({ algorithm: 'tokenBucket', allowed: 6, rejected: 2, keys: 1 });
  });

  it('keeps one bucket per key, and forgets the oldest past maxKeys', () => {
    const clock = new ManualClock();
    const rl = tokenBucket({ limit: 1, interval: 60_000, maxKeys: 2, clock, policies: false });
    expect(rl.take('a').allowed).toBe(true);
    expect(rl.take('a').allowed).toBe(false);
    expect(rl.take('b').allowed).toBe(true);
    expect(rl.take('c').allowed).toBe(true); // forgets a
    expect(rl.snapshot().keys).toBe(2);
    expect(rl.take('a').allowed).toBe(true);
  });

  it('past maxKeys, forgets the least recently used key, not the first one made', () => {
    const clock = new ManualClock();
    const rl = tokenBucket({ limit: 3, interval: 60_000, maxKeys: 4, clock, policies: false });
    for (const key of ['a', 'b', 'c', 'a', 'd', 'e']) expect(rl.take(key).allowed).toBe(true); // e forgets b
    expect(rl.snapshot().keys).toBe(4);
    expect(rl.take('a')).toMatchObject({ allowed: true, remaining: 0 }); // a kept its count
    expect(rl.take('b')).toMatchObject({ allowed: true, remaining: 2 }); // b starts afresh
  });

  it('property: allowed cost over any run ≤ burst + limit × elapsed / interval; retryAfter is exact', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 3, max: 10 }), steps, (limit, burst, run) => {
        const clock = handClock();
        const rl = tokenBucket({ limit, interval: 1000, burst, clock, policies: false });
        exercise(rl, clock, run, (allowed, elapsed) => allowed <= burst + (limit * elapsed) / 1000 + 1e-6);
      }),
      { numRuns: 300 },
    );
  });
});

describe('slidingWindow()', () => {
  it('counts the previous window weighted by how much of it still slides in', async () => {
    const clock = handClock(0);
    const rl = slidingWindow({ limit: 10, interval: 1000, clock, policies: false });
    for (let i = 0; i < 10; i++) expect(rl.take().allowed).toBe(true);
    // At 1000 the previous window still weighs 10; at 1100, 9.
    // Its 10 calls weigh until the next window ends: the whole limit is back at 2000.
    expect(rl.take()).toEqual({ allowed: false, retryAfter: 1100, remaining: 0, reset: 2000 });
    clock.t = 1500; // half the previous window still counts: 5 used
    expect(rl.take()).toMatchObject({ allowed: true, remaining: 4 });
    for (let i = 0; i < 4; i++) expect(rl.take().allowed).toBe(true);
    const refused = rl.take();
    expect(refused.allowed).toBe(false);
    clock.t += refused.retryAfter - 1;
    expect(rl.take().allowed).toBe(false);
    clock.t += 1;
    expect(rl.take().allowed).toBe(true);
  });

  it('property: never more than limit in a fixed window, nor 2 × limit in any sliding one; retryAfter is exact', () => {
    fc.assert(
      fc.property(fc.integer({ min: 3, max: 20 }), steps, (limit, run) => {
        const clock = handClock(0);
        const rl = slidingWindow({ limit, interval: 1000, clock, policies: false });
        const log: [number, number][] = [];
        exercise(
          rl,
          clock,
          run,
          () => true,
          (t, cost) => log.push([t, cost]),
        );
        const perWindow = new Map<number, number>();
        for (const [t, cost] of log)
          perWindow.set(Math.floor(t / 1000), (perWindow.get(Math.floor(t / 1000)) ?? 0) + cost);
        for (const used of perWindow.values()) expect(used).toBeLessThanOrEqual(limit);
        for (const [t] of log) {
          const inWindow = log.filter(([u]) => u > t - 1000 && u <= t).reduce((sum, [, c]) => sum + c, 0);
          expect(inWindow).toBeLessThanOrEqual(2 * limit);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('keys a client picks (a header, a query parameter)', loaded, () => {
  const source = fileURLToPath(new URL('../src/index.ts', import.meta.url));
  it.each(['tokenBucket', 'slidingWindow'])(
    "%s: maxKeys bounds memory whatever the keys' length: 10,000 keys of 16,000 characters hold under 8 MB",
    (factory) => {
      // Each key as a header value arrives: a fresh string per request, up to Node's 16 kB header limit.
      const code = `
        const limit = await import(${JSON.stringify(source)});
        const l = limit.${factory}({ limit: 1, interval: 60_000, policies: false });
        globalThis.gc();
        const before = process.memoryUsage().heapUsed;
        for (let i = 0; i < 10_000; i++) l.take(Buffer.from(String(i).padEnd(16_000, 'x')).toString('latin1'));
        globalThis.gc();
        console.log(JSON.stringify({ keys: l.snapshot().keys, heap: process.memoryUsage().heapUsed - before }));`;
      const run = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', code], {
        encoding: 'utf8',
        env: { ...process.env, NODE_OPTIONS: '' },
      });
      expect(run.stderr).toBe('');
      const { keys, heap } = JSON.parse(run.stdout) as { keys: number; heap: number };
      expect(keys).toBe(10_000);
      // Before: every key was kept whole, 162 MB.
      expect(heap).toBeLessThan(8e6);
    },
  );

  it('a long key keeps a limit of its own: keys that differ in their last character do not share one', () => {
    for (const rl of [
      tokenBucket({ limit: 1, interval: 60_000, policies: false }),
      slidingWindow({ limit: 1, interval: 60_000, policies: false }),
    ]) {
      const long = 'k'.repeat(5_000);
      expect(rl.take(`${long}a`).allowed).toBe(true);
      expect(rl.take(`${long}a`).allowed).toBe(false);
      expect(rl.take(`${long}b`).allowed).toBe(true);
      expect(rl.take(`${long}b`).allowed).toBe(false);
      expect(rl.take('k'.repeat(64)).allowed).toBe(true);
      // Digested, a lone surrogate must not read as U+FFFD (a JSON string may hold one).
      expect(rl.take(`${long}\ufffd`).allowed).toBe(true);
      expect(rl.take(`${long}\ud800`).allowed).toBe(true);
      expect(rl.snapshot().keys).toBe(5);
    }
  });

  it("a short key that spells a long key's digest keeps a limit of its own", () => {
    for (const rl of [
      tokenBucket({ limit: 1, interval: 60_000, policies: false }),
      slidingWindow({ limit: 1, interval: 60_000, policies: false }),
    ]) {
      const long = `session-${'x'.repeat(100)}`;
      // Whatever spelling the table keeps a long key as, a client can send it as a key.
      for (const spelling of [
        createHash('sha256').update(long).digest('base64'),
        createHash('sha256').update(long).digest('base64url'),
        createHash('sha256').update(long).digest('hex'),
      ]) {
        expect(rl.take(spelling).allowed).toBe(true);
      }
      expect(rl.take(long).allowed).toBe(true);
      expect(rl.snapshot().keys).toBe(4);
    }
  });
});

describe('rate limiters as policies', () => {
  it('keys calls by execute(fn, { key }), and list themselves in the registry', async () => {
    const policies = createPolicyRegistry();
    const rl = slidingWindow({ limit: 1, interval: 60_000, policies, name: 'login' });
    expect(await rl.execute(() => 'a', { key: 'alice' })).toBe('a');
    expect(await rl.execute(() => 'b', { key: 'bob' })).toBe('b');
    await expect(rl.execute(() => 'again', { key: 'alice' })).rejects.toMatchObject({ code: 'E_RATE_LIMITED' });
    expect(policies.snapshots()).toEqual([
      { kind: 'rateLimiter', name: 'login', snapshot: expect.objectContaining({ allowed: 2, rejected: 1, keys: 2 }) },
    ]);
    rl.dispose();
    expect(policies.size).toBe(0);
    await expect(rl.execute(() => 1)).rejects.toMatchObject({ code: 'E_DISPOSED' });
  });

  it('refuses a cost it could never allow, and bad options', () => {
    const rl = tokenBucket({ limit: 5, policies: false });
    expect(() => rl.take('k', 6)).toThrow(HoldfastConfigError);
    expect(() => rl.take('k', 0)).toThrow(HoldfastConfigError);
    expect(() => tokenBucket({ limit: 0 })).toThrow(/limit/);
    expect(() => slidingWindow({ limit: 5, interval: -1 })).toThrow(/interval/);
  });

  it('a key is a string: a number counts as its digits, anything else is a HoldfastConfigError (path key)', async () => {
    for (const make of [tokenBucket, slidingWindow]) {
      const rl = make({ limit: 1, interval: 60_000, policies: false });
      expect(rl.take(42 as never).allowed).toBe(true);
      // The same client, keyed by a number or by its digits, has one limit.
      expect(rl.take('42').allowed).toBe(false);
      // An array made per request (a repeated query parameter) must not be a new bucket each time.
      expect(() => rl.take(['a'] as never)).toThrow(HoldfastConfigError);
      expect(() => rl.take(['a'] as never)).toThrow(/key/);
      await expect(rl.execute(() => 'ran', { key: {} as never })).rejects.toMatchObject({ code: 'E_CONFIG' });
      expect(rl.snapshot()).toMatchObject({ keys: 1, allowed: 1 });
    }
  });

  it("a refused key's contents stay out of the message: a whole request or user object may carry a token", async () => {
    const token = 'Bearer sk_live_51Hsecret';
    for (const make of [tokenBucket, slidingWindow]) {
      const rl = make({ limit: 1, interval: 60_000, policies: false });
      for (const key of [{ authorization: token }, [token], new Map([['a', token]])]) {
        let error: unknown;
        try {
          rl.take(key as never);
        } catch (e) {
          error = e;
        }
        expect(error).toBeInstanceOf(HoldfastConfigError);
        expect(String((error as Error).message)).not.toContain('sk_live');
        expect(JSON.stringify((error as HoldfastConfigError).issues)).not.toContain('sk_live');
        expect((error as Error).message).toMatch(
          /key must be a string \(or a number\) \(got an? (object|array), not shown\)/,
        );
      }
    }
  });
});

/**
 * Runs `run` against `rl`: after each refusal, checks that one ms before `retryAfter` the call
 * is still refused and at `retryAfter` it goes. `bound(allowed, elapsed)` must hold throughout.
 */
function exercise(
  rl: LocalRateLimiter,
  clock: { t: number },
  run: readonly { wait: number; cost: number }[],
  bound: (allowed: number, elapsed: number) => boolean,
  onAllowed: (t: number, cost: number) => void = () => {},
): void {
  const start = clock.t;
  let allowed = 0;
  const take = (cost: number) => {
    const d = rl.take('k', cost);
    if (d.allowed) {
      allowed += cost;
      onAllowed(clock.t, cost);
    }
    return d;
  };
  for (const { wait, cost } of run) {
    clock.t += wait;
    const d = take(cost);
    if (!d.allowed) {
      expect(d.retryAfter).toBeGreaterThanOrEqual(1);
      clock.t += d.retryAfter - 1;
      if (d.retryAfter > 1) expect(take(cost).allowed).toBe(false);
      clock.t += 1;
      expect(take(cost).allowed).toBe(true);
    }
    expect(bound(allowed, clock.t - start)).toBe(true);
  }
}

describe('ipKey()', loaded, () => {
  it('keys IPv4 as it is, IPv4-mapped IPv6 as IPv4, IPv6 as its network whatever its spelling', () => {
    expect(ipKey('203.0.113.7')).toBe('203.0.113.7');
    expect(ipKey('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(ipKey('::FFFF:cb00:7107')).toBe('203.0.113.7');
    const net56 = '2001:db8:7:ab00:0:0:0:0/56';
    for (const ip of [
      '2001:db8:7:ab00::1',
      '2001:0DB8:0007:AB12:ffff::',
      '2001:db8:7:abff:1:2:3.4.5.6',
      'fe80::1%eth0',
    ])
      expect(ipKey(ip)).toBe(ip.startsWith('fe80') ? 'fe80:0:0:0:0:0:0:0/56' : net56);
    expect(ipKey('2001:db8:7:ab00::1', 64)).toBe('2001:db8:7:ab00:0:0:0:0/64');
    expect(ipKey('2001:db8:7:ab00::1', 128)).toBe('2001:db8:7:ab00:0:0:0:1/128');
    expect(ipKey('2001:db8:7:ab00::1', 0)).toBe('0:0:0:0:0:0:0:0/0');
    expect(ipKey('::1')).toBe('0:0:0:0:0:0:0:0/56');
    expect(ipKey('::')).toBe('0:0:0:0:0:0:0:0/56');
    // With a port (Azure's X-Forwarded-For, some proxies): the port changes with each connection.
    expect(ipKey('203.0.113.7:50123')).toBe('203.0.113.7');
    expect(ipKey('[2001:db8:7:ab00::1]:443')).toBe(net56);
    expect(ipKey('[::ffff:203.0.113.7]:8080')).toBe('203.0.113.7');
    expect(ipKey('example.com:80')).toBe('example.com:80');
    // A Forwarded header's value, quoted as RFC 7239 writes it: the address inside; a quoted value
    // that is no address (an obfuscated identifier) as it is.
    expect(ipKey('"[2001:db8:7:ab00::1]:4711"')).toBe(net56);
    expect(ipKey('"203.0.113.7"')).toBe('203.0.113.7');
    expect(ipKey('"[2001:db8:7:ab00::1\\]"')).toBe(net56);
    expect(ipKey('"_gazonk"')).toBe('"_gazonk"');
    expect(ipKey('"')).toBe('"');
    // Not an IP address: as it is.
    expect(ipKey(undefined)).toBeUndefined();
    expect(ipKey('')).toBe('');
    expect(ipKey('not an address')).toBe('not an address');
    expect(() => ipKey('::1', 129)).toThrow(HoldfastConfigError);
    expect(() => ipKey('::1', 56.5)).toThrow(/ipv6Prefix must be a whole number from 0 to 128 \(got 56.5\)/);
  });

  it('any spelling of an address, bracketed (Forwarded: for="[2001:db8::1]") or not, with a port or not, gives the key of its network (checked against net.BlockList); nothing throws', () => {
    // Its eight groups, each spelled with leading zeros or not, in either case, and '::' for one
    // run of zero groups, or a dotted IPv4 tail.
    const spellings = (g: number[]) => {
      const hex = g.map((x) => x.toString(16));
      const out = [hex.join(':'), g.map((x) => x.toString(16).padStart(4, '0').toUpperCase()).join(':')];
      const z = g.indexOf(0);
      if (z >= 0) {
        let end = z;
        while (end < 8 && g[end] === 0) end++;
        out.push(`${hex.slice(0, z).join(':')}::${hex.slice(end).join(':')}`);
      }
      const [a, b] = [g[6] as number, g[7] as number];
      out.push(`${hex.slice(0, 6).join(':')}:${a >> 8}.${a & 255}.${b >> 8}.${b & 255}`);
      return out;
    };
    const group = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffff }));
    fc.assert(
      fc.property(
        fc.array(group, { minLength: 8, maxLength: 8 }),
        fc.array(group, { minLength: 8, maxLength: 8 }),
        fc.integer({ min: 0, max: 128 }),
        (g, h, prefix) => {
          if (g[5] === 0xffff && g.slice(0, 5).every((x) => x === 0)) return; // IPv4-mapped: below
          const keys = new Set(
            spellings(g).flatMap((ip) => {
              expect(isIP(ip)).toBe(6);
              return [ip, `[${ip}]`, `[${ip}]:443`, `${ip}%eth0`, `[${ip}%eth0]:1`].map((s) => ipKey(s, prefix));
            }),
          );
          expect([...keys]).toHaveLength(1);
          const key = [...keys][0] as string;
          expect(key).toMatch(new RegExp(`/${prefix}$`));
          // Another address: the same key exactly when it is in the same network.
          const other = spellings(h)[0] as string;
          if (h[5] === 0xffff && h.slice(0, 5).every((x) => x === 0)) return;
          const net = new BlockList();
          net.addSubnet(key.split('/')[0] as string, prefix, 'ipv6');
          expect(ipKey(other, prefix) === key).toBe(net.check(other, 'ipv6'));
        },
      ),
      { numRuns: 2000 },
    );
    // IPv4, and IPv4-mapped IPv6 in any spelling: the IPv4 address.
    fc.assert(
      fc.property(fc.ipV4(), (ip) => {
        const [a, b, c, d] = ip.split('.').map(Number) as [number, number, number, number];
        const hex = `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
        for (const s of [ip, `${ip}:80`, `[${ip}]:80`, `::ffff:${ip}`, `[::FFFF:${ip}]`, `0:0:0:0:0:ffff:${hex}`])
          expect(ipKey(s)).toBe(ip);
      }),
      { numRuns: 500 },
    );
    // Not an address (garbage, huge): as it is, and never a throw.
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 80 }), (s) => {
        for (const x of [s, `[${s}]`, `[${s}]:1`, `${s}:1`, `::${s}`]) {
          const k = ipKey(x);
          if (isIP(x) === 0 && !/^\[.*\]|:\d+$/.test(x)) expect(k).toBe(x);
        }
      }),
      { numRuns: 2000 },
    );
    const huge = `[${'1'.repeat(1_000_000)}]:${'2'.repeat(1_000_000)}`;
    expect(ipKey(huge)).toBe(huge);
  });

  it('property: every spelling of an IPv6 address has the key of its canonical form', () => {
    fc.assert(
      fc.property(fc.ipV6(), fc.integer({ min: 0, max: 128 }), (ip, prefix) => {
        const upper = ip.toUpperCase();
        expect(ipKey(upper, prefix)).toBe(ipKey(ip, prefix));
        expect(ipKey(ip, prefix)).toMatch(/^(\d+\.\d+\.\d+\.\d+|([0-9a-f]{1,4}:){7}[0-9a-f]{1,4}\/\d+)$/);
      }),
    );
  });
});
