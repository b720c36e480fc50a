import { BrokenCircuitError, type CallContext, pipeline, TimeoutError, timeout } from '@holdfast/core';
import pRetry from 'p-retry';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { nonRetryable, RetryExhaustedError, retry } from '../src/index.js';
import { finish, httpError, setup } from './support.js';

// A spy around the real p-retry: it shows when a call enters p-retry, and still drives the loop.
vi.mock('p-retry', async (importOriginal) => {
  const real = await importOriginal<typeof import('p-retry')>();
  return { ...real, default: vi.fn(real.default) };
});

beforeEach(() => {
  vi.mocked(pRetry).mockClear();
});

/** A policy on a manual clock with no jitter, no budget, 100 ms then 200 ms then 400 ms. */
function policy(extra: Parameters<typeof retry>[0] = {}) {
  const env = setup();
  const p = retry({ clock: env.clock, bus: env.bus, jitter: 'none', budget: false, name: 'orders', ...extra });
  return { ...env, policy: p };
}

/** A function that fails with `errors` in turn, then returns 'ok'. */
function failing(...errors: unknown[]) {
  const seen: number[] = [];
  const fn = (ctx: CallContext) => {
    seen.push(ctx.attempt);
    const error = errors.shift();
    if (error !== undefined) throw error;
    return 'ok';
  };
  return { fn, seen };
}

