import { type Clock, createBus, ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { parseRetryAfter, RetryExhaustedError, retry, retryBudget } from '../src/index.js';
import { finish, response, setup } from './support.js';

const MAX_TIMER = 2 ** 31 - 1;

/** A ManualClock that records every timer it is asked for. */
function recordingClock(start = Date.UTC(2026, 0, 1)) {
  const clock = new ManualClock(start);
  const timers: number[] = [];
  const setTimeout = clock.setTimeout.bind(clock);
  clock.setTimeout = (callback, ms) => {
    timers.push(ms);
    return setTimeout(callback, ms);
  };
  return { clock, timers };
}

/** A clock that only moves when told, backwards too: Date.now after an NTP step. */
function steppingClock(start: number) {
  let now = start;
  const clock: Clock = { now: () => now, setTimeout: () => undefined, clearTimeout: () => undefined };
  return { clock, add: (ms: number) => (now += ms) };
}

const settle = (p: Promise<unknown>) =>
  p.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );

/** Runs a retry of `maxAttempts` whose every attempt rejects with `value`, to its end. */
async function rejectEvery(value: unknown, maxAttempts: number) {
  const { clock } = setup();
  let calls = 0;
  const policy = retry({ clock, bus: createBus(), budget: false, maxAttempts });
  const call = settle(
    policy.execute(() => {
      calls++;
      return Promise.reject(value);
    }),
  );
  await finish(clock);
  return { calls, outcome: await call };
}

describe('Retry-After: hostile values never make a negative, NaN or over-long timer', () => {
  const hostile: unknown[] = [
    '-5',
    '-0',
    'NaN',
    'Infinity',
    '1e300',
    '1e3',
    '99999999999999999999999',
    '0x10',
    ' 12 ',
    '',
    '3.5',
    'Wed, 21 Oct 2015 07:28:00 GMT',
    'Fri, 31 Dec 275760 00:00:00 GMT',
    'Sat, 01 Jan 2050 00:00:00 GMT',
    'Mon',
    ['7', '8'],
    -1,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    1e300,
  ];
  // Hints past maxDelay (the longest timer): the retry gives up at once, after one call.
  const tooLong = new Set<unknown>(['99999999999999999999999', 'Sat, 01 Jan 2050 00:00:00 GMT', 1e300]);

  for (const value of hostile) {
    it(`Retry-After ${JSON.stringify(value)}`, async () => {
      const { clock, timers } = recordingClock();
      const delays: number[] = [];
      const policy = retry({
        clock,
        bus: createBus(),
        budget: false,
        maxAttempts: 2,
        backoff: { initialDelay: 100, maxDelay: MAX_TIMER },
        onRetry: ({ delay }) => {
          delays.push(delay);
        },
      });
      const headers = new Headers();
      if (typeof value === 'string') headers.set('retry-after', value);
      const error = Object.assign(new Error('busy'), {
        status: 503,
        response: { headers: typeof value === 'string' ? headers : { 'retry-after': value } },
      });
      let calls = 0;
      const call = settle(
        policy.execute(() => {
          calls++;
          throw error;
        }),
      );
      await finish(clock);
      expect((await call).ok).toBe(false);
      expect(calls).toBe(tooLong.has(value) ? 1 : 2);
      for (const ms of [...delays, ...timers]) {
        expect(Number.isFinite(ms)).toBe(true);
        expect(ms).toBeGreaterThanOrEqual(0);
        expect(ms).toBeLessThanOrEqual(MAX_TIMER);
      }
    });
  }

  it('an error whose own retryAfterMs is hostile is ignored, never a timer Node would clamp to 1 ms', async () => {
    for (const retryAfterMs of [-1, Number.NaN, Number.POSITIVE_INFINITY, 1e300, '5000', null]) {
      const { clock, timers } = recordingClock();
      const policy = retry({ clock, bus: createBus(), budget: false, maxAttempts: 2 });
      const call = settle(policy.execute(() => Promise.reject(Object.assign(new Error('busy'), { retryAfterMs }))));
      await finish(clock);
      expect((await call).ok).toBe(false);
      for (const ms of timers) expect(ms >= 0 && ms <= 10_000).toBe(true);
    }
  });

  it('a 503 Response asking for 99999999999 s, past maxDelay, is returned at once, with no timer', async () => {
    const { clock, timers } = recordingClock();
    const policy = retry({ clock, bus: createBus(), budget: false, maxAttempts: 2, backoff: { maxDelay: MAX_TIMER } });
    let calls = 0;
    const call = policy.execute(() => {
      calls++;
      return response(503, { 'retry-after': '99999999999' });
    });
    await finish(clock);
    expect((await call).status).toBe(503);
    expect({ calls, timers }).toEqual({ calls: 1, timers: [] });
  });

  it('parseRetryAfter answers ms in [0, ∞) or undefined, never NaN or negative', () => {
    const now = Date.UTC(2026, 0, 1);
    for (const value of ['-1', 'NaN', '1e3', '', ' ', 'Sun', 'Sun, 99 Foo 2026', '１２', '٣', -0, -1]) {
      const ms = parseRetryAfter(value, now);
      expect(ms === undefined || (ms >= 0 && !Number.isNaN(ms))).toBe(true);
    }
  });
});

