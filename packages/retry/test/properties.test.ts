import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { nextDelay, resolveBackoff } from '../src/backoff.js';
import { parseRetryAfter, retry, retryBudget } from '../src/index.js';
import { retryOptionsSchema } from '../src/options.js';
import { finish, httpError, setup } from './support.js';

/** Backoff options as a user may write them (then checked by the schema). */
const backoffArb = fc.record(
  {
    type: fc.constantFrom('exponential', 'linear', 'constant'),
    initialDelay: fc.oneof(
      fc.constant(0),
      fc.integer({ min: 0, max: 60_000 }),
      fc.double({ min: 0, max: 1e6, noNaN: true }),
    ),
    maxDelay: fc.oneof(fc.integer({ min: 0, max: 600_000 }), fc.constant(2_147_483_647)),
    factor: fc.oneof(fc.double({ min: 1, max: 1e6, noNaN: true }), fc.constantFrom(1, 2, 10, 1e300)),
  },
  { requiredKeys: ['type'] },
);

/** Any random source, the broken ones included (NaN, negative, above 1, Infinity). */
const randomArb = fc.oneof(
  fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
  fc.constantFrom(Number.NaN, -1, 1, 2, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0),
);

describe('retry properties', () => {
  it('every delay of every law and jitter, at any retry number, is a finite number in [0, maxDelay]', () => {
    fc.assert(
      fc.property(
        backoffArb,
        fc.constantFrom('full', 'equal', 'decorrelated', 'none'),
        fc.integer({ min: 1, max: 999 }),
        fc.oneof(fc.double({ min: 0, max: 1e7, noNaN: true }), fc.constant(0)),
        randomArb,
        (backoff, jitter, n, previous, u) => {
          const parsed = retryOptionsSchema.safeParse({ backoff, jitter });
          fc.pre(parsed.success);
          const law = resolveBackoff(parsed.data as never);
          const delay = nextDelay(law, n, previous, () => u);
          expect(Number.isFinite(delay)).toBe(true);
          expect(delay).toBeGreaterThanOrEqual(0);
          expect(delay).toBeLessThanOrEqual(law.maxDelay);
        },
      ),
      { numRuns: 3_000 },
    );
  });

  it('regression: initialDelay 0 with a large exponential factor waits 0 ms, not NaN (which skipped maxElapsed)', async () => {
    // 0 × factor^(n-1) is 0 × Infinity = NaN once the power overflows; a NaN wait made
    // `now + delay - start > maxElapsed` false, so maxElapsed never stopped the retries.
    const { clock, bus, of } = setup();
    const policy = retry({
      backoff: { type: 'exponential', initialDelay: 0, factor: 1e300 },
      jitter: 'none',
      maxAttempts: 5,
      budget: false,
      clock,
      bus,
    });
    const call = policy.execute(() => {
      throw new Error('down');
    });
    let settled = false;
    call.catch(() => {}).finally(() => (settled = true));
    for (let i = 0; i < 20 && !settled; i++) await clock.advance(0);
    expect(of('retry.attempt').map((e) => e.delay)).toEqual([0, 0, 0, 0]);
    await expect(call).rejects.toMatchObject({ code: 'E_RETRY_EXHAUSTED' });
  });

  it('any number of seconds, in any surrounding whitespace: exactly that many seconds', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 10 ** 9 }),
        fc.constantFrom('', ' ', '\t', '  '),
        fc.constantFrom('', ' ', '\t'),
        (s, before, after) => {
          expect(parseRetryAfter(`${before}${s}${after}`, 0)).toBe(s * 1000);
          expect(parseRetryAfter([`${s}`, '5'], 0)).toBe(s * 1000);
        },
      ),
    );
  });

  it('any text: undefined or a wait of at least 0 ms, never NaN, never negative', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.stringMatching(/^-?[0-9]{0,4}(\.[0-9]{1,3})?[a-z]?$/),
          fc.date({ noInvalidDate: true }).map((d) => d.toUTCString().slice(0, 3 + Math.floor(Math.random() * 26))),
        ),
        fc.integer({ min: 0, max: 4e12 }),
        (text, now) => {
          const ms = parseRetryAfter(text, now);
          if (ms === undefined) return;
          expect(Number.isNaN(ms)).toBe(false);
          expect(ms).toBeGreaterThanOrEqual(0);
        },
      ),
      { numRuns: 2_000 },
    );
    // Not a count of seconds: a fraction, a sign, a unit.
    for (const text of ['1.5', '-5', '+5', '5s', '0x10', '1e3', '']) expect(parseRetryAfter(text, 0)).toBeUndefined();
  });

  describe('HTTP-dates are GMT, whatever the process timezone', () => {
    const tz = process.env.TZ;
    afterEach(() => {
      if (tz === undefined) delete process.env.TZ;
      else process.env.TZ = tz;
    });

    /** RFC 9110's three forms of one instant (whole seconds). */
    function forms(ms: number): string[] {
      const d = new Date(ms);
      const days = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
      const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
      const p = (n: number) => String(n).padStart(2, '0');
      const time = `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}`;
      const day = days[d.getUTCDay()] as string;
      const month = months[d.getUTCMonth()] as string;
      const imf = d.toUTCString();
      const rfc850 = `${day}, ${p(d.getUTCDate())}-${month}-${p(d.getUTCFullYear() % 100)} ${time} GMT`;
      const asctime = `${day.slice(0, 3)} ${month} ${String(d.getUTCDate()).padStart(2, ' ')} ${time} ${d.getUTCFullYear()}`;
      return [imf, rfc850, asctime];
    }

    for (const zone of ['UTC', 'America/New_York', 'Asia/Kolkata', 'Pacific/Kiritimati']) {
      it(`${zone}: each of the three forms is read as the same instant`, () => {
        process.env.TZ = zone;
        fc.assert(
          fc.property(
            // RFC 850's two-digit year is read in 1950..2049 by V8: keep to instants it can say.
            fc.integer({ min: Date.UTC(1990, 0, 1) / 1000, max: Date.UTC(2049, 0, 1) / 1000 }),
            fc.integer({ min: -86_400, max: 86_400 }),
            (seconds, ahead) => {
              const at = seconds * 1000;
              const now = at - ahead * 1000;
              for (const text of forms(at)) expect(parseRetryAfter(text, now)).toBe(Math.max(0, at - now));
            },
          ),
          { numRuns: 300 },
        );
      });
    }

    it('regression: an asctime date is GMT, not the local time (New York read it 5 hours late)', () => {
      process.env.TZ = 'America/New_York';
      const now = Date.UTC(1994, 10, 6, 8, 49, 7);
      expect(parseRetryAfter('Sun Nov  6 08:49:37 1994', now)).toBe(30_000);
      expect(parseRetryAfter('Sun, 06 Nov 1994 08:49:37', now)).toBe(30_000);
      // A date with its own offset keeps it.
      expect(parseRetryAfter('Sun, 06 Nov 1994 10:49:37 +0200', now)).toBe(30_000);
      expect(parseRetryAfter('Sun, 06 Nov 1994 03:49:37 EST', now)).toBe(30_000);
    });
  });

  it('a retry waits what Retry-After asks, or gives up at once when that is longer than maxDelay, for any hint', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 100_000 }),
        fc.integer({ min: 0, max: 60_000 }),
        async (seconds, maxDelay) => {
          const { clock, bus, of } = setup();
          const policy = retry({ backoff: { initialDelay: 0, maxDelay }, maxAttempts: 2, budget: false, clock, bus });
          const call = policy.execute(() => {
            throw httpError(503, { 'retry-after': String(seconds) });
          });
          const tooLong = seconds * 1000 > maxDelay;
          const outcome = expect(call).rejects.toMatchObject({
            code: 'E_RETRY_EXHAUSTED',
            reason: tooLong ? 'retryAfter' : 'maxAttempts',
            attempts: tooLong ? 1 : 2,
          });
          await finish(clock);
          await outcome;
          expect(of('retry.attempt').map((e) => e.delay)).toEqual(tooLong ? [] : [seconds * 1000]);
        },
      ),
      { numRuns: 100 },
    );
  });
});