describe('retry()', () => {
  it('returns a first-try success without entering p-retry', async () => {
    const { policy: p } = policy();
    await expect(p.execute(() => 'ok')).resolves.toBe('ok');
    await expect(p.execute(async () => 42)).resolves.toBe(42);
    expect(pRetry).not.toHaveBeenCalled();
  });

  it('retries a failure through p-retry, each attempt with its own ctx.attempt', async () => {
    const { clock, policy: p } = policy();
    const { fn, seen } = failing(new Error('reset'), new Error('reset'));
    const call = p.execute(fn);
    await clock.advance(100);
    expect(seen).toEqual([1, 2]);
    await clock.advance(200);
    await expect(call).resolves.toBe('ok');
    expect(seen).toEqual([1, 2, 3]);
    expect(pRetry).toHaveBeenCalledTimes(1);
    expect(clock.pending).toBe(0);
  });

  it('waits each backoff on the clock, not a moment less', async () => {
    const { clock, policy: p } = policy({ maxAttempts: 4 });
    const { fn, seen } = failing(new Error('a'), new Error('b'), new Error('c'));
    const call = p.execute(fn);
    await clock.advance(99);
    expect(seen).toEqual([1]);
    await clock.advance(1);
    expect(seen).toEqual([1, 2]);
    await clock.advance(199);
    expect(seen).toEqual([1, 2]);
    await clock.advance(1);
    expect(seen).toEqual([1, 2, 3]);
    await clock.advance(400);
    await expect(call).resolves.toBe('ok');
  });

  it('throws RetryExhaustedError, with the last error as cause, when the attempts run out', async () => {
    const { clock, policy: p, of } = policy({ maxAttempts: 3 });
    const last = new Error('third');
    const { fn } = failing(new Error('first'), new Error('second'), last);
    const call = p.execute(fn);
    const outcome = expect(call).rejects.toSatisfy(
      (e: unknown) => e instanceof RetryExhaustedError && e.cause === last && e.attempts === 3,
    );
    await finish(clock);
    await outcome;
    await expect(call).rejects.toMatchObject({
      code: 'E_RETRY_EXHAUSTED',
      reason: 'maxAttempts',
      message: 'orders: gave up after 3 attempts: third',
    });
    expect(of('retry.attempt').map((e) => [e.attempt, e.delay, e.code])).toEqual([
      [2, 100, 'Error'],
      [3, 200, 'Error'],
    ]);
    expect(of('retry.giveUp')).toEqual([
      expect.objectContaining({ source: 'orders', attempts: 3, reason: 'maxAttempts', code: 'Error' }),
    ]);
  });

  it('retries a synchronous throw like a rejection', async () => {
    const { clock, policy: p } = policy();
    let n = 0;
    const call = p.execute(() => {
      if (++n === 1) throw new Error('sync');
      return n;
    });
    await clock.advance(100);
    await expect(call).resolves.toBe(2);
  });

  describe('stops at once, throwing the error as is', () => {
    const abortError = Object.assign(new Error('aborted by someone'), { name: 'AbortError' });
    const cases: [string, unknown][] = [
      ['an AbortError', abortError],
      ['a DOMException AbortError', new DOMException('aborted', 'AbortError')],
      ['a BrokenCircuitError', new BrokenCircuitError('payments', undefined)],
      ['a 404', httpError(404)],
      ['a 400 (statusCode)', Object.assign(new Error('bad'), { statusCode: 400 })],
      ['an error marked nonRetryable()', nonRetryable(new Error('invalid order'))],
      ['a TypeError from a bug', new TypeError('x.map is not a function')],
    ];
    for (const [what, error] of cases) {
      it(`on ${what}`, async () => {
        const { policy: p, of } = policy();
        const { fn, seen } = failing(error);
        await expect(p.execute(fn)).rejects.toBe(error);
        expect(seen).toEqual([1]);
        expect(of('retry.giveUp')).toEqual([expect.objectContaining({ attempts: 1, reason: 'notRetryable' })]);
      });
    }
  });

  describe('retries by default', () => {
    const cases: [string, unknown][] = [
      ['a network TypeError from fetch', new TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } })],
      ['a 408', httpError(408)],
      ['a 429', httpError(429)],
      ['a 503', httpError(503)],
      ['a socket error', Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })],
      ['a TimeoutError from an inner timeout()', new TimeoutError('timeout', 100)],
      ['a thrown string', 'oops'],
    ];
    for (const [what, error] of cases) {
      it(`${what}`, async () => {
        const { clock, policy: p } = policy();
        const { fn, seen } = failing(error);
        const call = p.execute(fn);
        await clock.advance(100);
        await expect(call).resolves.toBe('ok');
        expect(seen).toEqual([1, 2]);
      });
    }
  });

  it('retries what a custom retryOn.error says, but never an error marked nonRetryable()', async () => {
    const { clock, policy: p } = policy({ retryOn: { error: (e) => (e as Error).message === 'busy' } });
    const busy = failing(new Error('busy'));
    const call = p.execute(busy.fn);
    await clock.advance(100);
    await expect(call).resolves.toBe('ok');
    const other = new Error('other');
    await expect(p.execute(failing(other).fn)).rejects.toBe(other);
    const marked = nonRetryable(new Error('busy'));
    await expect(p.execute(failing(marked).fn)).rejects.toBe(marked);
  });

  it('hands retryOn.error the number of the attempt that failed', async () => {
    const attempts: number[] = [];
    const { clock, policy: p } = policy({
      maxAttempts: 5,
      retryOn: { error: (_e, attempt) => attempts.push(attempt) < 2 },
    });
    const last = new Error('2');
    const call = p.execute(failing(new Error('1'), last).fn);
    const outcome = expect(call).rejects.toBe(last);
    await finish(clock);
    await outcome;
    expect(attempts).toEqual([1, 2]);
  });

  it('calls onRetry before each wait; if onRetry throws, the retry goes on', async () => {
    const infos: unknown[] = [];
    const { clock, policy: p } = policy({ onRetry: (info) => infos.push(info) });
    const first = new Error('first');
    const call = p.execute(failing(first).fn);
    await clock.advance(100);
    await call;
    expect(infos).toEqual([{ attempt: 2, delay: 100, error: first, result: undefined }]);

    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    const { clock: qClock, policy: q } = policy({
      onRetry: () => {
        throw new Error('onRetry broke');
      },
    });
    const retried = q.execute(failing(new Error('x')).fn);
    await qClock.advance(100);
    await expect(retried).resolves.toBe('ok');
    expect(warn).toHaveBeenCalledTimes(1);
    warn.mockRestore();
  });

  it('goes on when an event listener throws', async () => {
    const { clock, bus, policy: p } = policy();
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    bus.on('retry.attempt', () => {
      throw new Error('listener broke');
    });
    const call = p.execute(failing(new Error('x')).fn);
    await clock.advance(100);
    await expect(call).resolves.toBe('ok');
    warn.mockRestore();
  });
});

