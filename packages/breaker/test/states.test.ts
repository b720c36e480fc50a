import { BrokenCircuitError, DisposedError, hasCode } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { after, fail, failTimes, setup, succeed } from './support.js';

describe('closed -> open', () => {
  it('opens when the failure rate reaches the threshold once minimumCalls are in the window', async () => {
    const { breaker, of } = setup({ failureRateThreshold: 0.5, minimumCalls: 4 });
    await breaker.execute(succeed);
    await failTimes(breaker, 2);
    expect(breaker.state).toBe('closed'); // 2 of 3 failed, but 3 < minimumCalls
    await breaker.execute(succeed);
    expect(breaker.state).toBe('closed'); // 2 of 4 is 0.5: not yet, the last call succeeded
    await failTimes(breaker, 1);
    expect(breaker.state).toBe('open'); // 3 of 5
    expect(of('breaker.open')).toEqual([
      {
        type: 'breaker.open',
        source: 'payments',
        time: 0,
        reason: 'failureRate',
        failureRate: 0.6,
        slowCallRate: 0,
        retryAt: 30_000,
        opens: 1,
        code: 'ECONNRESET',
      },
    ]);
  });

  it('in consecutiveFailures mode, opens after that many failures in a row and a success resets the count', async () => {
    const { breaker, of } = setup({ consecutiveFailures: 3, minimumCalls: 1 });
    await failTimes(breaker, 2);
    await breaker.execute(succeed);
    await failTimes(breaker, 2);
    expect(breaker.state).toBe('closed');
    expect(breaker.snapshot().consecutiveFailures).toBe(2);
    await failTimes(breaker, 1);
    expect(breaker.state).toBe('open');
    expect(of('breaker.open')[0]?.reason).toBe('consecutiveFailures');
  });
});

describe('open', () => {
  it('rejects with a BrokenCircuitError that says when it will next try, and never runs the call', async () => {
    const { breaker, clock, of } = setup({ minimumCalls: 1, openFor: 5_000 });
    await failTimes(breaker, 1);
    await clock.advance(1_000);
    let ran = false;
    const error = await breaker
      .execute(() => {
        ran = true;
      })
      .catch((e: unknown) => e);
    expect(ran).toBe(false);
    expect(error).toBeInstanceOf(BrokenCircuitError);
    expect(hasCode(error, 'E_CIRCUIT_OPEN')).toBe(true);
    expect(error).toMatchObject({
      retryAt: 5_000,
      message: 'payments: circuit is open until 1970-01-01T00:00:05.000Z',
    });
    expect(of('breaker.reject')).toEqual([
      {
        type: 'breaker.reject',
        source: 'payments',
        time: 1_000,
        state: 'open',
        retryAt: 5_000,
        code: 'E_CIRCUIT_OPEN',
        fallback: false,
      },
    ]);
  });

  it('gives each refused call an error of its own, without a stack trace', async () => {
    const { breaker } = setup({ minimumCalls: 1 });
    await failTimes(breaker, 1);
    const first = (await breaker.execute(succeed).catch((e: unknown) => e)) as BrokenCircuitError & {
      requestId?: string;
    };
    first.requestId = 'req-1';
    const second = (await breaker.execute(succeed).catch((e: unknown) => e)) as typeof first;
    expect(second).not.toBe(first);
    expect(second.requestId).toBeUndefined();
    expect(second).toBeInstanceOf(Error);
    expect(second).toMatchObject({ name: 'BrokenCircuitError', code: 'E_CIRCUIT_OPEN', retryAt: 30_000 });
    expect(second.stack).toBe(`BrokenCircuitError: ${second.message}`);
    expect(JSON.parse(JSON.stringify(second))).toEqual({
      name: 'BrokenCircuitError',
      code: 'E_CIRCUIT_OPEN',
      retryAt: 30_000,
    });
  });

  it('never counts a rejected call as an attempt', async () => {
    const { breaker } = setup({ minimumCalls: 2 });
    await failTimes(breaker, 2);
    for (let i = 0; i < 50; i++) await breaker.execute(succeed).catch(() => undefined);
    const { window } = breaker.snapshot();
    expect(window).toMatchObject({ calls: 2, failures: 2, successes: 0, rejects: 50, failureRate: 1 });
  });

  it('turns half-open after openFor, on the next call, and that call is the probe', async () => {
    const { breaker, clock, types } = setup({ minimumCalls: 1, openFor: 5_000 });
    await failTimes(breaker, 1);
    await clock.advance(4_999);
    expect(breaker.state).toBe('open');
    await clock.advance(1);
    await expect(breaker.execute(() => 'probe')).resolves.toBe('probe');
    expect(breaker.state).toBe('closed');
    expect(types()).toEqual([
      'breaker.failure',
      'breaker.open',
      'breaker.halfOpen',
      'breaker.success',
      'breaker.close',
    ]);
  });

  it('serves a fallback value or the result of a fallback function while open', async () => {
    const value = setup({ minimumCalls: 1, fallback: 'cached' });
    await failTimes(value.breaker, 1);
    await expect(value.breaker.execute(succeed)).resolves.toBe('cached');
    expect(value.of('breaker.reject')[0]?.fallback).toBe(true);
    expect(value.breaker.snapshot().window).toMatchObject({ rejects: 1, fallbacks: 1, calls: 1 });

    const fn = setup({ minimumCalls: 1, fallback: (e: BrokenCircuitError) => `stale since ${e.retryAt}` });
    await failTimes(fn.breaker, 1);
    await expect(fn.breaker.execute(succeed)).resolves.toBe('stale since 30000');
  });

  it('grows openFor on repeated opens, up to its cap, and starts over after a close', async () => {
    const { breaker, clock, of } = setup({ minimumCalls: 1, openFor: { initial: 1_000, multiplier: 3, max: 5_000 } });
    await failTimes(breaker, 1); // open for 1 s
    const openFor = () => {
      const e = of('breaker.open').at(-1);
      return (e?.retryAt ?? 0) - (e?.time ?? 0);
    };
    expect(openFor()).toBe(1_000);
    await clock.advance(1_000);
    await failTimes(breaker, 1); // failed probe: 3 s
    expect(openFor()).toBe(3_000);
    await clock.advance(3_000);
    await failTimes(breaker, 1); // 9 s, capped at 5 s
    expect(openFor()).toBe(5_000);
    expect(of('breaker.open').map((e) => [e.reason, e.opens])).toEqual([
      ['failureRate', 1],
      ['halfOpenFailure', 2],
      ['halfOpenFailure', 3],
    ]);
    await clock.advance(5_000);
    await breaker.execute(succeed); // probe closes it
    await failTimes(breaker, 1);
    expect(openFor()).toBe(1_000);
  });
});

