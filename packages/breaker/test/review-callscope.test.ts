import { createRequire } from 'node:module';
import * as coreSrc from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import * as breakerSrc from '../src/index.js';

// Outside review of 9da75a42: the breaker reads core's CallScope once at load (`Scope`), and a
// call with no options skips `instanceof`. Attacked with core and breaker copies mixed in one
// process: the CommonJS builds (require, core's dist/index.cjs), the ESM build of the breaker
// (dist/index.js, whose '@holdfast/core' resolves to core's source here) and the sources.
const require = createRequire(import.meta.url);
// Vitest hands Node '--conditions @holdfast/source', so require('@holdfast/core') would find the
// TypeScript source: the breaker's CJS build is given core's CJS build there, as a user's
// require() (no such condition) finds it.
const coreCjs = require('../../core/dist/index.cjs') as typeof coreSrc;
const coreCjsPath = require.resolve('../../core/dist/index.cjs');
require.cache[createRequire(require.resolve('../dist/index.cjs')).resolve('@holdfast/core')] =
  require.cache[coreCjsPath];
const breakerCjs = require('../dist/index.cjs') as typeof breakerSrc;
const breakerEsm = (await import('../dist/index.js')) as unknown as typeof breakerSrc;

type Core = typeof coreSrc;
type Breaker = typeof breakerSrc;
const cores: [string, Core][] = [
  ['core src', coreSrc],
  ['core cjs', coreCjs],
];
const breakers: [string, Breaker, Core][] = [
  ['breaker src', breakerSrc, coreSrc],
  ['breaker esm dist', breakerEsm, coreSrc],
  ['breaker cjs dist', breakerCjs, coreCjs],
];
const pairs = breakers.flatMap(([b, breaker, own]) =>
  cores.map(([c, core]) => [`${b} / scope of ${c}`, breaker, own, core] as const),
);

function make(breaker: Breaker, own: Core, name = 'payments') {
  const bus = own.createBus();
  const events: { type: string; source: string }[] = [];
  bus.on('*', (e) => events.push(e));
  return { events, b: breaker.circuitBreaker({ name, policies: false, bus, consecutiveFailures: 2 }) };
}

it('the copies really are distinct: a CallScope of the cjs core is no CallScope of the source core', () => {
  expect(coreCjs.CallScope).not.toBe(coreSrc.CallScope);
  expect(new coreCjs.CallScope(undefined) instanceof coreSrc.CallScope).toBe(false);
  expect(breakerCjs.circuitBreaker).not.toBe(breakerSrc.circuitBreaker);
});

describe.each(breakers)('%s: options of every shape', (_, breaker, own) => {
  it.each<[string, unknown]>([
    ['undefined', undefined],
    ['null', null],
    ['{}', {}],
    ['{ signal: undefined }', { signal: undefined }],
    ['{ signal: null }', { signal: null }],
    ['{ signal } live', { signal: new AbortController().signal }],
  ])('execute(fn, %s) runs fn with attempt 1 and a live signal, and counts it', async (__, options) => {
    const { b, events } = make(breaker, own);
    let seen: { attempt: number; signal: AbortSignal } | undefined;
    await expect(
      b.execute((ctx) => {
        seen = ctx;
        return Promise.resolve(7);
      }, options as never),
    ).resolves.toBe(7);
    expect(seen?.attempt).toBe(1);
    expect(seen?.signal.aborted).toBe(false);
    expect(b.snapshot().window).toMatchObject({ calls: 1, successes: 1 });
    expect(events.filter((e) => e.type === 'breaker.success').map((e) => e.source)).toEqual(['payments']);
  });

  it('execute(fn, { signal }) aborted mid-call: fn sees its signal abort, the call rejects with the reason, uncounted', async () => {
    const { b } = make(breaker, own);
    const controller = new AbortController();
    const call = b.execute(
      (ctx) =>
        new Promise((_r, reject) => {
          ctx.signal.addEventListener('abort', () => reject(new Error('fn saw abort')));
          controller.abort('caller left');
        }),
      { signal: controller.signal },
    );
    await expect(call).rejects.toBe('caller left');
    expect(b.snapshot().window).toMatchObject({ failures: 0 });
  });

  it('a failing call with no options still counts and opens the breaker after 2', async () => {
    const { b, events } = make(breaker, own);
    for (let i = 0; i < 2; i++)
      await expect(b.execute(() => Promise.reject(new Error('down')))).rejects.toThrow('down');
    expect(b.state).toBe('open');
    expect(events.filter((e) => e.type === 'breaker.open').map((e) => e.source)).toEqual(['payments']);
  });
});

