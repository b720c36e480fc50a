import { getEventListeners } from 'node:events';
import { type CallContext, DisposedError } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { recordWarnings, tick } from '../../../test/support/warnings.js';
import { retry, retryBudget } from '../src/index.js';
import { finish, response, setup } from './support.js';

/** A policy on a manual clock with no jitter: 100 ms, then 200 ms, then 400 ms. */
function policy(extra: Parameters<typeof retry>[0] = {}) {
  const env = setup();
  const p = retry({ clock: env.clock, bus: env.bus, jitter: 'none', budget: false, name: 'orders', ...extra });
  return { ...env, policy: p };
}

/** Fails with a new error per attempt (`attempt 1`, `attempt 2`, ...), and succeeds from attempt `okFrom`. */
function downstream(okFrom = Number.POSITIVE_INFINITY) {
  const errors: Error[] = [];
  const fn = (ctx: CallContext) => {
    if (ctx.attempt >= okFrom) return 'ok';
    const error = Object.assign(new Error(`attempt ${ctx.attempt}`), { code: 'ECONNRESET' });
    errors.push(error);
    throw error;
  };
  return { fn, errors };
}

const warnings = recordWarnings();

describe('a retry budget disposed while a call waits between attempts (review)', () => {
  it('the call ends with the last attempt error as is, and retry.giveUp says disposed', async () => {
    const budget = retryBudget({ policies: false });
    const { policy: p, ...env } = policy({ budget, maxAttempts: 5 });
    const { fn, errors } = downstream();
    const call = p.execute(fn).catch((e: unknown) => e);
    await env.clock.advance(0);
    expect(errors).toHaveLength(1); // attempt 1 failed; the wait before attempt 2 runs
    budget.dispose();
    await finish(env.clock);
    const outcome = await call;
    expect(outcome).not.toBeInstanceOf(DisposedError);
    expect(outcome).toBe(errors.at(-1));
    expect(errors).toHaveLength(2); // attempt 2 ran (its retry was drawn before the dispose), no third
    expect(env.of('retry.attempt').map((e) => e.attempt)).toEqual([2]);
    expect(env.of('retry.giveUp').map(({ attempts, reason, code }) => ({ attempts, reason, code }))).toEqual([
      { attempts: 2, reason: 'disposed', code: 'ECONNRESET' },
    ]);
    // Disposed is no bug of the user's: nothing to warn of.
    await tick();
    expect(warnings.filter((w) => w.code?.startsWith('HOLDFAST'))).toEqual([]);
  });

  it('a retried result is returned as is', async () => {
    const budget = retryBudget({ policies: false });
    const { policy: p, ...env } = policy({ budget });
    const answers = [response(503), response(503), response(503)];
    const call = p.execute(() => answers.shift());
    await env.clock.advance(0);
    budget.dispose();
    await finish(env.clock);
    expect((await call)?.status).toBe(503);
    expect(answers).toHaveLength(1);
    expect(env.of('retry.giveUp').map((e) => [e.attempts, e.reason])).toEqual([[2, 'disposed']]);
  });

  it('a call started after the dispose is refused with E_DISPOSED, before any attempt', async () => {
    const budget = retryBudget({ policies: false });
    const { policy: p, ...env } = policy({ budget });
    budget.dispose();
    let ran = 0;
    await expect(p.execute(() => ++ran)).rejects.toBeInstanceOf(DisposedError);
    expect(ran).toBe(0);
    expect(env.events).toEqual([]);
  });

  it("a call refused for it lets go of the caller's signal: no listener is left on it", async () => {
    const budget = retryBudget({ policies: false });
    const { policy: p } = policy({ budget });
    budget.dispose();
    const shutdown = new AbortController(); // one long-lived signal, as a server's
    for (let i = 0; i < 3; i++) {
      await expect(p.execute(() => 'ok', { signal: shutdown.signal })).rejects.toBeInstanceOf(DisposedError);
    }
    expect(getEventListeners(shutdown.signal, 'abort')).toHaveLength(0);
  });
});

describe('onRetry that throws or rejects (review)', () => {
  for (const [how, hook] of [
    [
      'throws',
      () => {
        throw new TypeError('log sink closed');
      },
    ],
    ['rejects', () => Promise.reject(new TypeError('log sink closed'))],
  ] as const) {
    it(`${how}: the retry goes on as planned, and the call ends as it would have without the hook`, async () => {
      const { clock, of, policy: p } = policy({ onRetry: hook, maxAttempts: 3 });
      const { fn } = downstream(3);
      const call = p.execute(fn);
      await finish(clock);
      await expect(call).resolves.toBe('ok');
      expect(of('retry.attempt').map((e) => [e.attempt, e.delay])).toEqual([
        [2, 100],
        [3, 200],
      ]);
      expect(of('retry.giveUp')).toEqual([]);
    });

    it(`${how}: a call that runs out ends with RetryExhaustedError, every retry.attempt followed by its giveUp`, async () => {
      const { clock, of, policy: p } = policy({ onRetry: hook, maxAttempts: 3 });
      const { fn, errors } = downstream();
      const call = p.execute(fn).catch((e: unknown) => e);
      await finish(clock);
      expect(await call).toMatchObject({ code: 'E_RETRY_EXHAUSTED', attempts: 3, cause: errors[2] });
      expect(of('retry.attempt').map((e) => e.attempt)).toEqual([2, 3]);
      expect(of('retry.giveUp').map((e) => [e.attempts, e.reason])).toEqual([[3, 'maxAttempts']]);
    });
  }

  it('is told once per policy, as a process warning (HOLDFAST_PREDICATE_ERROR) naming the policy and the hook', async () => {
    let calls = 0;
    const { clock, policy: p } = policy({
      onRetry: () => {
        calls++;
        throw new TypeError('log sink closed');
      },
    });
    for (let i = 0; i < 3; i++) {
      const call = p.execute(downstream(2).fn);
      await finish(clock);
      await call;
    }
    await tick();
    expect(calls).toBe(3);
    const told = warnings.filter((w) => w.code === 'HOLDFAST_PREDICATE_ERROR');
    expect(told).toHaveLength(1);
    expect(told[0]?.message).toMatch(/^orders: onRetry threw .*log sink closed$/);
  });

  it('a throw whose message cannot be read is still told, and still breaks nothing', async () => {
    const unreadable = new Proxy(new Error('x'), {
      get() {
        throw new Error('no reading me');
      },
      getPrototypeOf() {
        throw new Error('no reading me');
      },
    });
    const { clock, policy: p } = policy({
      onRetry: () => {
        throw unreadable;
      },
    });
    const call = p.execute(downstream(2).fn);
    await finish(clock);
    await expect(call).resolves.toBe('ok');
    await tick();
    expect(warnings.filter((w) => w.code === 'HOLDFAST_PREDICATE_ERROR')).toHaveLength(1);
  });
});