describe('half-open', () => {
  it('lets at most maxProbes calls through at once, rejects the rest, and closes after successesToClose', async () => {
    const { breaker, clock, of } = setup({
      minimumCalls: 1,
      openFor: 1_000,
      halfOpen: { maxProbes: 2, successesToClose: 3 },
    });
    await failTimes(breaker, 1);
    await clock.advance(1_000);
    let started = 0;
    const probe = () => {
      started++;
      return after(clock, 10, 'fine')();
    };
    const calls = Array.from({ length: 5 }, () => breaker.execute(probe).then(String, (e: unknown) => e));
    expect(started).toBe(2);
    await clock.advance(10);
    const settled = await Promise.all(calls);
    expect(settled.filter((s) => s === 'fine')).toHaveLength(2);
    expect(settled.filter((s) => s instanceof BrokenCircuitError)).toHaveLength(3);
    expect(of('breaker.reject').map((e) => e.state)).toEqual(['halfOpen', 'halfOpen', 'halfOpen']);
    expect(breaker.state).toBe('halfOpen'); // 2 of 3 successes so far
    expect(breaker.snapshot().probes).toEqual({ inFlight: 0, succeeded: 2 });
    await breaker.execute(succeed);
    expect(breaker.state).toBe('closed');
    expect(of('breaker.close')).toEqual([{ type: 'breaker.close', source: 'payments', time: 1_010, reason: 'probes' }]);
  });

  it('reopens on a failed probe, and ignores the late result of a probe from before', async () => {
    const { breaker, clock } = setup({ minimumCalls: 1, openFor: 1_000, halfOpen: { maxProbes: 2 } });
    await failTimes(breaker, 1);
    await clock.advance(1_000);
    const slowProbe = breaker.execute(after(clock, 50, 'late'));
    await breaker.execute(fail()).catch(() => undefined);
    expect(breaker.state).toBe('open');
    await clock.advance(50);
    await expect(slowProbe).resolves.toBe('late');
    expect(breaker.state).toBe('open'); // the late success belongs to the half-open that ended
  });

  it('frees the probe slot when a probe is ignored', async () => {
    const { breaker, clock } = setup({ minimumCalls: 1, openFor: 1_000 });
    await failTimes(breaker, 1);
    await clock.advance(1_000);
    const abort = Object.assign(new Error('caller gave up'), { name: 'AbortError' });
    await expect(breaker.execute(() => Promise.reject(abort))).rejects.toBe(abort);
    expect(breaker.state).toBe('halfOpen');
    await breaker.execute(succeed);
    expect(breaker.state).toBe('closed');
  });
});

