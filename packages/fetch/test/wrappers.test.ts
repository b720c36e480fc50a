import { createBus, ManualClock, TimeoutError } from '@holdfast/core';
import { memoryStore } from '@holdfast/idempotency';
import { retry as retryPolicy } from '@holdfast/retry';
import { describe, expect, it } from 'vitest';
import { breaker, idempotent, retry, timeout } from '../src/decorators.js';
import { withBreaker, withIdempotency, withRetry, withTimeout } from '../src/index.js';

const bus = createBus();
const quick = { bus, backoff: { initialDelay: 0 }, budget: false as const };

function flaky(failures: number) {
  let calls = 0;
  const fn = async (x: number) => {
    calls++;
    if (calls <= failures) throw new Error(`flake ${calls}`);
    return x * 2;
  };
  return { fn, calls: () => calls };
}

describe('higher-order wrappers', () => {
  it('withRetry keeps the parameters and retries', async () => {
    const f = flaky(2);
    const doubled = withRetry(f.fn, { ...quick, maxAttempts: 3 });
    await expect(doubled(21)).resolves.toBe(42);
    expect(f.calls()).toBe(3);
  });

  it('withRetry can share one policy between functions', async () => {
    const shared = retryPolicy({ ...quick, maxAttempts: 2 });
    const a = flaky(1);
    const b = flaky(1);
    await expect(withRetry(a.fn, shared)(1)).resolves.toBe(2);
    await expect(withRetry(b.fn, shared)(2)).resolves.toBe(4);
  });

  it('withBreaker opens after failures and then rejects without calling', async () => {
    const f = flaky(100);
    const guarded = withBreaker(f.fn, { bus, consecutiveFailures: 2 });
    await expect(guarded(1)).rejects.toThrow('flake 1');
    await expect(guarded(1)).rejects.toThrow('flake 2');
    await expect(guarded(1)).rejects.toMatchObject({ code: 'E_CIRCUIT_OPEN' });
    expect(f.calls()).toBe(2);
  });

  it('withTimeout rejects at the deadline (aggressive: the function cannot see a signal)', async () => {
    const clock = new ManualClock();
    const slow = withTimeout(() => new Promise<string>(() => {}), 50, { clock, bus });
    const call = slow();
    const outcome = expect(call).rejects.toBeInstanceOf(TimeoutError);
    await clock.advance(50);
    await outcome;
  });

  it('withIdempotency runs once per key and replays the result', async () => {
    let runs = 0;
    const charge = withIdempotency(
      async (order: { id: string; amount: number }, note: string) => {
        runs++;
        return `${order.id}:${order.amount}:${note}`;
      },
      { store: memoryStore(), key: (order) => order.id, bus },
    );
    await expect(charge({ id: 'o1', amount: 5 }, 'first')).resolves.toBe('o1:5:first');
    await expect(charge({ id: 'o1', amount: 5 }, 'first')).resolves.toBe('o1:5:first');
    await expect(charge({ id: 'o1', amount: 6 }, 'first')).rejects.toMatchObject({ code: 'E_IDEMPOTENCY_MISMATCH' });
    expect(runs).toBe(1);
  });

  it('says what was wrong when the wrapped value is not a function', () => {
    expect(() => withRetry(42 as never)).toThrow('retry: the wrapped value must be a function');
  });
});

describe('TC39 method decorators', () => {
  const store = memoryStore();

  class Inventory {
    calls = 0;
    constructor(readonly failures: number) {}

    @retry({ ...quick, maxAttempts: 3 })
    async stock(sku: string): Promise<string> {
      this.calls++;
      if (this.calls <= this.failures) throw new Error('flake');
      return `${sku}: 12`;
    }

    @breaker({ bus, consecutiveFailures: 1 })
    async broken(): Promise<never> {
      this.calls++;
      throw new Error('down');
    }

    @timeout(10, { bus })
    async hang(): Promise<never> {
      return new Promise(() => {});
    }

    @idempotent({ store, key: (order: { id: string }) => order.id, bus })
    async place(order: { id: string }): Promise<string> {
      this.calls++;
      return `${order.id} placed by instance with ${this.failures} failures`;
    }
  }

  it('@retry retries the method with `this` intact', async () => {
    const inventory = new Inventory(2);
    await expect(inventory.stock('kettle')).resolves.toBe('kettle: 12');
    expect(inventory.calls).toBe(3);
  });

  it('@breaker shares one breaker between instances', async () => {
    const a = new Inventory(0);
    const b = new Inventory(0);
    await expect(a.broken()).rejects.toThrow('down');
    await expect(b.broken()).rejects.toMatchObject({ code: 'E_CIRCUIT_OPEN' });
    expect(b.calls).toBe(0);
  });

  it('@timeout bounds the method', async () => {
    await expect(new Inventory(0).hang()).rejects.toBeInstanceOf(TimeoutError);
  });

  it('@idempotent runs once per key, on the instance that called first', async () => {
    const a = new Inventory(1);
    const b = new Inventory(2);
    await expect(a.place({ id: 'o-7' })).resolves.toBe('o-7 placed by instance with 1 failures');
    await expect(b.place({ id: 'o-7' })).resolves.toBe('o-7 placed by instance with 1 failures');
    expect(a.calls + b.calls).toBe(1);
  });
});