describe('retry() on results', () => {
  it('retries a Response with status 503 and returns the next one', async () => {
    const { clock, policy: p, of } = policy();
    const unavailable = new Response('down', { status: 503 });
    const responses = [unavailable, new Response('fine', { status: 200 })];
    const call = p.execute(() => responses.shift() as Response);
    await clock.advance(100);
    const res = await call;
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('fine');
    // The dropped Response's body is cancelled, so its connection is freed.
    expect(unavailable.bodyUsed).toBe(true);
    expect(of('retry.attempt')).toEqual([expect.objectContaining({ attempt: 2, delay: 100, code: 'HTTP 503' })]);
  });

  it('returns the last Response, not an error, when the attempts run out', async () => {
    const { clock, policy: p, of } = policy({ maxAttempts: 2 });
    const call = p.execute(() => new Response('busy', { status: 429 }));
    await clock.advance(100);
    const res = await call;
    expect(res.status).toBe(429);
    expect(await res.text()).toBe('busy');
    expect(of('retry.giveUp')).toEqual([
      expect.objectContaining({ attempts: 2, reason: 'maxAttempts', code: 'HTTP 429' }),
    ]);
  });

  it('does not retry a 404 or a 200', async () => {
    const { policy: p } = policy();
    let calls = 0;
    const res = await p.execute(() => {
      calls++;
      return new Response(null, { status: 404 });
    });
    expect(res.status).toBe(404);
    expect(calls).toBe(1);
  });

  it('retries any result a custom retryOn.result rejects', async () => {
    const { clock, policy: p } = policy({ retryOn: { result: (r) => (r as { ready: boolean }).ready === false } });
    const results = [{ ready: false }, { ready: false }, { ready: true }];
    const call = p.execute(() => results.shift());
    await clock.advance(300);
    await expect(call).resolves.toEqual({ ready: true });
  });
});

describe('retry() and Retry-After', () => {
  it('waits the seconds a Response asks for instead of the backoff', async () => {
    const { clock, policy: p, of } = policy();
    const responses = [new Response(null, { status: 503, headers: { 'Retry-After': '3' } }), new Response('ok')];
    let calls = 0;
    const call = p.execute(() => {
      calls++;
      return responses.shift() as Response;
    });
    await clock.advance(2_999);
    expect(calls).toBe(1);
    await clock.advance(1);
    expect((await call).status).toBe(200);
    expect(of('retry.attempt')[0]?.delay).toBe(3_000);
  });

  it('waits until the HTTP-date on an error response', async () => {
    const { clock, policy: p, of } = policy();
    const at = new Date(clock.now() + 5_000).toUTCString(); // e.g. 'Thu, 01 Jan 2026 00:00:05 GMT'
    const call = p.execute(failing(httpError(429, { 'retry-after': at })).fn);
    await clock.advance(4_999);
    expect(of('retry.attempt')[0]?.delay).toBe(5_000);
    await clock.advance(1);
    await expect(call).resolves.toBe('ok');
  });

  it('reads headers given as a plain object (got, axios) and an error retryAfterMs', async () => {
    const { clock, policy: p, of } = policy({ maxAttempts: 3 });
    const plain = Object.assign(new Error('503'), { response: { status: 503, headers: { 'retry-after': '2' } } });
    const hinted = Object.assign(new Error('throttled'), { retryAfterMs: 750 });
    const call = p.execute(failing(plain, hinted).fn);
    await finish(clock);
    await expect(call).resolves.toBe('ok');
    expect(of('retry.attempt').map((e) => e.delay)).toEqual([2_000, 750]);
  });

  it('gives up at once on a Retry-After longer than maxDelay, and ignores it with retryAfter: false', async () => {
    const { clock, policy: p, of } = policy({ backoff: { maxDelay: 1_000 } });
    const asked = httpError(503, { 'retry-after': '120' });
    const call = p.execute(failing(asked).fn).catch((e: unknown) => e);
    await clock.advance(0);
    const error = await call;
    expect(error).toBeInstanceOf(RetryExhaustedError);
    expect(error).toMatchObject({ reason: 'retryAfter', attempts: 1, retryAfter: 120_000, cause: asked });
    expect(of('retry.attempt')).toEqual([]);
    expect(of('retry.giveUp')).toEqual([expect.objectContaining({ attempts: 1, reason: 'retryAfter' })]);

    const off = policy({ retryAfter: false });
    const ignored = off.policy.execute(failing(httpError(503, { 'retry-after': '120' })).fn);
    await off.clock.advance(100);
    await expect(ignored).resolves.toBe('ok');
  });

  it('takes an HTTP-date in the past as "now", and ignores a header it cannot read', async () => {
    const { clock, policy: p, of } = policy({ maxAttempts: 3 });
    const past = httpError(503, { 'retry-after': 'Wed, 21 Oct 2015 07:28:00 GMT' });
    const garbage = httpError(503, { 'retry-after': 'soon' });
    const call = p.execute(failing(past, garbage).fn);
    await clock.advance(200);
    await expect(call).resolves.toBe('ok');
    expect(of('retry.attempt').map((e) => e.delay)).toEqual([0, 200]);
  });
});

