// Outside review (s36b) of the fixes in 1a8d3647 (failover) and b75baf60 (breaker, core, retry).
// One `it` per bug found, each failing on the code as reviewed; attacks that held are at the end.
import { breakerRegistry } from '@holdfast/breaker';
import { ManualClock } from '@holdfast/core';
import { parseRetryAfter } from '@holdfast/retry';
import { describe, expect, it } from 'vitest';
import { failover } from '../src/index.js';
import { harness } from './support.js';

describe('review s36b: bugs in or around the s36 fixes', () => {
  // BUG 1. What a user sees: an active-passive set with the default options (and, since the
  // #better change, any set of plain strings) whose primary passes its probe and then fails again
  // as soon as it takes the traffic is ejected for `baseTime` (30 s) every time, forever:
  // 19 ejections in 20 min, each one 5 failed user calls, where the backoff should have reached
  // 5 min after four rounds. README "Outlier ejection": "It fails: it is ejected again, for twice as
  // long ... One ejection is forgiven per `baseTime` spent back in service".
  // Why a bug: the hold-down after the restore is time spent as an idle standby, taking no calls;
  // the default `holdDown` (30 s) equals the default `baseTime` (30 s), so exactly the hold-down
  // "forgives" the one ejection the failed round added. 1a8d3647 fixed the same reset for time
  // spent ejected, not for time held down; and its #better change now sends plain-string sets
  // through this path too (they never failed back before).
  // Root cause: failover.ts:1274 (#restore) sets restoredAt at the restore; failover.ts:1227
  // (#eject) -> ejection.ts:81 forgives floor((now - restoredAt) / baseTime), hold-down included.
  // Suggested fix: in active-passive, start the time in service when traffic comes back: in
  // #switch(to, 'failback') set `to.restoredAt = now` when it is defined (or count only time as
  // the active endpoint).
  it('BUG: active-passive failback hold-down forgives the ejection: a flapping primary never backs off', async () => {
    const h = harness(0);
    const api = failover<string>({
      clock: h.clock,
      bus: h.bus,
      policies: false,
      mode: 'active-passive',
      retry: false,
      endpoints: ['http://primary:8080', 'http://standby:8080'], // defaults: holdDown 30 s, baseTime 30 s
    });
    // The primary answers its probe after each ejection, then fails every call it takes.
    let sinceEject = 0;
    h.bus.on('failover.eject', () => {
      sinceEject = 0;
    });
    const call = () =>
      api
        .execute((e) => {
          if (e.name !== 'http://primary:8080') return 'standby';
          if (sinceEject++ === 0) return 'primary';
          throw new Error('primary down');
        })
        .catch(() => 'failed');
    for (let t = 0; t < 10 * 60_000; t += 1_000) {
      await call();
      await h.clock.advance(1_000);
    }
    const times = h.of('failover.eject').map((e) => e.until - e.time);
    // got [30000, 30000, 30000, 30000, 30000, 30000, 30000, 30000, 30000, 30000]: no backoff at all
    expect(times.slice(0, 4)).toEqual([30_000, 60_000, 120_000, 240_000]);
    api.dispose();
  });

  // BUG 2. What a user sees: with `ejection: false` (ejections left to @holdfast/anomaly, which
  // calls eject()) and no per-try `timeout`, a black-holed endpoint (SYN dropped: every call
  // hangs) takes one more call every 10 s for good once its eject() time is up: each hung probe
  // is given up, the endpoint stays in 'probe', and the next call is its probe again, first in
  // line, and hangs too. No backoff, no `failover.eject` event.
  // Why a bug: README: "Without a per-try `timeout`, a probe still running after the ejection it
  // follows counts as failed" and (eject()) "With `ejection: false`, a failed probe ejects it again
  // for twice its last time, up to 5 min". 1a8d3647 made a failed probe back off with ejection
  // off, but not a hung one.
  // Root cause: failover.ts:710 (#startProbe's watchdog) ejects only when
  // `this.#ejection !== undefined`, a guard #eject no longer needs (failover.ts:1220 handles
  // ejection off).
  // Suggested fix: drop `&& this.#ejection !== undefined` from the watchdog's condition.
  it('BUG: ejection:false, a hung probe after eject() is given up but never backs off: every next call hangs on it', async () => {
    const h = harness(0);
    const api = failover<string>({
      clock: h.clock,
      bus: h.bus,
      policies: false,
      ejection: false,
      retry: false,
      endpoints: ['http://a', 'http://b', 'http://c'],
    });
    const took: string[] = [];
    const call = () => {
      void api
        .execute((e) => {
          took.push(e.name);
          return e.name === 'http://a' ? new Promise<string>(() => {}) : e.name; // a hangs
        })
        .catch(() => {});
    };
    expect(api.eject('http://a', { durationMs: 1_000 })).toBe(true);
    await h.clock.advance(1_000);
    call(); // the probe: hangs
    expect(took).toEqual(['http://a']);
    await h.clock.advance(10_000); // the watchdog gives it up: counts as failed
    took.length = 0;
    for (let i = 0; i < 4; i++) call();
    // got ['http://a', 'http://b', 'http://c', 'http://b']: another hung call on a, no ejection
    expect(took).not.toContain('http://a');
    expect(h.of('failover.eject').map((e) => e.until - e.time)).toEqual([1_000, 2_000]);
    api.dispose();
  });

  // BUG 3. What a user sees: with a keyed breaker registry whose `overrides` function refuses
  // keys it does not know (throws: b75baf60 now turns that into a rejection of execute()), every
  // refused key still evicts a held breaker, and, past SPARE_AT_MOST passes, an OPEN one: a
  // client that sends unknown tenant ids / Host headers closes the breaker of a failing
  // downstream (fresh, closed) and the registry empties, though no breaker was ever made for them.
  // Why a bug: README `maxKeys`: "past this the least recently used breaker is dropped; an open
  // ... one is passed over ... so fresh keys cannot reset it"; a refused key adds nothing, so
  // nothing needs room.
  // Root cause: registry.ts:253 (#create) runs `while (size >= maxKeys) #evictOldest(now)` before
  // `this.#overrides?.(key)` and `#config(...)` (254-258), which may throw.
  // Suggested fix: compute `override`/`base` (and the shown name) first, then make room.
  it('BUG: a key whose overrides throw is refused, yet it evicts a held (open) breaker first', async () => {
    const clock = new ManualClock(0);
    const reg = breakerRegistry({
      clock,
      policies: false,
      maxKeys: 2,
      overrides: (key) => {
        if (!key.startsWith('tenant-')) throw new Error(`unknown tenant ${key}`);
        return undefined;
      },
    });
    reg.get('tenant-1').open();
    reg.get('tenant-2').open();
    const refused = await reg
      .execute('attacker-1', async () => 'x')
      .then(
        () => 'ran',
        (e: Error) => e.message,
      );
    expect(refused).toMatch(/unknown tenant|overrides/);
    // got size 1: tenant-1's open breaker was dropped for a key that was never admitted
    expect(reg.size).toBe(2);
    expect(reg.has('tenant-1') && reg.has('tenant-2')).toBe(true);
    reg.dispose();
  });

  // HELD 1: dispose() with a timed try in flight, a retry decision (async retryOn) pending, and a
  // drain() waiting: the call rejects once (its own error, or DisposedError), drain() resolves, no
  // unhandled rejection, nothing in flight left counted.
  it('HELD: dispose() mid-retry and mid-try settles every call once, with no unhandled rejection', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (r: unknown) => unhandled.push(r);
    process.on('unhandledRejection', onUnhandled);
    try {
      const h = harness(0);
      const api = failover<string>({
        clock: h.clock,
        bus: h.bus,
        policies: false,
        timeout: 60_000,
        retry: {
          maxAttempts: 3,
          retryOn: async () => {
            await new Promise((r) => setTimeout(r, 10));
            return true;
          },
        },
        endpoints: ['http://a', 'http://b', 'http://c'],
      });
      const seen: string[] = [];
      const retrying = api.execute(async (e) => {
        seen.push(e.name);
        throw new Error('first try fails');
      });
      let release: (v: string) => void = () => {};
      const hanging = api.execute(() => new Promise<string>((r) => (release = r)), { avoid: ['http://a'] });
      const drained = api.drain('http://b');
      await new Promise((r) => setTimeout(r, 2));
      api.dispose();
      const out = await Promise.all([
        retrying.then(
          () => 'ok',
          (e: Error) => e.message,
        ),
        hanging.then(
          () => 'ok',
          (e: Error) => e.name,
        ),
      ]);
      expect(out).toEqual(['first try fails', 'DisposedError']);
      expect(seen).toHaveLength(1);
      release('late');
      await expect(drained).resolves.toBeUndefined();
      await new Promise((r) => setTimeout(r, 30));
      expect(unhandled).toEqual([]);
      expect(api.snapshot().endpoints.every((e) => e.inFlight === 0)).toBe(true);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  // HELD 2: Retry-After in RFC 9110's three forms (IMF-fixdate with or without GMT, RFC 850 with a
  // 2-digit year, asctime with a space-padded day) is read; garbage is no hint.
  it('HELD: Retry-After accepts the three HTTP-date forms and refuses garbage', () => {
    const now = Date.parse('2026-12-07T14:00:00Z');
    expect(parseRetryAfter('Mon, 07 Dec 2026 14:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Mon, 07 Dec 2026 14:00:30', now)).toBe(30_000);
    expect(parseRetryAfter('Monday, 07-Dec-26 14:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Mon Dec  7 14:00:30 2026', now)).toBe(30_000);
    expect(parseRetryAfter('  Mon, 07 Dec 2026 14:00:30 GMT  ', now)).toBe(30_000);
    expect(parseRetryAfter('Sunday, 06-Nov-94 08:49:37 GMT', now)).toBe(0); // 1994: past, now
    for (const bad of ['wait 10', '120abc', '-5', '1e3', 'Mon, 07 Dec 2026 25:00:30 GMT'])
      expect(parseRetryAfter(bad, now)).toBeUndefined();
  });

  // HELD 3: snapshot targets through shownName(): URL credentials hidden, host/port/path kept; a
  // path with 'token' or 'keys' in it, a bare host:port, a key/value DSN shown usefully.
  it('HELD: snapshot targets hide credentials without blanking ordinary targets', () => {
    const targets = [
      'https://app:s3cret@api.internal:8443/v1',
      'https://auth.internal/oauth/token',
      'http://kv.internal/keys/orders',
      'db-2.internal:5432',
      'host=db user=app password=hunter2 dbname=orders',
    ];
    const api = failover<string>({
      policies: false,
      endpoints: targets.map((target, i) => ({ name: `e${i}`, target })),
    });
    expect(api.snapshot().endpoints.map((e) => e.target)).toEqual([
      'https://***@api.internal:8443/v1',
      'https://auth.internal/oauth/token',
      'http://kv.internal/keys/orders',
      'db-2.internal:5432',
      'host=db user=app password=*** dbname=orders',
    ]);
    api.dispose();
  });
});
