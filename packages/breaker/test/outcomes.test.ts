import { pipeline, TimeoutError, timeout } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { defaultIsFailure, type Settled } from '../src/index.js';
import { after, fail, failTimes, failure, setup, succeed } from './support.js';

const httpError = (status: number) => Object.assign(new Error(`HTTP ${status}`), { status });

describe('isFailure: three outcomes', () => {
  it('by default, a 4xx is not the downstream’s fault, but 408, 429 and 5xx are', () => {
    const judge = (error: unknown): string => defaultIsFailure({ ok: false, error });
    expect(judge(httpError(404))).toBe('success');
    expect(judge(httpError(400))).toBe('success');
    expect(judge({ statusCode: 409 })).toBe('success');
    expect(judge({ response: { status: 422 } })).toBe('success');
    expect(judge(httpError(408))).toBe('failure');
    expect(judge(httpError(429))).toBe('failure');
    expect(judge(httpError(503))).toBe('failure');
    expect(judge(failure('ECONNREFUSED'))).toBe('failure');
    expect(judge(Object.assign(new Error('aborted'), { name: 'AbortError' }))).toBe('ignored');
    expect(defaultIsFailure({ ok: true, result: new Response(null, { status: 502 }) })).toBe('failure');
    expect(defaultIsFailure({ ok: true, result: new Response(null, { status: 404 }) })).toBe('success');
    expect(defaultIsFailure({ ok: true, result: { status: 500 } })).toBe('success'); // not a Response
  });

  it('by default, a resolved 5xx Response counts as a failure and is still returned', async () => {
    const { breaker, of } = setup({ minimumCalls: 2 });
    const res = await breaker.execute(() => new Response('busy', { status: 503 }));
    expect(res.status).toBe(503);
    await breaker.execute(() => new Response('busy', { status: 503 }));
    expect(breaker.state).toBe('open');
    expect(of('breaker.failure').map((e) => e.code)).toEqual(['HTTP_503', 'HTTP_503']);
  });

  it('by default, 4xx errors keep the breaker closed and count as successes', async () => {
    const { breaker } = setup({ minimumCalls: 2 });
    for (let i = 0; i < 5; i++) {
      await breaker
        .execute(() => {
          throw httpError(404);
        })
        .catch(() => undefined);
    }
    expect(breaker.state).toBe('closed');
    expect(breaker.snapshot().window).toMatchObject({ calls: 5, successes: 5, failures: 0 });
  });

  it('a custom predicate decides failure, success or ignored, and ignored calls are not counted at all', async () => {
    const seen: Settled[] = [];
    const { breaker, types } = setup({
      minimumCalls: 2,
      isFailure: (settled) => {
        seen.push(settled);
        if (settled.ok) return settled.result === 'degraded' ? 'failure' : 'success';
        return (settled.error as { code?: string }).code === 'ENOTFOUND' ? 'ignored' : 'failure';
      },
    });
    await breaker.execute(() => 'degraded');
    await breaker.execute(fail('ENOTFOUND')).catch(() => undefined);
    await breaker.execute(fail('ENOTFOUND')).catch(() => undefined);
    expect(breaker.snapshot().window).toMatchObject({ calls: 1, failures: 1 });
    expect(breaker.state).toBe('closed');
    await breaker.execute(() => 'degraded');
    expect(breaker.state).toBe('open');
    expect(seen[0]).toEqual({ ok: true, result: 'degraded' });
    expect(seen[1]).toMatchObject({ ok: false, error: { code: 'ENOTFOUND' } });
    expect(types()).toEqual(['breaker.failure', 'breaker.failure', 'breaker.open']);
  });

  it('accepts booleans from the predicate, and counts a throwing predicate as a failure', async () => {
    const bools = setup({ minimumCalls: 1, isFailure: (s) => !s.ok });
    await bools.breaker.execute(succeed);
    expect(bools.breaker.state).toBe('closed');
    await failTimes(bools.breaker, 1);
    expect(bools.breaker.state).toBe('open');

    const broken = setup({
      minimumCalls: 1,
      isFailure: () => {
        throw new Error('predicate bug');
      },
    });
    await expect(broken.breaker.execute(succeed)).resolves.toBe('ok');
    expect(broken.breaker.state).toBe('open');
  });
});

describe('slow calls', () => {
  it('counts successes slower than slowCall.duration and opens at slowCall.rateThreshold', async () => {
    const { breaker, clock, of } = setup({ minimumCalls: 4, slowCall: { duration: 500, rateThreshold: 0.5 } });
    const call = async (ms: number) => {
      const p = breaker.execute(after(clock, ms, 'ok'));
      await clock.advance(ms);
      return p;
    };
    await call(100);
    await call(501);
    await call(500); // exactly the duration is not slow
    expect(breaker.state).toBe('closed');
    expect(of('breaker.slow')).toEqual([
      { type: 'breaker.slow', source: 'payments', time: 601, latency: 501, threshold: 500 },
    ]);
    await call(900); // 2 slow of 4
    expect(breaker.state).toBe('open');
    const opened = of('breaker.open')[0];
    expect(opened).toMatchObject({ reason: 'slowCallRate', slowCallRate: 0.5, failureRate: 0 });
    expect(breaker.snapshot().window).toMatchObject({ calls: 4, successes: 4, slow: 2, slowCallRate: 0.5 });
  });

  it('a slow probe fails the half-open test', async () => {
    const { breaker, clock } = setup({ minimumCalls: 1, openFor: 1_000, slowCall: { duration: 200 } });
    await failTimes(breaker, 1);
    await clock.advance(1_000);
    const probe = breaker.execute(after(clock, 300, 'slow but fine'));
    await clock.advance(300);
    await expect(probe).resolves.toBe('slow but fine');
    expect(breaker.state).toBe('open');
  });
});

describe('inside pipeline() with timeout()', () => {
  it('counts a timed-out call once, as a failure and a timeout', async () => {
    const { breaker, clock, of } = setup({ minimumCalls: 10 });
    const policy = pipeline(breaker, timeout(100, { clock }));
    const call = policy
      .execute(
        ({ signal }) =>
          new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('socket closed')))),
      )
      .catch((e: unknown) => e);
    await clock.advance(100);
    expect(await call).toBeInstanceOf(TimeoutError);
    expect(of('breaker.failure')).toEqual([
      { type: 'breaker.failure', source: 'payments', time: 100, latency: 100, code: 'E_TIMEOUT' },
    ]);
    expect(breaker.snapshot().window).toMatchObject({ calls: 1, failures: 1, timeouts: 1, rejects: 0 });
  });

  it('hands the caller’s signal through to the call', async () => {
    const { breaker } = setup();
    const caller = new AbortController();
    const policy = pipeline(breaker, timeout(1_000));
    const call = policy.execute(
      ({ signal }) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))),
      { signal: caller.signal },
    );
    caller.abort(Object.assign(new Error('user left'), { name: 'AbortError' }));
    await expect(call).rejects.toThrow('user left');
    expect(breaker.snapshot().window.calls).toBe(0); // the caller's abort is ignored
  });

  it('the breaker alone gives the function a context with a lazy signal and attempt 1', async () => {
    const { breaker } = setup();
    const ctx = await breaker.execute((c) => ({ attempt: c.attempt, aborted: c.signal.aborted }));
    expect(ctx).toEqual({ attempt: 1, aborted: false });
  });
});
