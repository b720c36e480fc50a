import { createBus, hedge, ManualClock, timeout } from '@holdfast/core';
import { parseRetryAfter, retry } from '@holdfast/retry';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { breakerRegistry, circuitBreaker } from '../src/index.js';

/**
 * Outside review (session 36): the breaker, its registry, and how it composes with retry,
 * timeout and hedge. One `it` per bug found (each fails on the current code), then three
 * attacks that held (labelled HELD, passing).
 */

const down = () => Object.assign(new Error('downstream failed'), { code: 'ECONNRESET' });
const boom = () => {
  throw down();
};

describe('review s36: bugs', () => {
  /**
   * BUG 1: a failure rate exactly at the threshold does not open the breaker, for some
   * thresholds and window sizes (0.56 with 25 calls, 0.28 with 25, 0.55 with 100, 0.14 with
   * 50, 0.07 with 100, ...).
   *
   * What a user sees: `failureRateThreshold: 0.56, minimumCalls: 25`; 11 successes then 14
   * failures. `snapshot().window.failureRate` says 0.56, the threshold is 0.56, the window
   * holds 25 calls, and the breaker stays `closed` (it opens only on the next failure).
   *
   * Why it is a bug: the README says it "opens when failures / calls in the window reach this"
   * and "failures / calls ≥ failureRateThreshold"; the migration table stresses "opens at ≥,
   * opossum at >". 14 / 25 === 0.56 in JavaScript, so by the README (and by the snapshot the
   * breaker shows) the rule has tripped.
   *
   * Root cause: packages/breaker/src/breaker.ts:409 (`w.failures >= this.#failureRate * w.calls`)
   * multiplies instead of dividing: 0.56 * 25 === 14.000000000000002 > 14. The slow-call rule
   * has the same form (breaker.ts:414, `w.slow >= this.#slowRate * w.calls`).
   *
   * Fix: compare the ratio the snapshot shows, `w.failures / w.calls >= this.#failureRate`
   * (and `w.slow / w.calls >= this.#slowRate`), or allow a relative epsilon on the product.
   */
  it('opens when failures / calls equals failureRateThreshold exactly (0.56 of 25 calls)', async () => {
    const clock = new ManualClock(0);
    const breaker = circuitBreaker({
      clock,
      bus: createBus(),
      policies: false,
      failureRateThreshold: 0.56,
      minimumCalls: 25,
    });
    for (let i = 0; i < 11; i++) await breaker.execute(() => 'ok');
    for (let i = 0; i < 14; i++) await breaker.execute(boom).catch(() => undefined);
    const { window } = breaker.snapshot();
    expect(window.calls).toBe(25);
    expect(window.failureRate).toBe(0.56); // what the breaker itself reports
    expect(breaker.state).toBe('open'); // actual: 'closed'
  });

  /**
   * BUG 2: a registry drops a half-open breaker whose probe is still out; fresh keys close it.
   *
   * What a user sees: a host's breaker opened, its `openFor` passed, one probe went out to the
   * still-sick host and every other call is refused. A client that sends requests for fresh
   * keys (a Host header, a tenant id) pushes the registry past `maxKeys`: the half-open breaker
   * is the least recently used one, it is dropped, and the next call for the sick host gets a
   * fresh closed breaker and goes straight through, as does all the traffic after it.
   *
   * Why it is a bug: the README promises "eviction passes over a breaker that holds state ...
   * a caller who picks keys (a Host header, a tenant id) cannot close a breaker by sending fresh
   * ones", and "Only one who makes more than 8 breakers open in a row ahead of it can get an
   * open one dropped". Here no other breaker is open, and three fresh keys closed it. A
   * half-open breaker with a probe out refuses calls as an open one does (and its verdict on
   * the probe is lost with it).
   *
   * Root cause: packages/breaker/src/breaker.ts:139-141 `holdsState()` is true only for
   * ISOLATED, DISABLED and OPEN-not-yet-due; HALF_OPEN is never "stateful", so
   * registry.ts:313 (`#evictOldest`) drops it like an idle closed breaker.
   *
   * Fix: count HALF_OPEN as holding state in `holdsState()` (at least while probes are out or
   * some have succeeded); for eviction by `maxKeys`, an open breaker that is due could be passed
   * over too, since its next call would be a single probe, not a flood.
   */
  it('maxKeys eviction passes over a half-open breaker whose probe is out', async () => {
    const clock = new ManualClock(0);
    const hosts = breakerRegistry({
      clock,
      bus: createBus(),
      policies: false,
      maxKeys: 2,
      defaults: { consecutiveFailures: 1, openFor: 1_000 },
    });
    await hosts.execute('sick.example', boom).catch(() => undefined);
    expect(hosts.get('sick.example').state).toBe('open');
    await clock.advance(1_000);
    let answer!: (value: string) => void;
    const probe = hosts.execute('sick.example', () => new Promise<string>((resolve) => (answer = resolve)));
    expect(hosts.get('sick.example').state).toBe('halfOpen');
    const refused = await hosts.execute('sick.example', () => 'sent').catch((e: { code?: string }) => e.code);
    expect(refused).toBe('E_CIRCUIT_OPEN');

    // Three fresh keys, each a healthy call: nothing else is open.
    for (const key of ['a.example', 'b.example', 'c.example']) await hosts.execute(key, () => 'ok');

    let reached = 0;
    const after = await hosts
      .execute('sick.example', () => {
        reached++;
        return 'sent';
      })
      .catch((e: { code?: string }) => e.code);
    answer('late');
    await probe;
    expect(reached).toBe(0); // actual: 1, the call reached the sick host
    expect(after).toBe('E_CIRCUIT_OPEN'); // actual: 'sent'
  });

  /**
   * BUG 3: `registry.execute(key, fn)` throws synchronously instead of returning a rejected
   * promise when the key's overrides (a function) give bad settings, or throw.
   *
   * What a user sees: `hosts.execute(host, fn).catch(handle)` does not catch it: the error
   * escapes the call site (an Express handler without an async wrapper crashes the request,
   * `keys.map((k) => hosts.execute(k, fn))` aborts the whole map before any promise exists).
   *
   * Why it is a bug: every other refusal of `execute` is a rejection (the registry itself
   * rejects with `E_DISPOSED` and the key `TypeError`, registry.ts:192-193), a `Policy`'s
   * `execute()` returns a promise and `pipeline()` goes out of its way to turn a throwing
   * policy into a rejection (policy.ts:63-66). The README says a bad override of a function is
   * reported "on the key's first use": that use is an `execute()`, which should reject.
   *
   * Root cause: packages/breaker/src/registry.ts:194 `return this.get(key).execute(fn, options)`:
   * `get()` -> `#create()` -> `#config()` throws `HoldfastConfigError` (registry.ts:283), and
   * the override function is called bare at registry.ts:250.
   *
   * Fix: in `execute`, wrap `this.get(key)` in try/catch and `return Promise.reject(error)`.
   */
  it('execute() rejects, never throws, when a function override is bad', async () => {
    const hosts = breakerRegistry({
      clock: new ManualClock(0),
      bus: createBus(),
      policies: false,
      overrides: (key) => (key === 'bad.example' ? { openFor: -1 } : undefined),
    });
    let thrown: unknown;
    let result: Promise<unknown> | undefined;
    try {
      result = hosts.execute('bad.example', () => 'ok');
    } catch (error) {
      thrown = error; // actual: HoldfastConfigError thrown synchronously
    }
    expect(thrown).toBeUndefined();
    await expect(result).rejects.toMatchObject({ code: 'E_CONFIG' });
  });

  /**
   * BUG 4: a percentile hedge delay keeps its `initial` long after `minSamples` latencies,
   * whenever the count steps over `minSamples` between two reads of the delay (concurrent
   * calls, or several successes between launches).
   *
   * What a user sees: `hedge({ delay: { percentile: 0.5, initial: 1000, minSamples: 2 } })`;
   * three concurrent calls succeed at once; `snapshot().delay` is still 1000 (and each hedge
   * waits 1000 ms) after 3, 6, ... samples, until 20 samples (`samples / 50`) accumulate.
   * With `samples: 100_000` it stays on `initial` for 2,000 samples.
   *
   * Why it is a bug: the option is documented as "Latencies needed before the percentile
   * replaces `initial`" and `initial` as "The delay until `minSamples` latencies were seen".
   *
   * Root cause: packages/core/src/hedge.ts:365 recomputes only when
   * `#count === minSamples` exactly, or after `max(1, samples / 50)` new samples: a count that
   * goes from below minSamples to above it between two reads of `current()` misses the first
   * test and waits for the second.
   *
   * Fix: keep a `#ready` flag; the first `current()` with `#count >= minSamples` recomputes
   * (then the every-few-samples rule applies).
   */
  it('a percentile delay replaces initial once minSamples latencies were seen', async () => {
    const clock = new ManualClock(0);
    const reads = hedge({
      delay: { percentile: 0.5, initial: 1_000, minSamples: 2 },
      safe: true,
      budget: false,
      policies: false,
      clock,
      bus: createBus(),
    });
    for (let round = 0; round < 3; round++) await Promise.all([1, 2, 3].map((n) => reads.execute(() => n)));
    // Nine latencies of ~0 ms were seen; the median of them is 0 (the percentile, with min 0).
    expect(reads.snapshot().delay).toBe(0); // actual: 1000
  });

  /**
   * BUG 5: a garbage `Retry-After` that V8's lenient `Date.parse` happens to read as some past
   * date ("wait 10", "retry=5", "See docs 2") makes the retry go at once, with no backoff at all.
   *
   * What a user sees: a server (or proxy) answers 503 with `Retry-After: wait 10`; with
   * `backoff: { initialDelay: 1_000 }` the retry is sent immediately (a 0 ms wait), every time:
   * a downstream that is failing gets its retries back-to-back.
   *
   * Why it is a bug: the README reads Retry-After "in both its forms: `Retry-After: 120`
   * (seconds) and ... an HTTP-date"; "wait 10" is neither, and RFC 9110 §10.2.3 / §5.6.7 make
   * an invalid field value ignorable, so the backoff should decide (as it does for
   * "Retry later", "-5" or "120abc"). "A date in the past means now" is meant for real dates.
   *
   * Root cause: packages/retry/src/retry-after.ts:41-44: the only check before `Date.parse`
   * is `/^[A-Za-z]{3}/` (the comment says "opens with the day's name", but any three letters
   * pass), and V8's legacy date parser accepts "wait 10 GMT" as a date in 2010.
   *
   * Fix: match the three HTTP-date grammars (IMF-fixdate, RFC 850, asctime; day names
   * Mon..Sun / Monday..Sunday, month names, `HH:MM:SS`) before parsing, or at least require a
   * day name and a time of day; anything else is no hint.
   */
  it('a garbage Retry-After ("wait 10") is no hint: the backoff decides the wait', async () => {
    const clock = new ManualClock(Date.parse('2026-01-01T00:00:00Z'));
    const policy = retry({
      clock,
      bus: createBus(),
      budget: false,
      maxAttempts: 2,
      jitter: 'none',
      backoff: { type: 'constant', initialDelay: 1_000 },
    });
    const at: number[] = [];
    const call = policy.execute(() => {
      at.push(clock.now());
      throw Object.assign(down(), { status: 503, headers: { 'retry-after': 'wait 10' } });
    });
    const settled = call.catch(() => undefined);
    await clock.advance(999);
    expect(at.length).toBe(1); // actual: 2, the retry went at once
    await clock.advance(1);
    await settled;
    expect(at.map((t) => t - (at[0] as number))).toEqual([0, 1_000]);
  });

  /**
   * BUG 5, as a property: text that is neither a count of seconds nor one of RFC 9110's three
   * HTTP-date forms is never a hint. Strings are drawn at random and also built from the pieces
   * V8's Date.parse likes (day and month names, numbers, times, zones, the words around them),
   * which make the near misses; the few that come out a real form are left out.
   */
  it('text that is no HTTP-date and no count of seconds never yields a hint', () => {
    const month = '(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)';
    const time = '\\d\\d:\\d\\d:\\d\\d';
    const zone = '(?: (?:GMT|UTC?|Z|[ECMP][SD]T|[+-]\\d\\d:?\\d\\d))?';
    const forms = [
      `(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \\d\\d ${month} \\d{4} ${time}`,
      `(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), \\d\\d-${month}-\\d\\d ${time}`,
      `(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ${month} [ \\d]\\d ${time} \\d{4}`,
    ];
    const httpDate = new RegExp(`^(?:${forms.join('|')})${zone}$`);
    const piece = fc.oneof(
      fc.constantFrom('Sun', 'Sunday', 'sun', 'Mon', 'Nov', 'November', 'nov', 'GMT', 'UTC', 'EST', 'Z', '+0200'),
      fc.constantFrom(',', ', ', '-', ':', ' ', '  ', '=', '/', '.', 'T'),
      fc.constantFrom('wait', 'retry=', 'See docs', 'in', 'seconds', 'later', 'after', 'Retry-After:'),
      fc.constantFrom('06', '6', '94', '1994', '2026', '08:49:37', '8:49', '08:49:37 1994', '06 Nov 1994'),
      fc.nat({ max: 100_000 }).map(String),
    );
    const text = fc
      .oneof(
        fc.string(),
        fc.array(piece, { minLength: 1, maxLength: 8 }).map((p) => p.join('')),
      )
      .filter((t) => !/^\s*\d+\s*$/.test(t) && !httpDate.test(t.trim()));
    const now = Date.parse('2026-01-01T00:00:00Z');
    fc.assert(
      fc.property(text, (t) => {
        expect(parseRetryAfter(t, now)).toBeUndefined();
      }),
      { numRuns: 5_000, seed: 36 },
    );
    for (const t of ['wait 10', 'retry=5', 'See docs 2', 'Sun 10', 'Sunday 5', 'Nov 6 1994', '2026-01-01T00:00:00Z']) {
      expect(parseRetryAfter(t, now)).toBeUndefined();
    }
    // The three forms still are hints (a date in the past: now).
    for (const t of ['Sun, 06 Nov 1994 08:49:37 GMT', 'Sunday, 06-Nov-94 08:49:37 GMT', 'Sun Nov  6 08:49:37 1994']) {
      expect(parseRetryAfter(t, now)).toBe(0);
    }
  });
});

