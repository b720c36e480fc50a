import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { retry } from '../src/index.js';
import { finish, response, setup } from './support.js';

/** A policy on a manual clock with no jitter and no budget. */
function policy(extra: Parameters<typeof retry>[0] = {}) {
  const env = setup();
  const p = retry({ clock: env.clock, bus: env.bus, jitter: 'none', budget: false, name: 'orders', ...extra });
  return { ...env, policy: p };
}

const reset = () => Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });

let warnings: { name: string; code?: string; message: string }[] = [];
const onWarning = (w: Error & { code?: string }) => warnings.push({ name: w.name, code: w.code, message: w.message });
beforeEach(() => {
  warnings = [];
  process.on('warning', onWarning);
});
afterEach(() => {
  process.off('warning', onWarning);
});
const ours = () => warnings.filter((w) => w.code === 'HOLDFAST_PREDICATE_ERROR');
const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('retryOn predicates that throw (review)', () => {
  it('retryOn.error that throws: no retry, the call fails with its own error as is, retry.giveUp says notRetryable', async () => {
    // A predicate written for HTTP errors, met by a network error without `response`.
    const {
      clock,
      of,
      policy: p,
    } = policy({
      retryOn: { error: (e) => (e as { response: { status: number } }).response.status >= 500 },
    });
    const original = reset();
    let attempts = 0;
    const call = p
      .execute(() => {
        attempts++;
        throw original;
      })
      .catch((e: unknown) => e);
    await finish(clock);
    expect(await call).toBe(original);
    expect(attempts).toBe(1);
    expect(of('retry.giveUp').map(({ attempts, reason, code }) => ({ attempts, reason, code }))).toEqual([
      { attempts: 1, reason: 'notRetryable', code: 'ECONNRESET' },
    ]);
    expect(of('retry.attempt')).toEqual([]);
  });

  it('retryOn.error that rejects on a later attempt: the same, after that attempt', async () => {
    const broke = new Error('lookup failed');
    const {
      clock,
      of,
      policy: p,
    } = policy({
      retryOn: { error: async (_e, attempt) => (attempt < 2 ? true : Promise.reject(broke)) },
    });
    const last = reset();
    let attempts = 0;
    const call = p
      .execute(() => {
        attempts++;
        throw attempts === 2 ? last : reset();
      })
      .catch((e: unknown) => e);
    await finish(clock);
    expect(await call).toBe(last);
    expect(attempts).toBe(2);
    expect(of('retry.giveUp').map((e) => [e.attempts, e.reason])).toEqual([[2, 'notRetryable']]);
  });

  it('a predicate that throws is told once per policy, as a process warning that names the policy', async () => {
    const { clock, policy: p } = policy({
      retryOn: {
        error: () => {
          throw new TypeError('predicate bug');
        },
      },
    });
    for (let i = 0; i < 3; i++) {
      const call = p.execute(() => Promise.reject(reset())).catch(() => undefined);
      await finish(clock);
      await call;
    }
    await tick();
    expect(ours()).toHaveLength(1);
    expect(ours()[0]?.message).toContain('orders');
    expect(ours()[0]?.message).toContain('retryOn.error');
    expect(ours()[0]?.message).toContain('predicate bug');
  });

  it('retryOn.result that throws on the first attempt: the result is returned as is, not retried', async () => {
    const {
      clock,
      of,
      policy: p,
    } = policy({
      retryOn: {
        result: () => {
          throw new Error('result predicate bug');
        },
      },
    });
    const first = response(503);
    let attempts = 0;
    const call = p.execute(() => {
      attempts++;
      return first;
    });
    await finish(clock);
    expect(await call).toBe(first);
    expect(attempts).toBe(1);
    expect(of('retry.giveUp').map((e) => [e.attempts, e.reason, e.code])).toEqual([[1, 'notRetryable', 'HTTP 503']]);
  });

  it('retryOn.result that throws on a later attempt: that result is returned, nothing more runs', async () => {
    // Inside p-retry's loop the predicate's error was taken for the attempt's: retried as `undefined`.
    const {
      clock,
      of,
      policy: p,
    } = policy({
      maxAttempts: 5,
      retryOn: {
        result: (r) => {
          if ((r as { n: number }).n >= 2) throw new Error('result predicate bug');
          return true;
        },
      },
    });
    let attempts = 0;
    const call = p
      .execute(() => ({ n: ++attempts }))
      .then(
        (value) => ({ value }),
        (error: unknown) => ({ error }),
      );
    await finish(clock);
    expect(await call).toEqual({ value: { n: 2 } });
    expect(attempts).toBe(2);
    expect(of('retry.giveUp').map((e) => [e.attempts, e.reason])).toEqual([[2, 'notRetryable']]);
  });
});
