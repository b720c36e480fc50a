// Outside review of @holdfast/failover (session s36): balancer, budget, ejection, endpoint,
// failover, hash, health, options, retryable. One `it` per bug found, each failing on the code as
// reviewed; three strong attacks that held are kept at the end, labelled HELD.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type Clock, createBus, createPolicyRegistry, ManualClock, snapshots, type TimerHandle } from '@holdfast/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { failover } from '../src/index.js';
import { harness, seeded } from './support.js';

type Op =
  | { t: 'eject'; i: number; d: number }
  | { t: 'restore'; i: number }
  | { t: 'drain'; i: number }
  | { t: 'undrain'; i: number }
  | { t: 'advance'; ms: number }
  | { t: 'call' };

describe('review s36: failover bugs', () => {
  // BUG 1. What a user sees: an endpoint that came back once and then died for good is probed
  // with a live call every `baseTime` forever (its ejections read 3, then 1, 1, 1...), instead of
  // backing off 2x per failed probe up to `maxTime`: with the defaults, one failing request every
  // 30 s where there should be one every 5 min.
  // Why a bug: README "Outlier ejection": "It fails: it is ejected again, for twice as long" and
  // "One ejection is forgiven per `baseTime` spent back in service". Time spent ejected is not time
  // back in service.
  // Root cause: failover.ts:1194 (#eject; eject() at :1309 too) calls remainingEjections(e.ejections, e.restoredAt,
  // now, baseTime) with the restoredAt of the LAST restore, so ejection.ts:81 forgives one ejection
  // per baseTime elapsed since that restore, including all the time the endpoint has been out since.
  // Fix: forget restoredAt when an endpoint is ejected (set `e.restoredAt = undefined` in #ejectFor
  // after the count is taken), so only time since a restore (in service) forgives.
  it('BUG: a failed probe after a brief restore resets the ejection backoff to baseTime instead of doubling', async () => {
    const h = harness(0);
    let down = true;
    const api = failover<string>({
      clock: h.clock,
      bus: h.bus,
      policies: false,
      mode: 'active-passive',
      holdDown: 0,
      retry: false,
      endpoints: [
        { name: 'a', target: 'a', priority: 0 },
        { name: 'b', target: 'b', priority: 1 },
      ],
      ejection: { consecutiveFailures: 1, baseTime: 1_000, maxTime: 100_000 },
    });
    const call = () =>
      api
        .execute((e) => {
          if (e.name === 'a' && down) throw new Error('a is down');
          return e.name;
        })
        .catch(() => 'failed');
    expect(await call()).toBe('failed'); // t=0: a ejected, 1st in a row (1 s)
    await h.clock.advance(1_000);
    expect(await call()).toBe('failed'); // t=1000: probe fails, 2nd (2 s)
    await h.clock.advance(2_000);
    down = false;
    expect(await call()).toBe('a'); // t=3000: probe passes, restored
    down = true;
    expect(await call()).toBe('failed'); // t=3000: fails at once, 3rd in a row (4 s)
    await h.clock.advance(4_000);
    expect(await call()).toBe('failed'); // t=7000: probe fails: never back in service since, so 4th (8 s)
    expect(h.of('failover.eject').map((e) => [e.ejections, e.until - e.time])).toEqual([
      [1, 1_000],
      [2, 2_000],
      [3, 4_000],
      [4, 8_000], // got [1, 1_000]: the 4 s it spent ejected "forgave" all three
    ]);
    api.dispose();
  });

  // BUG 2. What a user sees: with `ejection: false` (e.g. ejections left to @holdfast/anomaly,
  // which calls eject()), an endpoint ejected by hand that is still dead when its time is up takes
  // EVERY call from then on (10 of 10 sequential calls below fail on it, where it took a third of
  // them before the ejection): the probe fails, the endpoint stays in 'probe', and the next call
  // is its probe again, first in line, forever.
  // Why a bug: README `eject()`: "then, as after an ejection for failures, its next call is the
  // probe that brings it back", and for that probe "It fails: it is ejected again, for twice as
  // long". `eject()` is documented to work with `ejection: false` (maxShare 0.5).
  // Root cause: failover.ts:730 (#record): `if (counter === undefined) return;` comes before
  // failover.ts:731 `if (current && e.ejection === 'probe') this.#eject(e, now)`, and #eject itself
  // returns at once when `this.#ejection === undefined` (failover.ts:1192); the hung-probe watchdog is guarded the same way.
  // Fix: handle a failed probe before the counter check, and let #eject fall back to the last
  // duration given (e.g. re-eject for `min(2 * e.ejectedFor, MAX_TIMER_MS)`) when ejection is off.
  it('BUG: with ejection: false, a hand-ejected endpoint whose probe fails is probed by every call after', async () => {
    const h = harness();
    const api = failover<string>({
      clock: h.clock,
      bus: h.bus,
      policies: false,
      endpoints: ['a', 'b', 'c'],
      retry: false,
      ejection: false,
    });
    expect(api.eject('a', { durationMs: 1_000, reason: 'anomaly' })).toBe(true);
    await h.clock.advance(1_000);
    const seen: string[] = [];
    for (let i = 0; i < 10; i++) {
      seen.push(
        await api
          .execute((e) => {
            if (e.name === 'a') throw new Error('a is still down');
            return e.name;
          })
          .catch(() => 'a (failed)'),
      );
    }
    // One probe, then out again: at most that one call reaches the dead endpoint.
    expect(seen.filter((s) => s === 'a (failed)').length).toBe(1); // got 10
    expect(api.snapshot().endpoints[0]?.ejection).toBe('ejected'); // got 'probe'
    api.dispose();
  });

  // BUG 3. What a user sees: with a clock of their own that has no monotonic() (core documents such
  // clocks as supported: durations then use now()), a wall-clock step back (NTP) during one call
  // makes that endpoint's latency EWMA hugely negative (-1,079,993 ms in the snapshot below). With
  // p2c-ewma its cost, ewma × (inFlight + 1), is then negative and falls as calls pile up, so it wins
  // every draw it is in and the balancer herds calls onto it (18 of 30 concurrent calls, the other
  // two 6 each) for minutes, whatever its real latency.
  // Why a bug: the code guards every other duration against such a step ("A clock without
  // monotonic() stepped back ... forgives nothing": remainingEjections, the hold-down, the
  // failure-rate interval), README: p2c-ewma "Cost = latency average × (calls in flight + 1)"; a
  // latency is never negative, and snapshot().ewma documents "Latency EWMA in ms".
  // Root cause: failover.ts:618/623/633 (#try) pass `this.#elapsed() - started` to #record,
  // which blends it into e.ewma unclamped (failover.ts:719-720).
  // Fix: clamp the sample: `const sample = failed ? ... : Math.max(0, latency)` (or clamp latency
  // in #record before anything uses it).
  it('BUG: a wall clock stepped back during a call gives a negative latency EWMA, and p2c-ewma herds onto that endpoint', async () => {
    const timers = new ManualClock(10_000_000);
    let step = 0;
    const wallOnly: Clock = {
      now: () => timers.now() + step,
      setTimeout: (cb, ms) => timers.setTimeout(cb, ms),
      clearTimeout: (handle) => timers.clearTimeout(handle),
    };
    const api = failover<string>({
      clock: wallOnly,
      bus: createBus(),
      policies: false,
      endpoints: ['a', 'b', 'c'],
      retry: false,
      balancer: 'p2c-ewma',
      random: seeded(),
    });
    for (let i = 0; i < 30; i++) {
      await api.execute(async (e) => {
        await timers.advance(10);
        return e.name;
      });
    }
    await api.execute(async (e) => {
      step -= 3_600_000; // NTP steps the wall clock back an hour while this call runs
      return e.name;
    });
    const ewmas = api.snapshot().endpoints.map((e) => e.ewma);
    const counts: Record<string, number> = {};
    for (let i = 0; i < 30; i++) {
      void api.execute((e) => {
        counts[e.name] = (counts[e.name] ?? 0) + 1;
        return new Promise(() => {});
      });
    }
    expect(Math.min(...ewmas)).toBeGreaterThanOrEqual(0); // got -1079993
    expect(Math.max(...Object.values(counts))).toBeLessThanOrEqual(12); // got 18 on one of three
    api.dispose();
  });

  // BUG 4. What a user sees: `failover({ mode: 'active-passive', endpoints: [primaryUrl, standbyUrl] })`
  // (strings: every priority 0, as README's string form gives) fails over to the standby when the
  // primary is ejected, probes the primary back, and then never returns traffic to it: `active`
  // stays the standby forever, hold-down or not. Yet `failback()` moves it (it ranks by the order
  // given), so 'auto' and 'manual' disagree about which endpoint is best.
  // Why a bug: README "Modes": the active one is "the available endpoint of the lowest priority
  // number (then the order given)"; docs/failover.md: "ties go by the order given"; "When a better
  // endpoint is available again, traffic fails back only once it has stayed available through holdDown".
  // Root cause: failover.ts:1120 (#elect) fails back only when `best.priority < current.priority`,
  // while #better() (used by #pickPassive, #probeFor and failback()) also orders by index.
  // Fix: use `this.#better(best, current)` in #elect's failback condition.
  it('BUG: active-passive with equal priorities never fails back to the first endpoint', async () => {
    const h = harness();
    const api = failover<string>({
      clock: h.clock,
      bus: h.bus,
      policies: false,
      mode: 'active-passive',
      holdDown: 1_000,
      endpoints: ['http://primary:8080', 'http://standby:8080'],
    });
    expect(api.active?.name).toBe('http://primary:8080');
    expect(api.eject('http://primary:8080', { durationMs: 500 })).toBe(true);
    expect(api.active?.name).toBe('http://standby:8080');
    await h.clock.advance(500);
    expect(await api.execute((e) => e.name)).toBe('http://primary:8080'); // its probe passes: restored
    await h.clock.advance(5_000); // well past the hold-down
    expect(await api.execute((e) => e.name)).toBe('http://primary:8080'); // got the standby
    expect(api.active?.name).toBe('http://primary:8080');
    api.dispose();
  });

  // BUG 5. What a user sees: `await set.drain(name)` never resolves if the endpoint was undrained
  // before its last call in flight settled (an operator cancelling a maintenance, a deploy script
  // retrying): the call settles, the endpoint has nothing in flight, and the promise hangs until
  // dispose() (or a later drain-and-settle) happens to wake it.
  // Why a bug: README `drain(name)`: "resolves when its last call in flight has settled".
  // Root cause: failover.ts:673 (#callSettled) wakes drains only when `e.drained`;
  // undrain() neither resolves the waiters nor keeps them woken.
  // Fix: wake the waiters when inFlight reaches 0 whether or not the endpoint is still drained (or
  // resolve them in undrain()).
  it('BUG: drain() then undrain() while a call is in flight: the drain promise never settles', async () => {
    const h = harness();
    const api = failover<string>({ clock: h.clock, bus: h.bus, policies: false, endpoints: ['a', 'b'] });
    let release = () => {};
    const call = api.execute((e) => new Promise<string>((resolve) => (release = () => resolve(e.name))));
    let drained = false;
    void api.drain('a').then(() => (drained = true));
    api.undrain('a');
    release();
    expect(await call).toBe('a');
    await h.clock.advance(10);
    expect(api.snapshot().endpoints[0]?.inFlight).toBe(0);
    expect(drained).toBe(true); // got false, for good
    api.dispose();
  });

  // BUG 6. What a user sees: a string target that is a key/value connection string (libpq's
  // `host=db1 user=app password=...`, what `new pg.Pool({ connectionString })` and many drivers
  // take) shows its password in `snapshot().endpoints[].target`, which is served on the dashboard
  // and health endpoints, while the very same string used as the name is shown as `password=***`.
  // Why a bug: README: "A string `target` is shown with its credentials and secret query parameters
  // as `***`"; "Credentials ... are shown as *** everywhere (events, snapshots, errors)".
  // Root cause: failover.ts:1356 (snapshot()) shows `redactor.url(e.view.target)`, while
  // names go through shownName() = `redactor.text(redactor.url(...))` (options.ts:44).
  // Fix: show the target with shownName() (hideSecrets) as names are.
  it('BUG: snapshot() shows the password of a key/value connection-string target', () => {
    const dsn = 'host=db1 port=5432 user=app password=S3cr3tPw dbname=orders';
    const api = failover<string>({
      bus: createBus(),
      policies: false,
      endpoints: [dsn, { name: 'db-2', target: 'host=db2 user=app password=S3cr3tPw' }],
    });
    const shown = JSON.stringify(api.snapshot());
    expect(api.snapshot().endpoints[0]?.name).not.toContain('S3cr3tPw'); // the name is hidden...
    expect(shown).not.toContain('S3cr3tPw'); // ...the target is not
    api.dispose();
  });

  // BUG 7. What a user sees: after dispose(), a call still in flight with the set's per-try
  // `timeout` keeps the process alive until that timeout: `failover({ endpoints, timeout: 3_000 })`,
  // one call hanging, dispose(), and node exits 3.0 s later (with `timeout: 60_000`, a minute):
  //   node -e "...set.execute(() => new Promise(() => {})).catch(()=>{}); set.dispose()"  # exits after 3018 ms
  // Why a bug: README `dispose()`: "stops health checks and every timer ... Nothing the set does keeps
  // the process alive, disposed or not." (the test below uses a recording clock: after dispose()
  // a ref'd timer of the set is still pending).
  // Root cause: failover.ts:641 (#try) arms the per-try deadline with `{ ref: true }` and
  // dispose() (failover.ts:1375-1392) only clears #timers and the failback timer; try deadlines are not tracked.
  // Fix: track the deadlines of tries in flight and, in dispose(), unref or clear them (settling
  // those tries with DisposedError or their TimeoutError at once), or arm them unref'd once disposed.
  it('BUG: dispose() leaves a ref’d per-try timeout timer that holds the process open', async () => {
    const manual = new ManualClock(1_000_000);
    const live = new Map<TimerHandle, boolean>();
    const recording: Clock = {
      now: () => manual.now(),
      monotonic: () => manual.now(),
      setTimeout(cb, ms, options) {
        const handle: TimerHandle = manual.setTimeout(() => {
          live.delete(handle);
          cb();
        }, ms);
        live.set(handle, options?.ref === true);
        return handle;
      },
      clearTimeout(handle) {
        live.delete(handle);
        manual.clearTimeout(handle);
      },
    };
    const api = failover<string>({
      clock: recording,
      bus: createBus(),
      policies: false,
      endpoints: ['a', 'b'],
      timeout: 60_000,
      health: { check: () => true, interval: 1_000 },
    });
    void api.execute(() => new Promise(() => {})).catch(() => {});
    await new Promise((resolve) => setImmediate(resolve));
    api.dispose();
    const refd = [...live.values()].filter(Boolean).length;
    expect(refd).toBe(0); // got 1: the 60 s deadline of the call in flight, ref'd
  });

  // BUG 8. What a user sees: a set built with `policies: false` (or a registry of its own) still
  // lists `<name>/budget` in the process-wide registry, so healthReport(), the dashboard and the
  // metrics packages show a retry budget for a set that asked not to be listed; and a disposed
  // set's budget stays listed (a 'budget' row per set ever built and still referenced).
  // Why a bug: `policies` is "Where the set lists itself ... or `false`"; the set's own internal
  // failure counters are built with `policies: false` ("an internal counter, not a breaker anyone
  // should see", ejection.ts:36), and resilientFetch disposes the budget it made itself on dispose.
  // Root cause: budget.ts:22 defaultBudget() calls retryBudget() without `policies`, and
  // FailoverSet.dispose() (failover.ts:1375) never disposes/unlists the budget it created.
  // Fix: pass the set's `policies` to defaultBudget (or `false`), and dispose an owned budget in dispose().
  it('BUG: the default retry budget is listed in the global registry despite policies: false, and after dispose()', () => {
    const name = 'review-s36-unlisted';
    const api = failover<string>({ name, bus: createBus(), policies: false, endpoints: ['a', 'b'] });
    const listed = () =>
      snapshots()
        .filter((s) => s.name.startsWith(name))
        .map((s) => `${s.kind}:${s.name}`);
    expect(listed()).toEqual([]); // got ['budget:review-s36-unlisted/budget']
    api.dispose();
    const other = 'review-s36-disposed';
    const api2 = failover<string>({ name: other, bus: createBus(), endpoints: ['a', 'b'] });
    api2.dispose();
    expect(snapshots().filter((s) => s.name.startsWith(other))).toEqual([]); // its budget stays
  });
});

