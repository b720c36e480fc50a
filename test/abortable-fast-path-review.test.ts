import { getEventListeners } from 'node:events';
import vm from 'node:vm';
import { circuitBreaker } from '@holdfast/breaker';
import { type CallContext, createBus, timeout } from '@holdfast/core';
import { failover } from '@holdfast/failover';
import { idempotent, memoryStore } from '@holdfast/idempotency';
import { bulkhead, slidingWindow, tokenBucket } from '@holdfast/limit';
import { describe, expect, it } from 'vitest';

// Each policy's fast path (no signal: a closed breaker, a free slot, a token in hand) against its
// slow path (a signal followed through a scope), fed options a caller should not send but will.
type Execute = (fn: (ctx: CallContext) => unknown, options: never) => Promise<unknown>;

const bus = createBus();
let inputs = 0;
const policies = (): [string, Execute][] => {
  const charge = idempotent(async (run: (ctx: CallContext) => unknown, ctx) => run(ctx as never), {
    store: memoryStore(),
    key: () => String(++inputs),
    fingerprint: () => '',
    bus,
  });
  const set = failover({ bus, policies: false, endpoints: ['a', 'b'] });
  const b = circuitBreaker({ policies: false, bus });
  const h = bulkhead({ maxConcurrent: 1, policies: false, bus });
  const t = tokenBucket({ limit: 1e6, interval: 1000, burst: 1e6, policies: false, bus });
  const w = slidingWindow({ limit: 1e6, interval: 1000, policies: false, bus });
  const limit = timeout(1000, { bus });
  return [
    ['timeout', (fn, o) => limit.execute(fn, o)],
    ['circuitBreaker', (fn, o) => b.execute(fn, o)],
    ['bulkhead', (fn, o) => h.execute(fn, o)],
    ['tokenBucket', (fn, o) => t.execute(fn, o)],
    ['slidingWindow', (fn, o) => w.execute(fn, o)],
    ['failover', (fn, o) => set.execute((_endpoint, ctx) => fn(ctx), o)],
    ['idempotent', (fn, o) => charge(fn, o)],
  ];
};

/** What a call did: threw where execute() was called, or settled. */
async function outcome(call: () => Promise<unknown>): Promise<string> {
  let promise: Promise<unknown>;
  try {
    promise = call();
  } catch (error) {
    return `threw ${String(error)}`;
  }
  try {
    return `resolved ${String(await promise)}`;
  } catch (error) {
    return `rejected ${String(error)}`;
  }
}

describe('CallScope.abortable() and the fast paths it guards (review)', () => {
  it('options that are a revoked Proxy reject, never throw, never run; a Proxy whose prototype throws is read as {}', async () => {
    const revocable = Proxy.revocable({}, {});
    revocable.revoke();
    const hidden = new Proxy(
      {},
      {
        getPrototypeOf() {
          throw new Error('prototype gone');
        },
      },
    );
    for (const [name, execute] of policies()) {
      let runs = 0;
      const revoked = await outcome(() => execute(() => ++runs, revocable.proxy as never));
      expect([name, revoked.split(':')[0], runs]).toEqual([name, 'rejected TypeError', 0]);
      const plain = await outcome(() => execute(() => ++runs, hidden as never));
      expect([name, plain, runs]).toEqual([name, 'resolved 1', 1]);
    }
  });

  it('a signal getter that gives none, then a live signal: the call runs and leaves no listener on it', async () => {
    for (const [name, execute] of policies()) {
      const controller = new AbortController();
      let reads = 0;
      const options = {
        get signal() {
          return reads++ === 0 ? undefined : controller.signal;
        },
      };
      await expect(
        outcome(() => execute(() => 'ran', options as never)),
        name,
      ).resolves.toBe('resolved ran');
      expect([name, getEventListeners(controller.signal, 'abort').length]).toEqual([name, 0]);
    }
  });

  it("a signal-like object whose removeEventListener throws: the call's value stands, a bulkhead's slot comes back", async () => {
    for (const [name, execute] of policies()) {
      // Made in another realm, as a polyfill's signal is a plain object: followed as a signal.
      const like = vm.runInNewContext(
        '({ aborted: false, addEventListener() {}, removeEventListener() { throw new Error("detach failed"); } })',
      );
      expect([name, await outcome(() => execute(() => 'ran', { signal: like } as never))]).toEqual([
        name,
        'resolved ran',
      ]);
      // One slot: a slot lost to the throw leaves the next call queued for ever.
      expect([name, await outcome(() => execute(() => 'next', {} as never))]).toEqual([name, 'resolved next']);
    }
  });

  it('10,000 calls on one long-lived signal leave no listener on it, in every policy', async () => {
    for (const [name, execute] of policies()) {
      const controller = new AbortController();
      for (let i = 0; i < 10_000; i++) await execute(() => i, { signal: controller.signal } as never);
      expect([name, getEventListeners(controller.signal, 'abort').length]).toEqual([name, 0]);
    }
  });

  it('a bulkhead call aborted while queued rejects with the reason and leaves no listener nor queue place', async () => {
    const h = bulkhead({ maxConcurrent: 1, maxQueue: 1, policies: false, bus });
    let release = (): void => {};
    const running = h.execute(() => new Promise<void>((resolve) => (release = resolve)));
    const controller = new AbortController();
    let runs = 0;
    const queued = h.execute(() => ++runs, { signal: controller.signal });
    expect(h.queued).toBe(1);
    const reason = new Error('caller left');
    controller.abort(reason);
    await expect(queued).rejects.toBe(reason);
    expect([h.queued, runs, getEventListeners(controller.signal, 'abort').length]).toEqual([0, 0, 0]);
    release();
    await running;
  });
});
