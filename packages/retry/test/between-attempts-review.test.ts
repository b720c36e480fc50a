import { type CallContext, DisposedError } from '@holdfast/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
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

let warnings: { code?: string; message: string }[] = [];
const onWarning = (w: Error & { code?: string }) => warnings.push({ code: w.code, message: w.message });
beforeEach(() => {
  warnings = [];
  process.on('warning', onWarning);
});
afterEach(() => {
  process.off('warning', onWarning);
});
const tick = () => new Promise((resolve) => setImmediate(resolve));

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
});