describe('retryBudget properties', () => {
  type Op = { kind: 'deposit'; n: number } | { kind: 'withdraw'; n: number } | { kind: 'step'; ms: number };
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constant('deposit' as const), n: fc.integer({ min: 1, max: 30 }) }),
    fc.record({ kind: fc.constant('withdraw' as const), n: fc.integer({ min: 1, max: 10 }) }),
    fc.record({
      kind: fc.constant('step' as const),
      ms: fc.oneof(
        fc.integer({ min: 0, max: 300 }),
        fc.integer({ min: 0, max: 5_000 }),
        fc.constant(-1),
        fc.integer({ min: -200_000, max: -1 }),
      ),
    }),
  );

  it('matches a model that keeps every call and retry with its time: each withdrawal decided alike', () => {
    fc.assert(
      fc.property(
        fc.array(op, { minLength: 1, maxLength: 80 }),
        fc.constantFrom(0, 0.1, 0.2, 1, 2.5),
        fc.constantFrom(0, 1, 2, 10),
        fc.constantFrom(1_000, 1_500, 10_000),
        fc.integer({ min: 0, max: 2e12 }),
        (ops, ratio, minPerSecond, ttl, start) => {
          let now = start;
          const clock = { now: () => now, setTimeout: () => 0 as never, clearTimeout: () => {} };
          const budget = retryBudget({ ratio, minPerSecond, ttl, clock: clock as never, policies: false });
          // The model, call by call (the budget counts by slice): counts per slice of ttl/10 ms,
          // a slice leaving the window whole; the clock stepping back moves the window with it,
          // each slice keeping its age. Each call earns `ratio`; a retry spends 1 of
          // the unspent earnings, the oldest calls' first, when the calls earned it whole. Else,
          // while they earned less than the floor, the floor lets it through: it spends what is
          // unspent and owes the rest, which the next calls pay (oldest debt first) while it is in
          // the window. A retry leaves with its own slice, whoever paid for it.
          const slice = ttl / 10;
          let latest = Math.floor(now / slice);
          let calls: { slice: number; spent: number }[] = [];
          let retries: { slice: number; owing: number }[] = [];
          const advance = () => {
            const s = Math.floor(now / slice);
            if (s < latest) {
              for (const c of calls) c.slice += s - latest;
              for (const r of retries) r.slice += s - latest;
              latest = s;
            } else if (s > latest) latest = s;
            calls = calls.filter((c) => c.slice > latest - 10);
            retries = retries.filter((r) => r.slice > latest - 10);
          };
          const total = (ns: number[]) => ns.reduce((a, b) => a + b, 0);
          const spend = (amount: number) => {
            for (const c of calls) {
              const n = Math.min(amount, ratio - c.spent);
              if (n <= 0) continue;
              c.spent += n;
              amount -= n;
            }
          };
          const floor = (minPerSecond * ttl) / 1000;
          const tolerance = (earned: number) => 1e-9 * Math.max(1, earned);
          for (const o of ops) {
            if (o.kind === 'step') now = Math.max(0, now + o.ms);
            else if (o.kind === 'deposit') {
              for (let i = 0; i < o.n; i++) {
                budget.deposit();
                advance();
                const call = { slice: latest, spent: 0 };
                calls.push(call);
                let pay = Math.min(ratio, total(retries.map((r) => r.owing)));
                call.spent = pay;
                for (const r of retries) {
                  const n = Math.min(pay, r.owing);
                  r.owing -= n;
                  pay -= n;
                }
              }
            } else {
              for (let i = 0; i < o.n; i++) {
                advance();
                const earned = ratio * calls.length;
                const unspent = earned - total(calls.map((c) => c.spent));
                const whole = retries.length + 1 <= earned + tolerance(earned) && unspent >= 1 - tolerance(earned);
                const floored = !whole && earned < floor && retries.length + 1 <= floor + 1e-9;
                expect(budget.tryWithdraw()).toBe(whole || floored);
                if (whole) spend(1);
                else if (floored) spend(Math.min(1, Math.max(0, unspent)));
                if (whole || floored) {
                  const owing = floored && ratio > 0 ? 1 - Math.min(1, Math.max(0, unspent)) : 0;
                  retries.push({ slice: latest, owing });
                  // A retry granted never takes the window past what the ratio or the floor
                  // allows. (Checked when granted: the calls that allowed it may leave the window
                  // before it does.)
                  expect(retries.length).toBeLessThanOrEqual(Math.max(ratio * calls.length, floor) + 1e-9);
                }
              }
            }
            advance();
            const earned = ratio * calls.length;
            const unspent = earned - total(calls.map((c) => c.spent));
            expect(budget.balance).toBe(
              Math.max(
                0,
                Math.floor(Math.min(unspent, earned - retries.length) + tolerance(earned)),
                earned < floor ? Math.floor(floor - retries.length + 1e-9) : 0,
              ),
            );
          }
          budget.dispose();
        },
      ),
      {
        numRuns: 1_000,
        // Found by the review of 74b9cce4 (seed 1779626648): the model still moved a paid advance
        // to the slice of the call that paid, where the budget now lets it leave with its own.
        // Found by CI (seed 235761485): the call that allowed a retry left the window before the
        // retry did, and the test's own bound, checked after every withdrawal, failed.
        examples: [
          [
            [
              { kind: 'deposit', n: 1 },
              { kind: 'step', ms: 1261 },
              { kind: 'withdraw', n: 1 },
              { kind: 'step', ms: 218 },
              { kind: 'withdraw', n: 1 },
              { kind: 'step', ms: 0 },
            ],
            2.5,
            0,
            1_500,
            21,
          ],
          [
            [
              { kind: 'withdraw', n: 1 },
              { kind: 'step', ms: 4_682 },
              { kind: 'deposit', n: 10 },
              { kind: 'step', ms: 4_374 },
              { kind: 'step', ms: -1 },
            ],
            0.1,
            1,
            10_000,
            653_404_057_944,
          ],
        ],
      },
    );
  });
});