describe('hostile random sources', () => {
  for (const [name, random] of [
    ['NaN', () => Number.NaN],
    ['2', () => 2],
    ['-1', () => -1],
    ['Infinity', () => Number.POSITIVE_INFINITY],
  ] as const) {
    it(`random() returning ${name} still waits within [0, maxDelay]`, async () => {
      for (const jitter of ['full', 'equal', 'decorrelated'] as const) {
        const { clock, timers } = recordingClock();
        const delays: number[] = [];
        const policy = retry({
          clock,
          bus: createBus(),
          budget: false,
          maxAttempts: 3,
          jitter,
          random,
          backoff: { initialDelay: 100, maxDelay: 1_000 },
          onRetry: ({ delay }) => {
            delays.push(delay);
          },
        });
        const call = settle(policy.execute(() => Promise.reject(new Error('flaky'))));
        await finish(clock);
        expect((await call).ok).toBe(false);
        for (const ms of [...delays, ...timers])
          expect({ jitter, ms, ok: ms >= 0 && ms <= 1_000 }).toMatchObject({ ok: true });
      }
    });
  }
});

describe('what the retried function throws', () => {
  it('a function that throws synchronously is retried like one that rejects', async () => {
    const { clock } = setup();
    let calls = 0;
    const policy = retry({ clock, bus: createBus(), budget: false, maxAttempts: 3 });
    const call = policy.execute(() => {
      calls++;
      if (calls < 3) throw new Error('sync');
      return 'ok';
    });
    await finish(clock);
    await expect(call).resolves.toBe('ok');
    expect(calls).toBe(3);
  });

  it('non-Error rejections (a string, undefined, null) are retried and end as the cause', async () => {
    for (const value of ['boom', undefined, null, 0]) {
      const { calls, outcome } = await rejectEvery(value, 3);
      expect(calls).toBe(3);
      expect(outcome.ok).toBe(false);
      const error = (outcome as { error: RetryExhaustedError }).error;
      expect(error).toBeInstanceOf(RetryExhaustedError);
      expect(error.cause).toBe(value);
    }
  });

  for (const field of ['name', 'message', 'code', 'cause', 'status', 'response'] as const) {
    it(`an error whose ${field} getter throws is retried as any error, and ends as the cause`, async () => {
      const { clock, bus, of } = setup();
      let calls = 0;
      const policy = retry({ clock, bus, budget: false, maxAttempts: 3 });
      const make = () => {
        const error = new Error('downstream failed');
        Object.defineProperty(error, field, {
          get() {
            throw new Error(`getter ${field} exploded`);
          },
        });
        return error;
      };
      let last: Error | undefined;
      const call = settle(
        policy.execute(() => {
          calls++;
          last = make();
          throw last;
        }),
      );
      await finish(clock);
      const outcome = await call;
      expect(calls).toBe(3);
      expect(outcome.ok).toBe(false);
      const error = (outcome as { error: unknown }).error;
      expect(error instanceof RetryExhaustedError && error.cause === last).toBe(true);
      expect(of('retry.giveUp').map((e) => e.reason)).toEqual(['maxAttempts']);
    });
  }

  it('a rejection no String() can read (a null-prototype object, a Proxy that throws) still ends as the cause', async () => {
    const proxy = new Proxy(
      {},
      {
        get() {
          throw new Error('proxy read');
        },
        getPrototypeOf() {
          throw new Error('proxy prototype');
        },
      },
    );
    for (const value of [Object.create(null), proxy]) {
      const { calls, outcome } = await rejectEvery(value, 2);
      expect(calls).toBe(2);
      const error = (outcome as { error: unknown }).error;
      expect(outcome.ok === false && error instanceof RetryExhaustedError && error.cause === value).toBe(true);
    }
  });

  it('a result that is a strict Proxy (throws on unknown properties, as some ORM rows do) is returned, not retried', async () => {
    const row = new Proxy(
      { id: 1 },
      {
        get(target, key) {
          if (key in target || key === 'then') return Reflect.get(target, key);
          throw new Error(`no column ${String(key)}`);
        },
      },
    );
    const { clock } = setup();
    let calls = 0;
    const policy = retry({ clock, bus: createBus(), budget: false });
    const result = await policy.execute(() => {
      calls++;
      return row;
    });
    expect(result === row).toBe(true);
    expect(calls).toBe(1);
  });
});