describe('review s36: attacks that held', () => {
  // HELD: consistent-hash stability (fast-check, random weights 1..5, 2..8 endpoints): ejecting one
  // endpoint moves exactly the keys it held and no other; restoring it moves them all back.
  it('HELD: consistent-hash moves only the ejected endpoint’s keys, and they come back on restore', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 2, maxLength: 8 }),
        fc.nat(),
        async (weights, which) => {
          const h = harness();
          const api = failover<string>({
            clock: h.clock,
            bus: h.bus,
            endpoints: weights.map((w, i) => ({ name: `e${i}`, target: `e${i}`, weight: w })),
            balancer: 'consistent-hash',
            retry: false,
            policies: false,
            ejection: { maxShare: 1 },
          });
          const keys = Array.from({ length: 300 }, (_, i) => `user-${i}`);
          const route = () => Promise.all(keys.map((key) => api.execute((e) => e.name, { key })));
          const before = await route();
          const out = `e${which % weights.length}`;
          expect(api.eject(out, { durationMs: 1_000 })).toBe(true);
          const during = await route();
          keys.forEach((_, i) => {
            if (before[i] === out) expect(during[i]).not.toBe(out);
            else expect(during[i]).toBe(before[i]);
          });
          api.restore(out);
          expect(await route()).toEqual(before);
          api.dispose();
        },
      ),
      { numRuns: 100, seed: 36 },
    );
  });

  // HELD: a fast-check model of health checks (pass, reject, resolve false, synchronous throw, hang
  // ignoring the signal, slow past the timeout): every health.change comes at the modelled time, a
  // hung check is never started twice, and dispose() leaves no timer behind.
  it('HELD: health verdicts follow a model of checks that throw, hang or time out; dispose() leaves no timer', async () => {
    type Out = 'pass' | 'fail' | 'false' | 'throw' | 'reject' | 'hang' | 'slowpass';
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.constantFrom<Out>(
            'pass',
            'pass',
            'pass',
            'fail',
            'false',
            'throw',
            'reject',
            'hang',
            'slowpass',
            'slowpass',
          ),
          { minLength: 5, maxLength: 40 },
        ),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 3 }),
        async (outs, healthyAfter, unhealthyAfter) => {
          const h = harness(0);
          let k = 0;
          const api = failover<string>({
            clock: h.clock,
            bus: h.bus,
            endpoints: ['a', 'b'],
            policies: false,
            health: {
              interval: 100,
              jitter: 0,
              timeout: 50,
              healthyAfter,
              unhealthyAfter,
              check: (e) => {
                if (e.name === 'b') return true;
                const o = outs[k++] ?? 'pass';
                switch (o) {
                  case 'pass':
                    return Promise.resolve(true);
                  case 'fail':
                    return Promise.reject(new Error('x'));
                  case 'false':
                    return false;
                  case 'throw':
                    throw new Error('sync');
                  case 'reject':
                    return Promise.reject(new Error('x'));
                  case 'hang':
                    return new Promise(() => {});
                  case 'slowpass':
                    return new Promise((r) => {
                      h.clock.setTimeout(() => r(true), 70);
                    });
                }
              },
            },
          });
          // model
          const expected: [number, boolean][] = [];
          let health = true,
            passes = 0,
            fails = 0,
            j = 0,
            hung = false,
            t = 0,
            calls = 0;
          const horizon = 100 * (outs.length + 10);
          while (t <= horizon) {
            let passed: boolean;
            let next = 100;
            let at = t;
            if (hung) passed = false;
            else {
              const o = outs[j++] ?? 'pass';
              calls++;
              passed = o === 'pass';
              if (o === 'hang') {
                hung = true;
                next = 150;
                at = t + 50;
              }
              if (o === 'slowpass') {
                next = 150;
                at = t + 50;
              }
            }
            if (passed) {
              passes++;
              fails = 0;
              if (!health && passes >= healthyAfter) {
                health = true;
                expected.push([at, true]);
              }
            } else {
              fails++;
              passes = 0;
              if (health && fails >= unhealthyAfter) {
                health = false;
                expected.push([at, false]);
              }
            }
            t += next;
          }
          await h.clock.advance(horizon);
          const got = h
            .of('health.change')
            .filter((e) => e.endpoint === 'a')
            .map((e) => [e.time, e.healthy]);
          expect(got.filter(([tm]) => (tm as number) <= horizon - 200)).toEqual(
            expected.filter(([tm]) => tm <= horizon - 200),
          );
          expect(k).toBe(calls); // a hung check is never started again
          api.dispose();
          expect(h.clock.pending).toBe(0);
        },
      ),
      { numRuns: 200, seed: 36 },
    );
  });
  // HELD (attack that did not break it): a fast-check model of active-passive (distinct priorities)
  // under random eject/restore/drain/undrain/advance/call sequences: the active endpoint, the
  // endpoint each call reaches (probes included) and eject()'s refusals match the README's rules.
  it('HELD: active-passive election, probes, hold-down failback and eject() refusals follow a model', async () => {
    const n = 4;
    const stats = { switches: 0, ops: 0 };
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      fc.record({
        t: fc.constant('eject' as const),
        i: fc.integer({ min: 0, max: n - 1 }),
        d: fc.integer({ min: 1, max: 3000 }),
      }),
      fc.record({ t: fc.constant('restore' as const), i: fc.integer({ min: 0, max: n - 1 }) }),
      fc.record({ t: fc.constant('drain' as const), i: fc.integer({ min: 0, max: n - 1 }) }),
      fc.record({ t: fc.constant('undrain' as const), i: fc.integer({ min: 0, max: n - 1 }) }),
      fc.record({ t: fc.constant('advance' as const), ms: fc.integer({ min: 1, max: 2500 }) }),
      fc.constant({ t: 'call' as const }),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(opArb, { minLength: 15, maxLength: 60 }),
        fc.shuffledSubarray([0, 1, 2, 3], { minLength: 4, maxLength: 4 }),
        async (ops, prios) => {
          const holdDown = 1000;
          const h = harness();
          const api = failover<string>({
            clock: h.clock,
            bus: h.bus,
            mode: 'active-passive',
            holdDown,
            retry: false,
            policies: false,
            ejection: { consecutiveFailures: 1000, baseTime: 1000 },
            endpoints: prios.map((p, i) => ({ name: `e${i}`, target: `e${i}`, priority: p })),
          });
          let now = 0;
          const m = prios.map((p, i) => ({
            i,
            p,
            drained: false,
            ej: 'none' as 'none' | 'ejected' | 'probe',
            until: 0,
            since: 0 as number | undefined,
          }));
          const avail = (x: (typeof m)[number]) => !x.drained && x.ej === 'none';
          const better = (a: (typeof m)[number], b: (typeof m)[number]) => a.p < b.p || (a.p === b.p && a.i < b.i);
          const bestAvail = () =>
            m
              .filter(avail)
              .reduce<(typeof m)[number] | undefined>((b, x) => (b === undefined || better(x, b) ? x : b), undefined);
          let active: (typeof m)[number] | undefined = bestAvail();
          const elect = () => {
            for (const x of m)
              if (avail(x)) x.since ??= now;
              else x.since = undefined;
            const best = bestAvail();
            if (active === undefined || !avail(active)) {
              if (best) active = best;
              else active = undefined;
            } else if (best && best.p < active.p && now >= (best.since as number) + holdDown) active = best;
          };
          const log: string[] = [];
          for (const op of ops) {
            log.push(JSON.stringify(op));
            if (op.t === 'advance') {
              // timers: ejected->probe at until; failback timer at due (only availability-based)
              const target = now + op.ms;
              for (;;) {
                const due = m
                  .filter((x) => x.ej === 'ejected' && x.until <= target)
                  .sort((a, b) => a.until - b.until)[0];
                // failback moment before that?
                const best = bestAvail();
                const fb =
                  active && avail(active) && best && best.p < active.p ? (best.since as number) + holdDown : Infinity;
                const nextT = Math.min(due ? due.until : Infinity, fb);
                if (nextT > target) break;
                now = Math.max(now, nextT);
                if (due && due.until === nextT) due.ej = 'probe';
                elect();
              }
              now = target;
              await h.clock.advance(op.ms);
            } else if (op.t === 'eject') {
              const x = m[op.i] as (typeof m)[number];
              let expect_ = true;
              if (x.drained) expect_ = false;
              else if (!m.some((y) => y !== x && avail(y))) expect_ = false;
              else {
                const inService = m.filter((y) => !y.drained).length;
                const out = m.filter((y) => !y.drained && y !== x && y.ej !== 'none').length;
                if (out + 1 > Math.max(1, Math.floor(0.5 * inService))) expect_ = false;
              }
              const got = api.eject(`e${op.i}`, { durationMs: op.d });
              expect(got, log.join('\n')).toBe(expect_);
              if (got) {
                x.ej = 'ejected';
                x.until = now + op.d;
                elect();
              }
            } else if (op.t === 'restore') {
              const x = m[op.i] as (typeof m)[number];
              expect(api.restore(`e${op.i}`)).toBe(x.ej !== 'none');
              if (x.ej !== 'none') {
                x.ej = 'none';
                elect();
              }
            } else if (op.t === 'drain') {
              await api.drain(`e${op.i}`);
              (m[op.i] as (typeof m)[number]).drained = true;
              elect();
            } else if (op.t === 'undrain') {
              api.undrain(`e${op.i}`);
              (m[op.i] as (typeof m)[number]).drained = false;
              elect();
            } else {
              // expected target
              let to: (typeof m)[number] | undefined;
              const probe = m
                .filter((x) => x.ej === 'probe' && !x.drained)
                .find((x) => active === undefined || better(x, active));
              if (probe) to = probe;
              else if (active) to = active;
              else
                to = m
                  .filter((x) => !x.drained)
                  .reduce<(typeof m)[number] | undefined>(
                    (b, x) => (b === undefined || better(x, b) ? x : b),
                    undefined,
                  );
              const got = await api.execute((e) => e.name).catch((e) => (e as { code?: string }).code);
              expect(got, log.join('\n')).toBe(to ? `e${to.i}` : 'E_NO_HEALTHY_ENDPOINT');
              if (probe) {
                probe.ej = 'none';
                elect();
              }
            }
            expect(api.active?.name ?? null, log.join('\n')).toBe(active ? `e${active.i}` : null);
          }
          stats.switches += h.of('failover.switch').length;
          stats.ops += ops.length;
          api.dispose();
        },
      ),
      { numRuns: 300, seed: 36 },
    );
    expect(stats.switches).toBeGreaterThan(100); // the model really exercised switches
  });
});