describe('retry: the caller aborts at any moment', () => {
  it('during an attempt or a wait: rejects with the caller reason, no attempt starts after, no timer is left', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 2, max: 6 }),
        fc.constantFrom('full', 'equal', 'decorrelated', 'none'),
        fc.integer({ min: 0, max: 3_000 }),
        fc.integer({ min: 0, max: 30 }),
        fc.boolean(),
        async (maxAttempts, jitter, abortAt, attemptMs, slowAttempt) => {
          const { clock, bus } = setup();
          const policy = retry({
            maxAttempts,
            jitter: jitter as 'full',
            backoff: { initialDelay: 100, maxDelay: 1_000 },
            budget: false,
            clock,
            bus,
            random: () => 0.5,
          });
          const controller = new AbortController();
          const reason = new Error('caller left');
          let attempts = 0;
          let afterAbort = 0;
          let inFlight = false;
          const call = policy.execute(
            async () => {
              attempts++;
              if (controller.signal.aborted) afterAbort++;
              inFlight = true;
              if (slowAttempt) await new Promise<void>((r) => clock.setTimeout(r, attemptMs));
              inFlight = false;
              throw new Error('down');
            },
            { signal: controller.signal },
          );
          const settled = call.then(
            () => 'resolved',
            (e: unknown) => e,
          );
          await clock.advance(abortAt);
          const done = await Promise.race([settled, Promise.resolve('pending')]);
          const waiting = done === 'pending' && !inFlight;
          controller.abort(reason);
          await clock.advance(0);
          // In a wait: the abort ends it at once, the call rejects without the clock moving on.
          if (waiting) expect(await Promise.race([settled, Promise.resolve('pending')])).toBe(reason);
          // An attempt in flight that ignores its signal is waited for (retry does not cut it):
          // its own timer runs out here.
          await clock.runAll();
          const outcome = done === 'pending' ? await settled : done;
          if (done === 'pending') {
            // Aborted before it gave up: the caller's reason, at once.
            expect(outcome).toBe(reason);
          } else {
            expect(outcome).toMatchObject({ code: 'E_RETRY_EXHAUSTED' });
          }
          expect(afterAbort).toBe(0);
          expect(attempts).toBeLessThanOrEqual(maxAttempts);
          expect(clock.pending).toBe(0);
        },
      ),
      { numRuns: 300 },
    );
  });
});
