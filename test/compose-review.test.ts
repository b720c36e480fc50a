import { getEventListeners } from 'node:events';
import { circuitBreaker } from '@holdfast/breaker';
import { type CallContext, createBus, fallback, hedge, ManualClock, pipeline, timeout } from '@holdfast/core';
import { bulkhead, tokenBucket } from '@holdfast/limit';
import { retry } from '@holdfast/retry';
import { describe, expect, it } from 'vitest';

/** An error whose `code` and `name` getters throw: what a Proxy or a hostile library may reject with. */
function hostile(): object {
  return {
    get code(): never {
      throw new Error('getter on code');
    },
    get name(): never {
      throw new Error('getter on name');
    },
  };
}

describe('fallback with a listener (review)', () => {
  it('serves its value for an error whose code getter throws, and reports the event without a code', async () => {
    const bus = createBus();
    const codes: unknown[] = [];
    bus.on('fallback', (e) => codes.push(e.code));
    const f = fallback({ value: 'served', bus });
    const out = await f.execute(() => Promise.reject(hostile())).catch((e: Error) => `rejected: ${e.message}`);
    expect(out).toBe('served');
    expect(codes).toEqual([undefined]);
  });
});

describe('a disabled breaker (review)', () => {
  it('keeps the abort rule: a caller that aborted mid-call gets its reason, not the late value', async () => {
    const clock = new ManualClock();
    const b = circuitBreaker({ bus: createBus(), clock, policies: false });
    b.disable();
    const ac = new AbortController();
    const call = b
      .execute(() => new Promise((r) => clock.setTimeout(() => r('late value'), 10)), { signal: ac.signal })
      .then(
        (value) => ({ value }),
        (error: unknown) => ({ error }),
      );
    ac.abort('caller left');
    await clock.advance(10);
    expect(await call).toEqual({ error: 'caller left' });
  });
});