describe('review s36: the fixes, further', () => {
  // Bug 2: with ejection off, each failed probe doubles the last time out, up to the default
  // maxTime (5 min), and never below the time eject() was given.
  it('with ejection: false, failed probes after eject() back off 2x up to 5 min; a longer eject() is kept', async () => {
    const h = harness(0);
    const api = failover<string>({
      clock: h.clock,
      bus: h.bus,
      policies: false,
      endpoints: ['a', 'b', 'c'],
      retry: false,
      ejection: false,
    });
    const probe = () =>
      api
        .execute((e) => {
          if (e.name === 'a' || e.name === 'b') throw new Error('down');
          return e.name;
        })
        .catch(() => 'failed');
    expect(api.eject('a', { durationMs: 100_000, reason: 'anomaly' })).toBe(true);
    for (let i = 0; i < 3; i++) {
      await h.clock.advance((api.snapshot().endpoints[0]?.ejectedUntil ?? 0) - h.clock.now());
      expect(await probe()).toBe('failed');
    }
    expect(h.of('failover.eject').map((e) => [e.endpoint, e.until - e.time, e.ejections])).toEqual([
      ['a', 100_000, 1],
      ['a', 200_000, 2],
      ['a', 300_000, 3],
      ['a', 300_000, 4],
    ]);
    api.restore('a');
    expect(api.eject('b', { durationMs: 3_600_000 })).toBe(true);
    await h.clock.advance(3_600_000);
    expect(await probe()).toBe('failed');
    expect(h.of('failover.eject').at(-1)).toMatchObject({ endpoint: 'b', ejections: 2 });
    expect(api.snapshot().endpoints[1]?.ejectedUntil).toBe(h.clock.now() + 3_600_000);
    api.dispose();
  });

  // Bug 5: undrain() ends the drain at once, calls still in flight or not.
  it('undrain() resolves a drain() still waiting, with its call still in flight', async () => {
    const h = harness();
    const api = failover<string>({ clock: h.clock, bus: h.bus, policies: false, endpoints: ['a', 'b'] });
    void api.execute(() => new Promise<string>(() => {}));
    let drained = false;
    void api.drain('a').then(() => (drained = true));
    await h.clock.advance(10);
    expect(drained).toBe(false);
    api.undrain('a');
    await h.clock.advance(0);
    expect(drained).toBe(true);
    expect(api.snapshot().endpoints[0]?.inFlight).toBe(1);
    api.dispose();
  });

  // Bug 7: the try in flight settles with DisposedError, its signal aborted.
  it('dispose() settles a try in flight under a per-try timeout with DisposedError and aborts its signal', async () => {
    const h = harness();
    const api = failover<string>({
      clock: h.clock,
      bus: h.bus,
      policies: false,
      endpoints: ['a', 'b'],
      timeout: 60_000,
    });
    let signal: AbortSignal | undefined;
    const call = api.execute((_, ctx) => {
      signal = ctx.signal;
      return new Promise<string>(() => {});
    });
    await h.clock.advance(0);
    api.dispose();
    await expect(call).rejects.toMatchObject({ code: 'E_DISPOSED' });
    expect(signal?.aborted).toBe(true);
    expect(h.clock.pending).toBe(0);
  });

  // Bug 7, in a real process: it exits at once, not when the 60 s deadline would have fired.
  it('dispose() with a call in flight under a 60 s timeout: the process exits at once', () => {
    const src = fileURLToPath(new URL('../src/index.ts', import.meta.url));
    const script = [
      `import { failover } from ${JSON.stringify(src)};`,
      "const set = failover({ endpoints: ['a', 'b'], timeout: 60_000 });",
      'void set.execute(() => new Promise(() => {})).catch((e) => console.log(e.code));',
      'set.dispose();',
    ].join('\n');
    const child = spawnSync(
      process.execPath,
      ['--conditions=@holdfast/source', '--import', 'tsx', '--input-type=module', '-e', script],
      { encoding: 'utf8', timeout: 20_000, cwd: fileURLToPath(new URL('.', import.meta.url)) },
    );
    expect(child.stderr).toBe('');
    expect(child.stdout.trim()).toBe('E_DISPOSED');
    // Killed by the timeout above, it would have no status: the deadline is 60 s away.
    expect(child.status).toBe(0);
  }, 25_000);

  // Bug 8: with a registry of the set's own, its budget is listed there, and off it once disposed.
  it('the default budget is listed in the set’s own registry, and unlisted on dispose()', () => {
    const registry = createPolicyRegistry();
    const api = failover<string>({ name: 'own-registry', bus: createBus(), policies: registry, endpoints: ['a', 'b'] });
    const listed = () =>
      registry
        .snapshots()
        .map((s) => `${s.kind}:${s.name}`)
        .sort();
    expect(listed()).toEqual(['budget:own-registry/budget', 'failover:own-registry']);
    expect(snapshots().some((s) => s.name.startsWith('own-registry'))).toBe(false);
    api.dispose();
    expect(listed()).toEqual([]);
  });
});
