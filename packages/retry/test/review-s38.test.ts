// Outside review (s38): bugs a user hits, each `it` failing on the current code.
import { createBus } from '@holdfast/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { setup } from './support.js';

const realSetTimeout = globalThis.setTimeout;
/** Real time, whatever timers are faked: bounds every wait in this file. */
const tick = (ms: number) => new Promise<'pending'>((resolve) => realSetTimeout(() => resolve('pending'), ms));

afterEach(() => {
  vi.useRealTimers();
});

// Keep this first, and import no p-retry statically: the bug shows on the first retry of a process.
describe('vitest fake timers (vi.useFakeTimers), on the default real clock', () => {
  it('advancing past every backoff runs every attempt: a fresh process does not lose a retry while p-retry loads', async () => {
    // A fresh copy of the package, as in the first test of any user's test file.
    vi.resetModules();
    const { retry } = await import('../src/index.js');
    vi.useFakeTimers();
    let calls = 0;
    const policy = retry({
      maxAttempts: 3,
      jitter: 'none',
      backoff: { initialDelay: 100 }, // waits of 100 and 200 ms: 300 ms in all
      budget: false,
      bus: createBus(),
    });
    const outcome = policy
      .execute(async () => {
        calls++;
        throw new Error('ECONNRESET');
      })
      .then(
        () => 'resolved',
        (error: unknown) => error,
      );
    await vi.advanceTimersByTimeAsync(1_000); // more than three times the backoffs
    const settled = await Promise.race([outcome, tick(300)]);
    vi.useRealTimers();
    expect(calls).toBe(3);
    expect(settled).toMatchObject({ code: 'E_RETRY_EXHAUSTED', attempts: 3 });
  });
});

describe("p-retry's AbortError, 'still honoured' per the migration table", () => {
  it('throw new AbortError(error) rejects with that error, as p-retry does, not with the AbortError wrapper', async () => {
    const { retry } = await import('../src/index.js');
    const { default: pRetry, AbortError } = await import('p-retry');
    const { clock, bus } = setup();
    const notFound = Object.assign(new Error('HTTP 404'), { status: 404 });
    const fn = async () => {
      throw new AbortError(notFound);
    };
    // The anchor: p-retry stops and rejects with the original error.
    expect(await pRetry(fn, { retries: 3, minTimeout: 0 }).catch((e: unknown) => e)).toBe(notFound);
    const got = await retry({ clock, bus, budget: false })
      .execute(fn)
      .catch((e: unknown) => e);
    // Holdfast rejects with p-retry's AbortError itself: `e.status` is gone, and `e.name ===
    // 'AbortError'` reads as "the caller cancelled" in the usual abort handling.
    expect(got).toBe(notFound);
  });
});

describe('maxElapsed with an async onRetry (the wait starts when it settles)', () => {
  it('a retry whose wait ends past maxElapsed is not made, even when onRetry took the time (a token refresh)', async () => {
    const { retry } = await import('../src/index.js');
    const { clock, bus, of } = setup();
    let calls = 0;
    const policy = retry({
      clock,
      bus,
      budget: false,
      maxAttempts: 5,
      jitter: 'none',
      backoff: { initialDelay: 100 },
      maxElapsed: 1_000,
      // e.g. refreshing a credential before the retry: 2 s on the policy's clock.
      onRetry: () => new Promise<void>((resolve) => clock.setTimeout(resolve, 2_000)),
    });
    const startedAt: number[] = [];
    const outcome = policy
      .execute(async () => {
        calls++;
        startedAt.push(clock.now() - Date.UTC(2026, 0, 1));
        throw new Error('ECONNRESET');
      })
      .catch((e: unknown) => e);
    for (let i = 0; i < 20; i++) await clock.advance(500);
    const error = await Promise.race([outcome, tick(500)]);
    // The second attempt would start at 2,100 ms, past maxElapsed (1,000 ms): it must not run.
    expect(startedAt.filter((t) => t > 1_000)).toEqual([]);
    expect(error).toMatchObject({ code: 'E_RETRY_EXHAUSTED', reason: 'maxElapsed' });
    expect(of('retry.giveUp').map((e) => e.reason)).toEqual(['maxElapsed']);
    expect(calls).toBe(1);
  });
});