describe('composition (review)', () => {
  const hostileError = hostile;
  it('a long-lived caller signal through 100,000 calls of the full stack keeps no listener, and 1,000 at once raise no warning', async () => {
    const bus = createBus();
    const ac = new AbortController();
    const warnings: string[] = [];
    const onWarn = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarn);
    const p = pipeline(
      fallback({ value: 0, bus }),
      timeout(10_000, { bus }),
      retry({ bus, budget: false, backoff: { initialDelay: 0 } }),
      circuitBreaker({ bus, policies: false }),
      hedge({ delay: 10_000, safe: true, bus, policies: false, budget: false }),
      bulkhead({ maxConcurrent: 10, maxQueue: 10, bus, policies: false }),
      timeout(5_000, { bus }),
    );
    for (let i = 0; i < 100_000; i++) {
      await p.execute(({ signal }) => (i % 3 === 0 ? signal.aborted : i), { signal: ac.signal });
    }
    const inFlight = Array.from({ length: 1_000 }, (_, i) => p.execute(() => i, { signal: ac.signal }));
    await Promise.all(inFlight);
    await new Promise((r) => setImmediate(r));
    process.off('warning', onWarn);
    expect(getEventListeners(ac.signal, 'abort').length).toBe(0);
    expect(warnings).toEqual([]);
  }, 120_000);

  const weird: [string, () => unknown][] = [
    ['undefined', () => undefined],
    ['null', () => null],
    ['string', () => 'boom'],
    ['hostile', hostileError],
  ];
  for (const [label, make] of weird) {
    it(`${label} thrown, rejected, or from a rejecting thenable reaches the caller as it is, counted once per attempt`, async () => {
      const bus = createBus({ onListenerError: () => {} });
      const events: string[] = [];
      bus.on('*', (e) => events.push(e.type));
      const thrown = make();
      const b = circuitBreaker({ bus, policies: false, consecutiveFailures: 100 });
      const p = pipeline(
        timeout(1_000, { bus }),
        retry({ bus, budget: false, maxAttempts: 2, backoff: { initialDelay: 0 }, retryOn: { error: () => true } }),
        b,
        hedge({ delay: 10_000, safe: true, bus, policies: false, budget: false }),
        bulkhead({ maxConcurrent: 1, maxQueue: 1, bus, policies: false }),
        timeout(500, { bus, strategy: 'aggressive' }),
      );
      const kinds = [
        () => {
          throw thrown;
        },
        () => Promise.reject(thrown),
        // biome-ignore lint/suspicious/noThenProperty: a thenable that rejects is the point
        () => ({ then: (_: unknown, rej: (e: unknown) => void) => rej(thrown) }),
      ];
      for (const fn of kinds) {
        const got = await p.execute(fn as never).then(
          (v) => ({ ok: v }),
          (e) => ({ err: e }),
        );
        expect(got).toHaveProperty('err');
        expect(
          (got as { err: unknown }).err === thrown || (got as { err: { cause?: unknown } }).err?.cause === thrown,
        ).toBe(true);
      }
      expect(b.snapshot().window.failures).toBe(6);
      const withFb = pipeline(fallback({ value: 'fb', bus }), p);
      expect(await withFb.execute(() => Promise.reject(thrown))).toBe('fb');
    });
  }

  it('retry > breaker > per-try timeout: each timed-out attempt is one failure and one timeout, events counted', async () => {
    const clock = new ManualClock();
    const bus = createBus();
    const counts: Record<string, number> = {};
    bus.on('*', (e) => {
      counts[e.type] = (counts[e.type] ?? 0) + 1;
    });
    const b = circuitBreaker({ bus, clock, policies: false, consecutiveFailures: 100 });
    const p = pipeline(
      retry({ bus, clock, budget: false, maxAttempts: 3, backoff: { initialDelay: 10 } }),
      b,
      timeout(100, { bus, clock }),
    );
    const call = p
      .execute(({ signal }) => new Promise((_, rej) => signal.addEventListener('abort', () => rej(signal.reason))))
      .catch((e: { code?: string }) => e.code);
    await clock.runAll();
    expect(await call).toBe('E_RETRY_EXHAUSTED');
    expect(b.snapshot().window).toMatchObject({ failures: 3, timeouts: 3 });
    expect(counts).toMatchObject({ timeout: 3, 'retry.attempt': 2, 'retry.giveUp': 1, 'breaker.failure': 3 });
    expect(clock.pending).toBe(0);
  });

  it('an abort mid-retry-delay, mid-hedge and in a bulkhead queue rejects at once with the reason, running nothing more, leaving no timer', async () => {
    const clock = new ManualClock();
    const bus = createBus();
    const ac = new AbortController();
    // No jitter: a full-jitter delay under 10 ms (1 in 100) would run a second attempt before the abort.
    const r = retry({ bus, clock, budget: false, jitter: 'none', maxAttempts: 5, backoff: { initialDelay: 1_000 } });
    let runs = 0;
    const c1 = r
      .execute(
        () => {
          runs++;
          return Promise.reject(Object.assign(new Error('x'), { code: 'ECONNRESET' }));
        },
        { signal: ac.signal },
      )
      .catch((e) => e);
    await clock.advance(10);
    ac.abort('why');
    expect(await c1).toBe('why');
    expect(runs).toBe(1);
    expect(clock.pending).toBe(0);

    const ac2 = new AbortController();
    const h = hedge({ delay: 10, maxHedges: 2, safe: true, bus, clock, policies: false, budget: false });
    let aborted = 0;
    const c2 = h
      .execute(
        (ctx: CallContext) =>
          new Promise((_, rej) =>
            ctx.signal.addEventListener('abort', () => {
              aborted++;
              rej(new Error('inner'));
            }),
          ),
        { signal: ac2.signal },
      )
      .catch((e) => e);
    await clock.advance(15);
    ac2.abort('why2');
    expect(await c2).toBe('why2');
    expect(aborted).toBe(2);
    expect(clock.pending).toBe(0);

    const bh = bulkhead({ maxConcurrent: 1, maxQueue: 5, bus, clock, policies: false, queueTimeout: 1_000 });
    let release!: () => void;
    const first = bh.execute(
      () =>
        new Promise<void>((r) => {
          release = r;
        }),
    );
    const ac3 = new AbortController();
    let ran = 0;
    const queued = bh
      .execute(
        () => {
          ran++;
        },
        { signal: ac3.signal },
      )
      .catch((e) => e);
    ac3.abort('why3');
    expect(await queued).toBe('why3');
    release();
    await first;
    expect(ran).toBe(0);
    expect(bh.snapshot()).toMatchObject({ running: 0, queued: 0 });
    expect(clock.pending).toBe(0);
  });

  it('the bus: a listener that unsubscribes another, and one that calls through the same policy', async () => {
    const bus = createBus();
    const seen: string[] = [];
    let offB = () => {};
    bus.on('fallback', () => {
      seen.push('a');
      offB();
    });
    offB = bus.on('fallback', () => seen.push('b'));
    const f = fallback({ value: 1, bus });
    let depth = 0;
    bus.on('fallback', () => {
      if (depth++ < 3) void f.execute(() => Promise.reject(new Error('again')));
    });
    expect(await f.execute(() => Promise.reject(new Error('x')))).toBe(1);
    await new Promise((r) => setImmediate(r));
    expect(seen).toEqual(['a', 'a', 'a', 'a']);
  });
});