describe('by hand', () => {
  it('open(), close(), isolate() and disable() change the state and say so on the bus', async () => {
    const { breaker, clock, types } = setup({ openFor: 1_000 });
    breaker.open();
    expect(breaker.state).toBe('open');
    await clock.advance(1_000);
    expect(breaker.state).toBe('halfOpen');
    breaker.close();
    expect(breaker.state).toBe('closed');
    breaker.isolate();
    await clock.advance(3_600_000);
    expect(breaker.state).toBe('isolated');
    const error = await breaker.execute(succeed).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'E_CIRCUIT_OPEN', retryAt: undefined });
    expect((error as Error).message).toBe('payments: circuit is open until closed by hand');
    breaker.disable();
    expect(breaker.state).toBe('disabled');
    await failTimes(breaker, 20);
    expect(breaker.state).toBe('disabled');
    breaker.close();
    expect(breaker.snapshot().window.calls).toBe(0); // disabled records nothing
    expect(types()).toEqual([
      'breaker.open',
      'breaker.halfOpen',
      'breaker.close',
      'breaker.isolate',
      'breaker.reject',
      'breaker.disable',
      'breaker.close',
    ]);
  });

  it('after dispose(), calls reject with E_DISPOSED and controls throw', async () => {
    const { breaker } = setup();
    breaker.dispose();
    await expect(breaker.execute(succeed)).rejects.toBeInstanceOf(DisposedError);
    expect(() => breaker.open()).toThrow(DisposedError);
    expect(breaker.state).toBe('closed');
  });

  it('a call in flight when the breaker opens settles normally but is not counted', async () => {
    const { breaker, clock } = setup({ minimumCalls: 1 });
    const inFlight = breaker.execute(after(clock, 100, 'slow ok'));
    await failTimes(breaker, 1);
    await clock.advance(100);
    await expect(inFlight).resolves.toBe('slow ok');
    expect(breaker.snapshot().window).toMatchObject({ calls: 1, failures: 1 });
  });
});

describe('events', () => {
  it('builds no event when nobody listens', async () => {
    const { breaker, bus } = setup({ minimumCalls: 1 });
    const wanted: string[] = [];
    const emitted: string[] = [];
    const { wants, emit } = bus;
    bus.wants = (type) => {
      wanted.push(type);
      return false;
    };
    bus.emit = (e) => {
      emitted.push(e.type);
      emit.call(bus, e);
    };
    await breaker.execute(succeed);
    await failTimes(breaker, 1);
    await breaker.execute(succeed).catch(() => undefined);
    expect(wanted).toEqual(['breaker.success', 'breaker.failure', 'breaker.open', 'breaker.reject']);
    expect(emitted).toEqual([]);
    bus.wants = wants;
  });

  it('a throwing listener never breaks the call', async () => {
    const { breaker, bus } = setup();
    bus.on('breaker.success', () => {
      throw new Error('listener bug');
    });
    await expect(breaker.execute(succeed)).resolves.toBe('ok');
  });

  it('carries the latency of each call', async () => {
    const { breaker, clock, of } = setup();
    const call = breaker.execute(after(clock, 250, 'ok'));
    await clock.advance(250);
    await call;
    const failing = breaker
      .execute(after(clock, 40, Object.assign(new Error('x'), { code: 'EPIPE' }), true))
      .catch(() => undefined);
    await clock.advance(40);
    await failing;
    expect(of('breaker.success')).toEqual([{ type: 'breaker.success', source: 'payments', time: 250, latency: 250 }]);
    expect(of('breaker.failure')).toEqual([
      { type: 'breaker.failure', source: 'payments', time: 290, latency: 40, code: 'EPIPE' },
    ]);
  });
});
