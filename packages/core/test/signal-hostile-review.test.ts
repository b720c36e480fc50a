/**
 * `execute(fn, { signal })` with signals production hands on: a polyfill's (the abort-controller
 * package, event-target-shim: no `reason`), and a signal-like object whose getters throw (a Proxy,
 * a revoked one). The call rejects with an Error, never synchronously, never with `undefined`,
 * and the function never runs.
 */
import { describe, expect, it } from 'vitest';
import { type ExecuteOptions, fallback, hedge, ManualClock, type Policy, pipeline, timeout } from '../src/index.js';

/** The abort-controller package's AbortSignal as it behaves: `aborted`, listeners, no `reason`. */
class PolyfillSignal {
  #aborted = false;
  #listeners = new Set<() => void>();
  get aborted(): boolean {
    return this.#aborted;
  }
  addEventListener(_type: string, listener: () => void): void {
    this.#listeners.add(listener);
  }
  removeEventListener(_type: string, listener: () => void): void {
    this.#listeners.delete(listener);
  }
  abort(): void {
    this.#aborted = true;
    for (const listener of this.#listeners) listener();
  }
}

const policies: [string, () => Policy][] = [
  ['timeout() cooperative', () => timeout(10_000)],
  ['timeout() aggressive', () => timeout(10_000, { strategy: 'aggressive' })],
  ['hedge()', () => hedge({ delay: 10_000, safe: true, budget: false, policies: false })],
  ['fallback()', () => fallback({ value: 'fallback', on: (e) => e === 'never' })],
  ['pipeline(pipeline(timeout()))', () => pipeline(pipeline(timeout(10_000)))],
];

const revocable = Proxy.revocable({}, {});
revocable.revoke();
const unreadable: [string, () => unknown][] = [
  [
    'a Proxy whose getters throw',
    () =>
      new Proxy(
        {},
        {
          get() {
            throw new Error('getter threw');
          },
        },
      ),
  ],
  ['a revoked Proxy', () => revocable.proxy],
];

async function settle(call: () => Promise<unknown>): Promise<{ error?: unknown; value?: unknown; sync?: boolean }> {
  let promise: Promise<unknown>;
  try {
    promise = call();
  } catch (error) {
    return { error, sync: true };
  }
  return promise.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
}

describe.each(policies)('%s', (_, make) => {
  it.each(unreadable)(
    '%s as signal: rejects (never throws) with a TypeError naming signal; fn never runs',
    async (_, signal) => {
      let runs = 0;
      const out = await settle(() => make().execute(() => ++runs, { signal: signal() } as unknown as ExecuteOptions));
      expect(out.sync).toBeUndefined();
      expect(out.error).toBeInstanceOf(TypeError);
      expect((out.error as Error).message).toMatch(/signal must be an AbortSignal/);
      expect(runs).toBe(0);
    },
  );

  it('an already-aborted polyfill signal (no reason): rejects with an AbortError, not undefined; fn never runs', async () => {
    const signal = new PolyfillSignal();
    signal.abort();
    let runs = 0;
    const out = await settle(() => make().execute(() => ++runs, { signal } as unknown as ExecuteOptions));
    expect(out.error).toBeInstanceOf(Error);
    expect((out.error as Error).name).toBe('AbortError');
    expect(runs).toBe(0);
  });

  it('a polyfill signal aborted mid-call: rejects with an AbortError, not undefined', async () => {
    const signal = new PolyfillSignal();
    let started!: () => void;
    const running = new Promise<void>((resolve) => {
      started = resolve;
    });
    const call = make().execute(
      ({ signal: inner }) =>
        new Promise((_, reject) => {
          inner.addEventListener('abort', () => reject(inner.reason));
          started();
        }),
      { signal } as unknown as ExecuteOptions,
    );
    await running;
    signal.abort();
    const error = await call.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).name).toBe('AbortError');
  });
});

it('a signal of a class named at run time by a URL: the TypeError does not print the name', async () => {
  const Named = class {};
  Object.defineProperty(Named, 'name', { value: 'https://app:hunter2@db/x' });
  const error = await timeout(1_000)
    .execute(() => 'ran', { signal: new Named() } as unknown as ExecuteOptions)
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  expect((error as Error).message).toBe('signal must be an AbortSignal (got an object)');
});

it('timeout() cooperative: a polyfill signal aborted after the deadline, before fn settles: an AbortError, not undefined', async () => {
  const clock = new ManualClock(0);
  const signal = new PolyfillSignal();
  let finish!: () => void;
  const call = timeout(100, { clock }).execute(
    () =>
      new Promise<string>((resolve) => {
        finish = () => resolve('late');
      }),
    { signal } as unknown as ExecuteOptions,
  );
  await clock.advance(100);
  signal.abort();
  finish();
  const error = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(Error);
  expect((error as Error).name).toBe('AbortError');
});