describe('hedge over a limiter (review)', () => {
  const reset = () => Object.assign(new Error('down'), { code: 'ECONNRESET' });

  it('a downstream failure is not hidden behind the limiter refusing the next attempt: the breaker outside opens', async () => {
    const clock = new ManualClock();
    const bus = createBus();
    const breaker = circuitBreaker({ bus, clock, policies: false, consecutiveFailures: 3 });
    const p = pipeline(
      breaker,
      hedge({ delay: 1_000, safe: true, bus, clock, policies: false, budget: false }),
      tokenBucket({ limit: 1, interval: 60_000, burst: 1, bus, clock, policies: false }),
    );
    const codes: unknown[] = [];
    let sent = 0;
    for (let i = 0; i < 3; i++) {
      await clock.advance(60_000); // one token again
      const call = p.execute(() => {
        sent++;
        return Promise.reject(reset());
      });
      codes.push(await call.catch((e: { code?: string }) => e.code));
    }
    expect({ sent, codes, state: breaker.state }).toEqual({
      sent: 3,
      codes: ['ECONNRESET', 'ECONNRESET', 'ECONNRESET'],
      state: 'open',
    });
  });

  it('every attempt refused: the refusal is what the caller gets', async () => {
    const clock = new ManualClock();
    const bus = createBus();
    const limiter = tokenBucket({ limit: 1, interval: 60_000, burst: 1, bus, clock, policies: false });
    await limiter.execute(() => 'spent');
    const h = hedge({ delay: 1_000, safe: true, bus, clock, policies: false, budget: false });
    const code = await h.execute((ctx) => limiter.execute(() => 'never', ctx)).catch((e: { code?: string }) => e.code);
    expect(code).toBe('E_RATE_LIMITED');
  });

  it('an attempt that rejects with a Proxy whose every property throws sends the next one at once, and the call settles', async () => {
    const proxy = new Proxy(
      {},
      {
        get() {
          throw new Error('no property');
        },
      },
    );
    const clock = new ManualClock();
    const h = hedge({ delay: 1_000, safe: true, bus: createBus(), clock, policies: false, budget: false });
    let n = 0;
    let got: unknown = 'pending';
    void h
      .execute(() => (++n === 1 ? Promise.reject(proxy) : Promise.reject(reset())))
      .catch((e: unknown) => {
        got = e;
      });
    for (let i = 0; i < 10; i++) await Promise.resolve(); // no time passes: a failure does not wait out the delay
    expect(n).toBe(2);
    expect((got as { code?: string }).code).toBe('ECONNRESET');
  });
});