describe('retry() maxElapsed', () => {
  it('gives up when the next wait would end past maxElapsed, attempt time included', async () => {
    const { clock, policy: p, of } = policy({ maxAttempts: 10, maxElapsed: 500 });
    let calls = 0;
    // Each attempt takes 50 ms and fails: 0-50, wait 100, 150-200, wait 200, 400-450, then 450 + 400 > 500.
    const call = p.execute(
      () =>
        new Promise((_, reject) => {
          calls++;
          clock.setTimeout(() => reject(new Error(`slow ${calls}`)), 50);
        }),
    );
    const outcome = expect(call).rejects.toMatchObject({
      code: 'E_RETRY_EXHAUSTED',
      reason: 'maxElapsed',
      attempts: 3,
      message: 'orders: gave up after 3 attempts (maxElapsed reached): slow 3',
    });
    await finish(clock);
    await outcome;
    expect(calls).toBe(3);
    expect(clock.now() - Date.UTC(2026, 0, 1)).toBe(450);
    expect(of('retry.giveUp')[0]?.reason).toBe('maxElapsed');
  });
});

describe('retry() and aborts', () => {
  it('stops a wait at once when the caller aborts, rejecting with the reason', async () => {
    const { clock, policy: p, of } = policy({ backoff: { initialDelay: 10_000 } });
    const controller = new AbortController();
    const { fn, seen } = failing(new Error('down'));
    const call = p.execute(fn, { signal: controller.signal });
    await clock.advance(10);
    expect(clock.pending).toBe(1);
    const reason = new Error('user left');
    controller.abort(reason);
    await expect(call).rejects.toBe(reason);
    expect(seen).toEqual([1]);
    expect(clock.pending).toBe(0);
    expect(of('retry.giveUp')).toEqual([expect.objectContaining({ attempts: 1, reason: 'aborted' })]);
  });

  it('does not start when the signal is already aborted', async () => {
    const { policy: p } = policy();
    const fn = vi.fn();
    await expect(p.execute(fn, { signal: AbortSignal.abort(new Error('gone')) })).rejects.toThrow('gone');
    expect(fn).not.toHaveBeenCalled();
  });

  it("does not retry an attempt the caller aborted, and rejects with the caller's reason", async () => {
    const { policy: p } = policy();
    const controller = new AbortController();
    const reason = new Error('cancelled');
    let calls = 0;
    const call = p.execute(
      ({ signal }) =>
        new Promise((_, reject) => {
          calls++;
          signal.addEventListener('abort', () => reject(new Error('socket closed')));
        }),
      { signal: controller.signal },
    );
    controller.abort(reason);
    await expect(call).rejects.toBe(reason); // not the attempt's 'socket closed', as the docs say
    expect(calls).toBe(1);
  });

  it('an outer timeout() in a pipeline stops the retries and the wait', async () => {
    const { clock, bus } = setup();
    const p = pipeline(
      timeout(250, { clock, bus }),
      retry({ clock, bus, jitter: 'none', budget: false, maxAttempts: 10 }),
    );
    let calls = 0;
    const call = p.execute(() => {
      calls++;
      throw new Error('down');
    });
    const outcome = expect(call).rejects.toBeInstanceOf(TimeoutError);
    await clock.advance(250);
    await outcome;
    expect(calls).toBe(2); // at 0 and 100; the wait of 200 ms was cut at 250
    expect(clock.pending).toBe(0);
  });

  it('an inner timeout() in pipeline(retry, timeout) sees each attempt number, and its timeouts are retried', async () => {
    const { clock, bus } = setup();
    const p = pipeline(
      retry({ clock, bus, jitter: 'none', budget: false, maxAttempts: 3 }),
      timeout(50, { clock, bus }),
    );
    const seen: number[] = [];
    const call = p.execute(({ attempt, signal }) => {
      seen.push(attempt);
      if (attempt === 3) return 'third time lucky';
      return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
    });
    await finish(clock);
    await expect(call).resolves.toBe('third time lucky');
    expect(seen).toEqual([1, 2, 3]);
  });
});
