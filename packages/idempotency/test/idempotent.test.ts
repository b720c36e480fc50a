import { createBus, type HoldfastEvent, ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import {
  fingerprintOf,
  IdempotencyConflictError,
  type IdempotencyStore,
  idempotent,
  memoryStore,
  StoreUnavailableError,
} from '../src/index.js';

interface Order {
  id: string;
  amount: number;
  items?: string[];
}

function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

function setup() {
  const clock = new ManualClock(1_000);
  const bus = createBus();
  const events: HoldfastEvent[] = [];
  bus.on('*', (e) => events.push(e));
  const store = memoryStore({ clock });
  const types = () => events.map((e) => e.type);
  return { clock, bus, events, types, store };
}

describe('idempotent()', () => {
  it('runs the function once per key and replays its stored result to repeats', async () => {
    const { bus, store, clock, events } = setup();
    let runs = 0;
    const charge = idempotent(async (order: Order) => ({ charged: order.amount, run: ++runs }), {
      store,
      key: (order) => order.id,
      bus,
      clock,
      name: 'charge',
    });
    const first = await charge({ id: 'o-1', amount: 5 });
    const again = await charge({ id: 'o-1', amount: 5 });
    expect(first).toEqual({ charged: 5, run: 1 });
    expect(again).toEqual(first);
    expect(again).not.toBe(first); // a stored copy, not the object the first caller holds
    expect(await charge({ id: 'o-2', amount: 5 })).toEqual({ charged: 5, run: 2 });
    expect(events.slice(0, 2)).toEqual([
      { type: 'idempotency.claim', source: 'charge', time: 1_000, key: 'o-1', takeover: false },
      { type: 'idempotency.replay', source: 'charge', time: 1_000, key: 'o-1', createdAt: 1_000 },
    ]);
  });

  it('200 concurrent calls with one key run once: the others get E_IDEMPOTENCY_CONFLICT at once', async () => {
    const { store, clock, bus, events } = setup();
    const gate = deferred<void>();
    let runs = 0;
    const job = idempotent(
      async () => {
        runs++;
        await gate.promise;
        return 'done';
      },
      { store, key: () => 'job-1', bus, clock },
    );
    const calls = Array.from({ length: 200 }, () => job(undefined));
    gate.resolve();
    const results = await Promise.allSettled(calls);
    expect(runs).toBe(1);
    expect(results.filter((r) => r.status === 'fulfilled')).toEqual([{ status: 'fulfilled', value: 'done' }]);
    const conflicts = results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason);
    expect(conflicts).toHaveLength(199);
    for (const e of conflicts) expect(e).toBeInstanceOf(IdempotencyConflictError);
    expect(conflicts[0]).toMatchObject({
      code: 'E_IDEMPOTENCY_CONFLICT',
      message: 'idempotent: key "job-1" is in progress in another call',
      retryAfterMs: 60_000,
    });
    expect(events.filter((e) => e.type === 'idempotency.conflict')).toHaveLength(199);
  });

  it('with `wait`, concurrent duplicates wait for the first and return its result', async () => {
    const { store, clock } = setup();
    let runs = 0;
    const job = idempotent(
      async () => {
        runs++;
        await new Promise((resolve) => clock.setTimeout(() => resolve(undefined), 250));
        return { total: 42 };
      },
      { store, key: () => 'job-1', clock, wait: { timeout: 1_000, interval: 100 } },
    );
    const calls = Promise.all(Array.from({ length: 200 }, () => job(undefined)));
    await clock.advance(300);
    expect(await calls).toEqual(Array.from({ length: 200 }, () => ({ total: 42 })));
    expect(runs).toBe(1);
  });

  it('waits only as long as `wait.timeout`, then fails with a conflict', async () => {
    const { store, clock, bus, events } = setup();
    const job = idempotent(() => new Promise<never>(() => {}), {
      store,
      key: () => 'stuck',
      bus,
      clock,
      wait: { timeout: 500, interval: 200 },
    });
    void job(undefined);
    const waiting = job(undefined);
    const outcome = expect(waiting).rejects.toMatchObject({ code: 'E_IDEMPOTENCY_CONFLICT' });
    await clock.advance(500);
    await outcome;
    expect(events.at(-1)).toMatchObject({ type: 'idempotency.conflict', key: 'stuck', waited: true, time: 1_500 });
    expect(clock.pending).toBe(2); // the store's sweep and the hung run's lease renewal: no wait timer is left
  });

  it('stops waiting when the caller aborts', async () => {
    const { store, clock } = setup();
    const job = idempotent(() => new Promise<never>(() => {}), {
      store,
      key: () => 'stuck',
      clock,
      wait: { timeout: 60_000 },
    });
    void job(undefined);
    const controller = new AbortController();
    const waiting = job(undefined, { signal: controller.signal });
    await clock.advance(150);
    controller.abort(new Error('client went away'));
    await expect(waiting).rejects.toThrow('client went away');
    expect(clock.pending).toBe(2); // the store's sweep and the hung run's lease renewal: no wait timer is left
  });

  it('fails with E_IDEMPOTENCY_MISMATCH when a key comes back with another payload', async () => {
    const { store, clock, bus, events } = setup();
    const charge = idempotent(async (order: Order) => order.amount, { store, key: (o) => o.id, bus, clock });
    await charge({ id: 'o-1', amount: 5 });
    await expect(charge({ id: 'o-1', amount: 500 })).rejects.toMatchObject({
      code: 'E_IDEMPOTENCY_MISMATCH',
      name: 'IdempotencyMismatchError',
      message: 'idempotent: key "o-1" was first used with a different payload (its fingerprint differs)',
    });
    expect(events.at(-1)).toMatchObject({ type: 'idempotency.mismatch', key: 'o-1' });
    // The same payload with its keys in another order is the same payload.
    const reordered = JSON.parse('{"amount":5,"id":"o-1"}') as Order;
    await expect(charge(reordered)).resolves.toBe(5);
  });

  it('a custom fingerprint decides what must match', async () => {
    const { store, clock } = setup();
    const charge = idempotent(async (order: Order & { traceId: string }) => order.amount, {
      store,
      clock,
      key: (o) => o.id,
      fingerprint: (o) => fingerprintOf({ amount: o.amount }),
    });
    await charge({ id: 'o-1', amount: 5, traceId: 'a' });
    await expect(charge({ id: 'o-1', amount: 5, traceId: 'b' })).resolves.toBe(5);
  });

  it('computes key and fingerprint before the function runs: a function that mutates its input changes neither', async () => {
    const { store, clock } = setup();
    let runs = 0;
    const handle = idempotent(
      async (order: Order) => {
        runs++;
        order.id = 'rewritten';
        order.amount = 0;
        order.items?.push('free gift');
        return 'ok';
      },
      { store, key: (o) => o.id, clock },
    );
    const original = (): Order => ({ id: 'o-1', amount: 5, items: ['book'] });
    expect(await handle(original())).toBe('ok');
    // A redelivery of the same message replays: it was stored under o-1 with the untouched payload.
    expect(await handle(original())).toBe('ok');
    expect(runs).toBe(1);
  });

  it('stores no error: when the function throws the key is released and a retry runs it again', async () => {
    const { store, clock, bus, events, types } = setup();
    let runs = 0;
    const send = idempotent(
      async () => {
        if (++runs === 1) throw Object.assign(new Error('smtp down'), { code: 'ECONNRESET' });
        return 'sent';
      },
      { store, key: () => 'mail-1', bus, clock },
    );
    await expect(send(undefined)).rejects.toThrow('smtp down');
    expect(events.at(-1)).toMatchObject({ type: 'idempotency.release', key: 'mail-1', code: 'ECONNRESET' });
    expect(await send(undefined)).toBe('sent');
    expect(await send(undefined)).toBe('sent');
    expect(runs).toBe(2);
    expect(types()).toEqual(['idempotency.claim', 'idempotency.release', 'idempotency.claim', 'idempotency.replay']);
  });

  it('after a lease runs out the next call takes over; the late owner’s result is refused and reported', async () => {
    const { store, clock, bus, events } = setup();
    const first = deferred<string>();
    const runs: { takeover: boolean; token: string | undefined }[] = [];
    const job = idempotent(
      async (input: { n: number }, ctx) => {
        runs.push({ takeover: ctx.takeover, token: ctx.token });
        return runs.length === 1 ? first.promise : `second run ${input.n}`;
      },
      // maxRunMs = leaseMs: no renewal, as when the owner's process is frozen.
      { store, key: () => 'job-1', bus, clock, leaseMs: 1_000, maxRunMs: 1_000 },
    );
    const late = job({ n: 1 });
    await clock.advance(500);
    await expect(job({ n: 1 })).rejects.toMatchObject({ code: 'E_IDEMPOTENCY_CONFLICT', retryAfterMs: 500 });
    await clock.advance(600); // the first owner hangs past its lease
    expect(await job({ n: 1 })).toBe('second run 1');
    expect(runs.map((r) => r.takeover)).toEqual([false, true]);
    expect(runs[0]?.token).not.toBe(runs[1]?.token);

    first.resolve('first run, late');
    expect(await late).toBe('first run, late'); // its caller still learns what its run did
    expect(await job({ n: 1 })).toBe('second run 1'); // but the record is the new owner's
    expect(events.map((e) => e.type)).toEqual([
      'idempotency.claim',
      'idempotency.conflict',
      'idempotency.claim',
      'idempotency.takeover',
      'idempotency.staleCompletion',
      'idempotency.replay',
    ]);
    expect(events[2]).toMatchObject({ key: 'job-1', takeover: true, time: 2_100 });
  });

  it('rejects a result it cannot store with E_IDEMPOTENCY_VALUE naming the path, and releases the key', async () => {
    const { store, clock } = setup();
    let result: unknown = { user: { createdAt: new Date(0) } };
    const job = idempotent(async () => result, { store, key: () => 'k', clock });
    await expect(job(undefined)).rejects.toMatchObject({
      code: 'E_IDEMPOTENCY_VALUE',
      message:
        'idempotency: cannot serialize result.user.createdAt: a Date (store date.toISOString() instead) is not supported; store JSON values (plain objects, arrays, strings, finite numbers, booleans, null) or Uint8Array',
    });
    result = { user: { createdAt: '1970-01-01T00:00:00.000Z' } };
    expect(await job(undefined)).toEqual(result);
  });

  it('replays bytes as Buffers and nothing as undefined', async () => {
    const { store, clock } = setup();
    const bytes = idempotent(async () => ({ pdf: new Uint8Array([37, 80, 68, 70]) }), {
      store,
      key: () => 'b',
      clock,
      namespace: 'bytes',
    });
    await bytes(undefined);
    const replay = await bytes(undefined);
    expect(Buffer.isBuffer(replay.pdf)).toBe(true);
    expect([...replay.pdf]).toEqual([37, 80, 68, 70]);
    const nothing = idempotent(async () => {}, { store, key: () => 'n', clock, namespace: 'nothing' });
    await nothing(undefined);
    await expect(nothing(undefined)).resolves.toBeUndefined();
  });

  it('refuses a key that is not a non-empty string, and an input it cannot fingerprint', async () => {
    const { store, clock } = setup();
    const job = idempotent(async (input: unknown) => input, { store, key: () => '', clock, namespace: 'job' });
    await expect(job(1)).rejects.toMatchObject({ code: 'E_IDEMPOTENCY_VALUE', path: 'key' });
    const withFn = idempotent(async (_input: { cb: () => void }) => 1, {
      store,
      key: () => 'k',
      clock,
      namespace: 'withFn',
    });
    await expect(withFn({ cb: () => {} })).rejects.toMatchObject({
      code: 'E_IDEMPOTENCY_VALUE',
      path: 'input.cb',
      message: expect.stringContaining('pass a `fingerprint` function'),
    });
  });

  it('fail-closed (the default) refuses to run when the store fails; fail-open runs unprotected', async () => {
    const { bus, events, clock } = setup();
    const failing = (onStoreError?: 'fail-open'): IdempotencyStore => ({
      onStoreError,
      claim: async (key) => {
        throw new StoreUnavailableError('flaky', 'claim', key, 'connection refused');
      },
      complete: async () => true,
      release: async () => true,
    });
    let runs = 0;
    const closed = idempotent(async () => ++runs, { store: failing(), key: () => 'k', bus, clock });
    await expect(closed(undefined)).rejects.toMatchObject({
      code: 'E_STORE_UNAVAILABLE',
      message: 'flaky: claim of key "k" failed: connection refused',
    });
    expect(runs).toBe(0);
    const open = idempotent(async (_: unknown, ctx) => ctx.token ?? 'no token', {
      store: failing('fail-open'),
      key: () => 'k',
      bus,
      clock,
    });
    expect(await open(undefined)).toBe('no token');
    expect(events).toEqual([
      {
        type: 'idempotency.storeError',
        source: 'idempotent',
        time: 1_000,
        key: 'k',
        operation: 'claim',
        code: 'E_STORE_UNAVAILABLE',
        failOpen: false,
      },
      {
        type: 'idempotency.storeError',
        source: 'idempotent',
        time: 1_000,
        key: 'k',
        operation: 'claim',
        code: 'E_STORE_UNAVAILABLE',
        failOpen: true,
      },
    ]);
  });

  it('returns the result when only the completion fails: the work is done, and the record stays claimed until its lease ends', async () => {
    const { bus, events, clock, store } = setup();
    const flakyComplete: IdempotencyStore = {
      claim: (k, f, l) => store.claim(k, f, l),
      complete: async (key) => {
        throw new StoreUnavailableError('flaky', 'complete', key, 'timed out');
      },
      release: (k, t) => store.release(k, t),
    };
    const job = idempotent(async () => 'paid', {
      store: flakyComplete,
      key: () => 'k',
      bus,
      clock,
      leaseMs: 1_000,
      completeTimeoutMs: 0,
    });
    expect(await job(undefined)).toBe('paid');
    expect(events.at(-1)).toMatchObject({ type: 'idempotency.storeError', operation: 'complete', failOpen: true });
    await expect(job(undefined)).rejects.toMatchObject({ code: 'E_IDEMPOTENCY_CONFLICT' });
  });

  it('retries a failing completion for completeTimeoutMs with its lease renewed: no repeat takes the key over meanwhile', async () => {
    const { bus, events, clock, store } = setup();
    let attempts = 0;
    let failing = true;
    const blip: IdempotencyStore = {
      claim: (k, f, l) => store.claim(k, f, l),
      complete: async (key, token, outcome, ttl) => {
        attempts++;
        if (failing) throw new StoreUnavailableError('blip', 'complete', key, 'timed out');
        return store.complete(key, token, outcome, ttl);
      },
      release: (k, t) => store.release(k, t),
      extend: (k, t, l) => (store.extend as NonNullable<IdempotencyStore['extend']>)(k, t, l),
    };
    let runs = 0;
    const job = idempotent(
      async () => {
        runs++;
        return 'paid';
      },
      { store: blip, key: () => 'k', bus, clock, leaseMs: 1_000, completeTimeoutMs: 5_000 },
    );
    let result: string | undefined;
    const first = job(undefined).then((v) => {
      result = v;
    });
    // Past the lease: renewed while the completion is retried, the key is still this run's.
    for (let i = 0; i < 15; i++) await clock.advance(100);
    expect(result).toBeUndefined();
    await expect(job(undefined)).rejects.toMatchObject({ code: 'E_IDEMPOTENCY_CONFLICT' });
    failing = false;
    for (let i = 0; i < 20 && result === undefined; i++) await clock.advance(100);
    await first;
    expect(result).toBe('paid');
    expect(attempts).toBeGreaterThanOrEqual(3);
    expect(events.filter((e) => e.type === 'idempotency.storeError')).toHaveLength(attempts - 1);
    // Stored: a repeat replays it, and the function ran once.
    expect(await job(undefined)).toBe('paid');
    expect(runs).toBe(1);
  });

  it('a completeTimeoutMs of 100 or less still retries a completion that failed once (it was never retried)', async () => {
    for (const completeTimeoutMs of [1, 50, 100]) {
      const { bus, events, clock, store } = setup();
      let attempts = 0;
      const blip: IdempotencyStore = {
        claim: (k, f, l) => store.claim(k, f, l),
        complete: async (key, token, outcome, ttl) => {
          if (++attempts === 1) throw new StoreUnavailableError('blip', 'complete', key, 'lost reply');
          return store.complete(key, token, outcome, ttl);
        },
        release: (k, t) => store.release(k, t),
        extend: (k, t, l) => (store.extend as NonNullable<IdempotencyStore['extend']>)(k, t, l),
      };
      let runs = 0;
      const job = idempotent(
        async () => {
          runs++;
          return 'paid';
        },
        { store: blip, key: () => 'k', bus, clock, leaseMs: 1_000, completeTimeoutMs },
      );
      const first = job(undefined);
      for (let i = 0; i < 5; i++) await clock.advance(completeTimeoutMs);
      expect(await first).toBe('paid');
      expect(attempts).toBe(2);
      expect(events.filter((e) => e.type === 'idempotency.storeError')).toHaveLength(1);
      // Stored on the second try: a repeat replays it, the function ran once.
      expect(await job(undefined)).toBe('paid');
      expect(runs).toBe(1);
    }
  });

  it('a listener that throws does not break the call', async () => {
    const { store, clock } = setup();
    const bus = createBus({ onListenerError: () => {} });
    bus.on('idempotency.claim', () => {
      throw new Error('listener bug');
    });
    const job = idempotent(async () => 1, { store, key: () => 'k', bus, clock });
    await expect(job(undefined)).resolves.toBe(1);
  });

  it('names the bad option and its value', () => {
    const store = memoryStore();
    const fn = async () => 1;
    expect(() => idempotent(fn, { store: {} as never, key: () => 'k' })).toThrow(
      'idempotent: store must be an IdempotencyStore (memoryStore(), redisStore() or your own) (got {})',
    );
    expect(() => idempotent(fn, { store, key: 'k' as never })).toThrow(/idempotent: key must be a function/);
    expect(() => idempotent(fn, { store, key: () => 'k', leaseMs: -1 })).toThrow(/idempotent: leaseMs .*\(got -1\)/);
    expect(() => idempotent(fn, { store, key: () => 'k', wait: {} as never })).toThrow(/wait\.timeout/);
    expect(() => idempotent(fn, { store, key: () => 'k', retries: 3 } as never)).toThrow(
      'idempotent: retries is not a known option (got 3)',
    );
    expect(() => idempotent('fn' as never, { store, key: () => 'k' })).toThrow(/first argument must be the function/);
    store.dispose();
  });
});

describe('fingerprintOf()', () => {
  it('is the same for equal payloads, whatever their key order, and differs when a value differs', () => {
    expect(fingerprintOf({ a: 1, b: [1, { c: 'x' }] })).toBe(fingerprintOf({ b: [1, { c: 'x' }], a: 1 }));
    expect(fingerprintOf({ a: 1 })).not.toBe(fingerprintOf({ a: '1' }));
    expect(fingerprintOf({ a: 1, skip: undefined })).toBe(fingerprintOf({ a: 1 }));
    expect(fingerprintOf(Buffer.from('hi'))).toBe(fingerprintOf(new Uint8Array([104, 105])));
    expect(fingerprintOf(new Date(5))).not.toBe(fingerprintOf(new Date(6)));
    expect(fingerprintOf([null])).not.toBe(fingerprintOf([undefined]));
  });
});