describe.each(pairs)('%s', (_, breaker, own, core) => {
  it('a live scope is followed: its attempt is kept, and aborting it mid-call aborts fn and rejects with its reason', async () => {
    const { b } = make(breaker, own);
    const outer = new core.CallScope(undefined, 4);
    let seen: { attempt: number; signal: AbortSignal } | undefined;
    const call = b.execute((ctx) => {
      seen = ctx;
      outer.abort('outer gave up');
      return Promise.resolve(1);
    }, outer);
    await expect(call).rejects.toBe('outer gave up');
    expect(seen?.attempt).toBe(4);
    expect(seen?.signal.aborted).toBe(true);
  });

  it('an already aborted scope: fn never runs, the call rejects with its reason, nothing counted', async () => {
    const { b } = make(breaker, own);
    const outer = new core.CallScope(undefined);
    outer.abort('too late');
    let runs = 0;
    await expect(b.execute(async () => void runs++, outer)).rejects.toBe('too late');
    expect(runs).toBe(0);
    expect(b.snapshot().window).toMatchObject({ calls: 0 });
  });

  it("fn is handed the scope itself when it is of the breaker's own core, a scope following it otherwise", async () => {
    const { b } = make(breaker, own);
    const outer = new core.CallScope(undefined, 2);
    let ctx: unknown;
    await b.execute(async (c) => void (ctx = c), outer);
    expect(ctx === outer).toBe(core === own);
    expect(ctx instanceof own.CallScope).toBe(true);
  });

  it('a disabled breaker (pass-through) still refuses a call whose scope already aborted', async () => {
    const { b } = make(breaker, own);
    b.disable();
    const outer = new core.CallScope(undefined);
    outer.abort('gone');
    let runs = 0;
    await expect(b.execute(async () => void runs++, outer)).rejects.toBe('gone');
    await expect(b.execute(async () => 5)).resolves.toBe(5);
    expect(runs).toBe(0);
  });

  it('a subclass of CallScope is followed as a scope', async () => {
    const { b } = make(breaker, own);
    class Mine extends core.CallScope {}
    const outer = new Mine(undefined, 2);
    const call = b.execute((ctx) => {
      expect(ctx.attempt).toBe(2);
      outer.abort('sub gave up');
      return Promise.resolve(1);
    }, outer);
    await expect(call).rejects.toBe('sub gave up');
  });

  it('nested: a timeout (this core) holding the breaker, behind a pipeline of the other core: the deadline aborts fn', async () => {
    const { b, events } = make(breaker, own);
    const t = core.timeout(20, { bus: core.createBus() });
    const outer = (core === coreSrc ? coreCjs : coreSrc).pipeline(t);
    const call = outer.execute((ctx) =>
      b.execute(
        (inner) =>
          new Promise((_r, reject) => inner.signal.addEventListener('abort', () => reject(inner.signal.reason))),
        ctx,
      ),
    );
    await expect(call).rejects.toMatchObject({ code: 'E_TIMEOUT' });
    // The caller gave up: the breaker counts no failure of the dependency.
    expect(b.snapshot().window).toMatchObject({ failures: 0 });
    expect(events.some((e) => e.type === 'breaker.failure')).toBe(false);
  });
});

describe('objects that look like a CallScope', () => {
  it.each(breakers)(
    '%s: { aborted: true, reason } without a signal is plain options: fn runs (no brand, no signal)',
    async (_, breaker, own) => {
      const { b } = make(breaker, own);
      const fake = { aborted: true, reason: 'fake', attempt: 3 };
      let attempt = 0;
      await expect(
        b.execute(async (ctx) => {
          attempt = ctx.attempt;
          return 1;
        }, fake as never),
      ).resolves.toBe(1);
      expect(attempt).toBe(3);
    },
  );

  it.each(breakers)(
    '%s: a lookalike whose signal is aborted is refused with the signal reason',
    async (_, breaker, own) => {
      const { b } = make(breaker, own);
      const controller = new AbortController();
      controller.abort('via signal');
      const fake = { aborted: true, reason: 'fake', attempt: 1, signal: controller.signal };
      let runs = 0;
      await expect(b.execute(async () => void runs++, fake as never)).rejects.toBe('via signal');
      expect(runs).toBe(0);
    },
  );

  it.each(breakers)('%s: a revoked Proxy as options rejects, never throws', async (_, breaker, own) => {
    const { b } = make(breaker, own);
    const { proxy, revoke } = Proxy.revocable({}, {});
    revoke();
    let result: Promise<unknown> | undefined;
    expect(() => {
      result = b.execute(async () => 1, proxy as never);
    }).not.toThrow();
    await expect(result).rejects.toBeInstanceOf(TypeError);
  });
});

describe('retry (source) around breakers of each copy, under a timeout of the cjs core', () => {
  it('retries reach the breaker with their attempt numbers, and the breaker names its events', async () => {
    const { retry } = await import('../../retry/src/index.js');
    const { b, events } = make(breakerCjs, coreCjs, 'inventory');
    const attempts: number[] = [];
    const policy = coreCjs.pipeline(
      coreCjs.timeout(2_000, { bus: coreCjs.createBus() }),
      retry({
        maxAttempts: 3,
        backoff: { type: 'constant', initialDelay: 1 },
        jitter: 'none',
        bus: coreSrc.createBus(),
      }),
    );
    const out = await policy.execute((ctx) =>
      b.execute(async (inner) => {
        attempts.push(inner.attempt);
        if (inner.attempt < 2) throw Object.assign(new Error('reset'), { code: 'ECONNRESET' });
        return 'ok';
      }, ctx),
    );
    expect(out).toBe('ok');
    expect(attempts).toEqual([1, 2]);
    expect(events.map((e) => [e.type, e.source])).toEqual([
      ['breaker.failure', 'inventory'],
      ['breaker.success', 'inventory'],
    ]);
  });
});