describe('review s36: attacks that held (passing)', () => {
  /**
   * HELD: a model-free invariant run of the breaker state machine on a ManualClock: random
   * calls settled at once (success, failure, ignored), held calls settled later (success,
   * failure, ignored, aborted by their caller), clock steps across openFor and maxWait, and
   * open/close/isolate/disable by hand, with 1-3 probes, 1-3 successes to close, maxWait off
   * or short, slow calls on or off. After every step: probes in flight within [0, maxProbes],
   * counts non-negative, an open breaker's retryAt in the future, and every refusal's retryAt
   * in the future (never "now", so no caller spins).
   */
  it('HELD: breaker invariants under random calls, aborts, clock steps and hand controls', async () => {
    type Out = 'ok' | 'fail' | 'ignore';
    const ops = fc.array(
      fc.oneof(
        fc.record({ k: fc.constant('now' as const), out: fc.constantFrom<Out>('ok', 'fail', 'ignore') }),
        fc.record({ k: fc.constant('hold' as const) }),
        fc.record({
          k: fc.constant('settle' as const),
          i: fc.nat(),
          out: fc.constantFrom<Out | 'abort'>('ok', 'fail', 'ignore', 'abort'),
        }),
        fc.record({ k: fc.constant('adv' as const), ms: fc.constantFrom(1, 10, 99, 100, 250, 500, 1_000, 5_000) }),
        fc.record({ k: fc.constant('hand' as const), m: fc.constantFrom('open', 'close', 'isolate', 'disable') }),
      ),
      { maxLength: 50, size: 'large' },
    );
    const config = fc.record({
      maxProbes: fc.integer({ min: 1, max: 3 }),
      successesToClose: fc.integer({ min: 1, max: 3 }),
      maxWait: fc.constantFrom(false as const, 50, 300, 2_000),
      minimumCalls: fc.integer({ min: 1, max: 5 }),
      slow: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(ops, config, async (list, c) => {
        const clock = new ManualClock(1_000_000);
        const breaker = circuitBreaker({
          clock,
          bus: createBus(),
          policies: false,
          minimumCalls: c.minimumCalls,
          openFor: 1_000,
          window: { duration: 1_000, buckets: 4 },
          halfOpen: { maxProbes: c.maxProbes, successesToClose: c.successesToClose, maxWait: c.maxWait },
          ...(c.slow ? { slowCall: { duration: 200 } } : {}),
        });
        const refusal = (e: { code?: string; retryAt?: number }) => {
          if (e?.code === 'E_CIRCUIT_OPEN' && e.retryAt !== undefined) expect(e.retryAt).toBeGreaterThan(clock.now());
        };
        const outcome = (out: Out) => {
          if (out === 'ok') return 1;
          if (out === 'fail') throw down();
          throw Object.assign(new Error('aborted below'), { name: 'AbortError' });
        };
        const held: { settle: (o: Out | 'abort') => void; done: Promise<unknown> }[] = [];
        const check = () => {
          const s = breaker.snapshot();
          expect(s.probes.inFlight).toBeGreaterThanOrEqual(0);
          expect(s.probes.inFlight).toBeLessThanOrEqual(c.maxProbes);
          expect(s.window.calls).toBeGreaterThanOrEqual(s.window.failures);
          expect(s.window.failures).toBeGreaterThanOrEqual(0);
          if (s.state === 'open') expect(s.retryAt as number).toBeGreaterThan(clock.now());
        };
        for (const op of list) {
          if (op.k === 'now') {
            await breaker.execute(() => outcome(op.out)).catch(refusal);
          } else if (op.k === 'hold') {
            const caller = new AbortController();
            let settle: ((o: Out | 'abort') => void) | undefined;
            const done = breaker
              .execute(
                () =>
                  new Promise((resolve, reject) => {
                    settle = (o) => {
                      if (o === 'abort') {
                        caller.abort();
                        reject(caller.signal.reason);
                        return;
                      }
                      try {
                        resolve(outcome(o));
                      } catch (error) {
                        reject(error);
                      }
                    };
                  }),
                { signal: caller.signal },
              )
              .catch(refusal);
            await Promise.resolve();
            held.push({ settle: (o) => settle?.(o), done });
          } else if (op.k === 'settle') {
            if (held.length === 0) continue;
            const [h] = held.splice(op.i % held.length, 1);
            h?.settle(op.out);
            await h?.done;
          } else if (op.k === 'adv') {
            await clock.advance(op.ms);
          } else {
            breaker[op.m]();
          }
          check();
        }
        for (const h of held) {
          h.settle('ok');
          await h.done;
        }
        check();
      }),
      { numRuns: 150, seed: 36 },
    );
  });

  /**
   * HELD: one timeout policy's deadline queue (one timer per duration) with many calls of the
   * same length pending: random starts, settles (cancelling deadlines, the head among them),
   * clock steps, and calls started from inside an expiry (a caller's abort listener). Every
   * call that did not settle first times out exactly `ms` after it started, never early or late.
   */
  it('HELD: timeouts of one duration fire exactly on time through cancels and adds during expiry', async () => {
    let timedOut = 0;
    let chained = 0;
    const ops = fc.array(
      fc.oneof(
        { arbitrary: fc.record({ k: fc.constant('start' as const), chain: fc.boolean() }), weight: 3 },
        { arbitrary: fc.record({ k: fc.constant('settle' as const), i: fc.nat() }), weight: 2 },
        { arbitrary: fc.record({ k: fc.constant('adv' as const), ms: fc.integer({ min: 0, max: 120 }) }), weight: 3 },
      ),
      { maxLength: 60, size: 'large' },
    );
    await fc.assert(
      fc.asyncProperty(ops, async (list) => {
        const ms = 100;
        const clock = new ManualClock(0);
        const limit = timeout(ms, { clock, bus: createBus() });
        const open: { settle: () => void }[] = [];
        const results: { id: number; startedAt: number; timedOutAt?: number; settled?: boolean }[] = [];
        const settlers = new Map<number, () => void>();
        const start = (chain: boolean) => {
          const id = results.length;
          const record: (typeof results)[number] = { id, startedAt: clock.now() };
          results.push(record);
          const run = limit.execute(
            ({ signal }) =>
              new Promise<string>((resolve, reject) => {
                settlers.set(id, () => resolve('done'));
                signal.addEventListener('abort', () => {
                  // A call started while the queue fires, from the same policy.
                  if (chain) {
                    chained++;
                    start(false);
                  }
                  reject(signal.reason);
                });
              }),
          );
          run.then(
            () => (record.settled = true),
            (e: { code?: string }) => {
              expect(e.code).toBe('E_TIMEOUT');
              record.timedOutAt ??= clock.now();
            },
          );
          open.push({ settle: () => settlers.get(id)?.() });
        };
        for (const op of list) {
          if (op.k === 'start') start(op.chain);
          else if (op.k === 'settle') {
            if (open.length > 0) open.splice(op.i % open.length, 1)[0]?.settle();
            await Promise.resolve();
          } else await clock.advance(op.ms);
        }
        await clock.advance(3 * ms);
        for (const r of results) {
          if (r.settled) continue;
          expect(r.timedOutAt).toBe(r.startedAt + ms);
          timedOut++;
        }
      }),
      { numRuns: 200, seed: 36 },
    );
    // Not vacuous: many deadlines expired, some of them starting calls as they fired.
    expect(timedOut).toBeGreaterThan(200);
    expect(chained).toBeGreaterThan(20);
  });

  /**
   * HELD: keys that are Object.prototype names ('__proto__', 'constructor', 'toString') get
   * breakers of their own, their record overrides (from JSON) apply, and a registry snapshot
   * round-trips them through JSON into `restore`, open ones restarting open.
   */
  it("HELD: '__proto__' and 'constructor' keys: overrides, snapshot and restore", async () => {
    const clock = new ManualClock(0);
    const overrides = JSON.parse(
      '{"__proto__": {"consecutiveFailures": 1, "openFor": 5000}, "constructor": {"consecutiveFailures": 1}}',
    );
    const tenants = breakerRegistry({ clock, bus: createBus(), policies: false, overrides });
    for (const key of ['__proto__', 'constructor', 'toString']) await tenants.execute(key, boom).catch(() => undefined);
    expect(tenants.get('__proto__').state).toBe('open');
    expect(tenants.get('constructor').state).toBe('open');
    expect(tenants.get('toString').state).toBe('closed'); // the defaults: a rate over 10 calls
    const saved = JSON.parse(JSON.stringify(tenants.snapshot()));
    expect(Object.keys(saved.breakers).sort()).toEqual(['__proto__', 'constructor', 'toString']);
    const restarted = breakerRegistry({ clock, bus: createBus(), policies: false, restore: saved });
    expect(restarted.get('__proto__').state).toBe('open');
    expect(restarted.get('constructor').state).toBe('open');
    expect(restarted.get('toString').state).toBe('closed');
  });
});