describe('abort during backoff', () => {
  it('leaves at once and leaves no timer behind, whatever the attempt in flight does', async () => {
    const { clock } = setup();
    const controller = new AbortController();
    let calls = 0;
    const policy = retry({ clock, bus: createBus(), budget: false, maxAttempts: 5, backoff: { initialDelay: 60_000 } });
    const call = settle(
      policy.execute(
        () => {
          calls++;
          throw new Error('down');
        },
        { signal: controller.signal },
      ),
    );
    await clock.advance(0);
    expect(clock.pending).toBe(1);
    const reason = new Error('caller left');
    controller.abort(reason);
    // No time passes: the call settles on the abort alone.
    const outcome = await call;
    expect(outcome).toEqual({ ok: false, error: reason });
    expect(clock.pending).toBe(0);
    expect(calls).toBe(1);
  });
});

describe('the retry budget', () => {
  /** Total outage at `rate` calls a second for `seconds`, 4 attempts each: backend attempts per call. */
  async function amplification(rate: number, seconds: number): Promise<number> {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const budget = retryBudget({ clock, policies: false });
    const policy = retry({ clock, bus: createBus(), budget, maxAttempts: 4, backoff: { initialDelay: 10 } });
    let attempts = 0;
    const calls: Promise<unknown>[] = [];
    const down = () => {
      attempts++;
      return Promise.reject(new Error('down'));
    };
    const perMs = rate / 1_000;
    let owed = 0;
    for (let ms = 0; ms < seconds * 1_000; ms++) {
      owed += perMs;
      for (; owed >= 1; owed--) calls.push(policy.execute(down).catch(() => undefined));
      await clock.advance(1);
    }
    await clock.runAll();
    await Promise.all(calls);
    return attempts / calls.length;
  }

  it('under a total outage keeps backend attempts per call within 1 + ratio (plus the floor at low rates)', async () => {
    // The floor of 2 a second stands in for the ratio below 10 calls a second; at 10 a second both give 2.
    const measured = [await amplification(10, 3), await amplification(100, 3), await amplification(1_000, 2)];
    console.log('attempts per call at 10, 100, 1000 calls/s:', measured.map((m) => m.toFixed(3)).join(', '));
    for (const m of measured) expect(m).toBeLessThanOrEqual(1.2 + 1e-9);
  }, 60_000);

  it('a clock that steps back an hour does not let an hour of calls pay for retries in an outage', () => {
    const t = steppingClock(10_000_000);
    const budget = retryBudget({ clock: t.clock, policies: false, ratio: 0.2, minPerSecond: 0 });
    t.add(-3_600_000);
    // Ten minutes of healthy traffic at 100 calls a second.
    for (let s = 0; s < 600; s++) {
      for (let i = 0; i < 100; i++) budget.deposit();
      t.add(1_000);
    }
    // A 1 s window holds the last second's 100 calls: 20 retries, not 12,000.
    expect(budget.balance).toBeLessThanOrEqual(20);
  });
});
