import { createBus, HoldfastConfigError, ManualClock } from '@holdfast/core';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { idempotency } from '../src/fastify.js';
import { type Decision, HttpIdempotency, type HttpIdempotencyOptions, type RequestView } from '../src/http/index.js';
import { memoryStore } from '../src/index.js';

// A scope function that returns its string at once is decided at once, as the global scope is:
// no promise, no tick (it cost ~2,500 instructions a request). Everything else it can do
// (return a promise, throw, return no string) is settled as before.

function view(key: string, body = '{"n":1}'): RequestView {
  return {
    method: 'POST',
    url: '/orders',
    headers: { 'content-type': 'application/json', 'idempotency-key': key },
    body: Buffer.from(body),
  };
}

function core(scope: HttpIdempotencyOptions<{ user?: unknown }>['scope']) {
  return new HttpIdempotency<{ user?: unknown }>('test', {
    store: memoryStore(),
    scope,
    bus: createBus(),
    clock: new ManualClock(1_000_000),
  });
}

describe('a scope function that answers at once', () => {
  it('decides without a promise, and keeps each scope its own key space', async () => {
    let calls = 0;
    const c = core((req) => {
      calls++;
      return req.user as string;
    });
    const first = c.decideNow({ user: 'ann' }, view('k1'));
    expect(first).not.toBeInstanceOf(Promise);
    expect((first as Decision).action).toBe('run');
    // The same key from another caller is not the first's: run, not 409 or a replay.
    const other = c.decideNow({ user: 'bob' }, view('k1'));
    expect(other).not.toBeInstanceOf(Promise);
    expect((other as Decision).action).toBe('run');
    // Asked once a request.
    expect(calls).toBe(2);
    // ann's key is held while it runs: her retry waits (409), bob's does not see it.
    const again = c.decideNow({ user: 'ann' }, view('k1'));
    expect((again as Decision).action).toBe('respond');
    expect(calls).toBe(3);
  });

  it('still awaits a promise of a scope, and settles what is not a non-empty string as before', async () => {
    const async = core(async (req) => req.user as string);
    const pending = async.decideNow({ user: 'ann' }, view('k1'));
    expect(pending).toBeInstanceOf(Promise);
    expect((await pending).action).toBe('run');

    // Thrown at once: a rejection (never a throw out of decideNow), the error as it is.
    const thrown = new Error('no session');
    const throws = core(() => {
      throw thrown;
    });
    const refused = throws.decideNow({}, view('k2'));
    expect(refused).toBeInstanceOf(Promise);
    await expect(refused).rejects.toBe(thrown);

    // Thrown, not an object; returned empty or not a string: a config error naming its type.
    for (const [scope, said] of [
      [
        () => {
          throw null;
        },
        'threw null',
      ],
      [() => '', 'returned an empty string'],
      [(req: { user?: unknown }) => req.user, 'returned undefined'],
      [() => 42, 'returned number'],
    ] as const) {
      const c = core(scope as never);
      const decided = c.decideNow({}, view('k3'));
      expect(decided).toBeInstanceOf(Promise);
      const error = await (decided as Promise<Decision>).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(HoldfastConfigError);
      expect((error as Error).message).toContain(said);
    }
  });

  it('through Fastify: one run per caller and key, each caller replayed its own response', async () => {
    const app = Fastify();
    await app.register(idempotency, {
      store: memoryStore(),
      scope: (req) => (req.headers['x-user'] as string | undefined) ?? '',
    });
    let runs = 0;
    app.post('/orders', async (req) => ({ run: ++runs, user: req.headers['x-user'] }));
    const post = (user: string | undefined) =>
      app.inject({
        method: 'POST',
        url: '/orders',
        headers: { 'idempotency-key': 'k-1', 'content-type': 'application/json', ...(user ? { 'x-user': user } : {}) },
        payload: { amount: 1 },
      });
    const ann = await post('ann');
    const bob = await post('bob');
    expect(ann.json()).toEqual({ run: 1, user: 'ann' });
    expect(bob.json()).toEqual({ run: 2, user: 'bob' });
    const annAgain = await post('ann');
    expect(annAgain.headers['idempotent-replayed']).toBe('true');
    expect(annAgain.json()).toEqual({ run: 1, user: 'ann' });
    // No caller: the scope gives '', a config error (500 by Fastify's handler), nothing run.
    const none = await post(undefined);
    expect(none.statusCode).toBe(500);
    expect(runs).toBe(2);
    await app.close();
  });
});
