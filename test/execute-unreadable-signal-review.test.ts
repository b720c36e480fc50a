import { circuitBreaker } from '@holdfast/breaker';
import { injectLatency } from '@holdfast/chaos';
import { createBus, timeout } from '@holdfast/core';
import { failover } from '@holdfast/failover';
import { idempotent, memoryStore } from '@holdfast/idempotency';
import { bulkhead, slidingWindow, tokenBucket } from '@holdfast/limit';
import { describe, expect, it } from 'vitest';

// Options whose `signal` getter throws (a getter over request state that is gone) fail the call
// with a rejection naming the signal, never a throw where execute() was called (core's fix for
// CallScope): the policies that look at `options.signal` themselves before they make a scope
// (their no-signal fast path) threw past the caller's .catch(), and failover rejected with the
// getter's own error.
const bus = createBus();
const policies = (): [string, (fn: () => number, options: never) => Promise<unknown>][] => {
  const charge = idempotent(async (id: string) => id, { store: memoryStore(), key: (id) => id, bus });
  const set = failover({ bus, policies: false, endpoints: ['a', 'b'] });
  const b = circuitBreaker({ policies: false, bus });
  const h = bulkhead({ maxConcurrent: 2, policies: false, bus });
  const t = tokenBucket({ limit: 100, interval: 1000, burst: 2, policies: false, bus });
  const w = slidingWindow({ limit: 2, interval: 1000, policies: false, bus });
  const limit = timeout(1000, { bus });
  const latency = injectLatency({ latency: 0, bus });
  return [
    ['timeout', (fn, o) => limit.execute(fn, o)],
    ['injectLatency', (fn, o) => latency.execute(fn, o)],
    ['circuitBreaker', (fn, o) => b.execute(fn, o)],
    ['bulkhead', (fn, o) => h.execute(fn, o)],
    ['tokenBucket', (fn, o) => t.execute(fn, o)],
    ['slidingWindow', (fn, o) => w.execute(fn, o)],
    ['failover', (fn, o) => set.execute(fn, o)],
    ['idempotent', (fn, o) => charge(String(fn()), o)],
  ];
};

describe('execute() given options whose signal cannot be read (review)', () => {
  it('rejects naming the signal, never throws at the call, never runs the function', async () => {
    const throwing = {
      get signal(): AbortSignal {
        throw new Error('request state gone');
      },
    };
    for (const [name, execute] of policies()) {
      let runs = 0;
      let call: Promise<unknown> | undefined;
      expect(() => {
        // idempotent() runs the function to get its input: counted apart.
        call = execute(() => (name === 'idempotent' ? 0 : ++runs), throwing as never);
      }, name).not.toThrow();
      await expect(call, name).rejects.toThrow(/signal must be an AbortSignal \(reading it threw\)/);
      expect(runs, name).toBe(0);
    }
  });

  it('options that throw on every read (a Proxy over state that is gone): rejects, never throws, never runs', async () => {
    const trapped = new Proxy(
      {},
      {
        get() {
          throw new Error('request state gone');
        },
      },
    );
    for (const [name, execute] of policies()) {
      let runs = 0;
      let call: Promise<unknown> | undefined;
      expect(() => {
        call = execute(() => (name === 'idempotent' ? 0 : ++runs), trapped as never);
      }, name).not.toThrow();
      await expect(call, name).rejects.toThrow();
      expect(runs, name).toBe(0);
    }
  });

  it('timeout(): a getter that throws only when read again never throws from execute()', async () => {
    let reads = 0;
    const live = new AbortController().signal;
    const flaky = {
      get signal(): AbortSignal {
        if (reads++ > 0) throw new Error('read twice');
        return live;
      },
    };
    let call: Promise<unknown> | undefined;
    expect(() => {
      call = timeout(1000, { bus }).execute(() => 'done', flaky as never);
    }).not.toThrow();
    await expect(call).resolves.toBe('done');
  });
});