describe('found while fixing', () => {
  it('a Retry-After of more seconds than a double holds gives up with a finite wait, not Infinity', async () => {
    const { retry, parseRetryAfter } = await import('../src/index.js');
    const huge = '9'.repeat(400);
    expect(parseRetryAfter(huge, 0)).toBe(2 ** 31 * 1000);
    expect(parseRetryAfter(1e308, 0)).toBe(2 ** 31 * 1000);
    const { clock, bus, of } = setup();
    const error = await retry({ clock, bus, budget: false })
      .execute(async () => {
        throw Object.assign(new Error('HTTP 503'), { status: 503, headers: { 'retry-after': huge } });
      })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'E_RETRY_EXHAUSTED', reason: 'retryAfter', retryAfter: 2 ** 31 * 1000 });
    expect((error as Error).message).toContain('asked to wait 2147483648000 ms, longer than maxDelay (10000 ms)');
    expect(of('retry.giveUp').map((e) => e.reason)).toEqual(['retryAfter']);
  });

  it("README's Events section lists every retry.giveUp reason the code emits, 'disposed' too", async () => {
    const { readFileSync } = await import('node:fs');
    const source = readFileSync(new URL('../src/retry.ts', import.meta.url), 'utf8');
    const union = /type GiveUpReason = ([^;]+);/.exec(source)?.[1] ?? '';
    const reasons = [...union.matchAll(/'(\w+)'/g)].map((m) => m[1]);
    expect(reasons).toContain('disposed');
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const section = /### `retry\.giveUp`\n([\s\S]*?)\n###/.exec(readme)?.[1] ?? '';
    for (const reason of reasons) expect(section).toContain(`\`${reason}\``);
  });

  it('execute() with no function rejects with a TypeError naming the argument, and counts no call', async () => {
    const { retry, retryBudget } = await import('../src/index.js');
    const { clock, bus } = setup();
    const budget = retryBudget({ clock });
    const policy = retry({ clock, bus, budget, name: 'inventory' });
    for (const [fn, got] of [
      [undefined, 'undefined'],
      [null, 'null'],
      ['fetch', 'string'],
    ] as const) {
      const error = await policy.execute(fn as never).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TypeError);
      expect((error as Error).message).toBe(`inventory: execute(fn): fn must be a function (got ${got})`);
    }
    expect(budget.snapshot().calls).toBe(0);
  });

  it("p-retry's AbortError('message') rejects with the Error p-retry makes of it; fetch's AbortError stays as is", async () => {
    const { retry } = await import('../src/index.js');
    const { default: pRetry, AbortError } = await import('p-retry');
    const { clock, bus, of } = setup();
    const policy = retry({ clock, bus, budget: false });
    const fn = async () => {
      throw new AbortError('gone for good');
    };
    const anchor = await pRetry(fn, { retries: 1, minTimeout: 0 }).catch((e: unknown) => e);
    const got = await policy.execute(fn).catch((e: unknown) => e);
    expect(got).not.toBeInstanceOf(AbortError);
    expect(got).toMatchObject({ name: (anchor as Error).name, message: (anchor as Error).message });
    // A fetch abort (a DOMException named AbortError) has no originalError: thrown as is.
    const fetchAbort = new DOMException('This operation was aborted', 'AbortError');
    expect(
      await policy
        .execute(async () => {
          throw fetchAbort;
        })
        .catch((e: unknown) => e),
    ).toBe(fetchAbort);
    // The event labels what the call rejects with.
    expect(of('retry.giveUp').map((e) => [e.reason, e.code])).toEqual([
      ['notRetryable', 'Error'],
      ['notRetryable', 'AbortError'],
    ]);
  });

  it('maxElapsed passed during onRetry, on a retried Response: the last Response is returned whole, attempts 1', async () => {
    const { retry } = await import('../src/index.js');
    const { clock, bus, of } = setup();
    const policy = retry({
      clock,
      bus,
      budget: false,
      jitter: 'none',
      maxElapsed: 1_000,
      onRetry: () => new Promise<void>((resolve) => clock.setTimeout(resolve, 2_000)),
    });
    const last = new Response('busy', { status: 503 });
    let calls = 0;
    const outcome = policy.execute(async () => {
      calls++;
      return last;
    });
    for (let i = 0; i < 10; i++) await clock.advance(500);
    const got = await Promise.race([outcome, tick(500)]);
    expect(got).toBe(last);
    expect(calls).toBe(1);
    expect(await last.text()).toBe('busy'); // not cancelled for a retry that was not made
    expect(of('retry.giveUp').map((e) => [e.reason, e.attempts])).toEqual([['maxElapsed', 1]]);
  });
});
