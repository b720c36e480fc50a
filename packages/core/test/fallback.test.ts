import { describe, expect, it } from 'vitest';
import {
  createBus,
  type FallbackCause,
  fallback,
  HoldfastConfigError,
  type HoldfastEvent,
  pipeline,
  TimeoutError,
  timeout,
} from '../src/index.js';

describe('fallback()', () => {
  it('serves a value in place of a failure, and says so on the bus with the failure code', async () => {
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('fallback', (e) => events.push(e));
    const f = fallback({ value: [], bus, name: 'prices' });
    const failure = Object.assign(new Error('down'), { code: 'ECONNREFUSED' });
    expect(
      await f.execute<string[]>(() => {
        throw failure;
      }),
    ).toEqual([]);
    expect(events).toEqual([
      expect.objectContaining({ type: 'fallback', source: 'prices', reason: 'failure', code: 'ECONNREFUSED' }),
    ]);
    expect(await f.execute(() => ['a'])).toEqual(['a']);
    expect(events).toHaveLength(1);
  });

  it('hands `to` what it replaces: the error, or the result onResult refused', async () => {
    const seen: FallbackCause[] = [];
    const f = fallback({
      to: (cause) => {
        seen.push(cause);
        return cause.reason === 'failure' ? 'from error' : 'from result';
      },
      onResult: (r) => (r as { status: number }).status >= 500,
    });
    const boom = new Error('boom');
    expect(
      await f.execute(() => {
        throw boom;
      }),
    ).toBe('from error');
    expect(await f.execute(() => ({ status: 503 }))).toBe('from result');
    expect(await f.execute(() => ({ status: 200 }))).toEqual({ status: 200 });
    expect(seen.map((c) => c.reason)).toEqual(['failure', 'result']);
    expect(seen[0]).toMatchObject({ error: boom });
    expect(seen[1]).toMatchObject({ result: { status: 503 } });
  });

  it('replaces only the errors `on` picks', async () => {
    const f = fallback({ value: 'cached', on: (e) => (e as Error).message === 'transient' });
    expect(await f.execute(() => Promise.reject(new Error('transient')))).toBe('cached');
    await expect(f.execute(() => Promise.reject(new Error('bug')))).rejects.toThrow('bug');
  });

  it('composes: around a timeout it serves the value when the timeout fires', async () => {
    const p = pipeline(fallback({ value: 'stale' }), timeout(10));
    const slow = (ctx: { signal: AbortSignal }) =>
      new Promise<string>((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)));
    expect(await p.execute(slow)).toBe('stale');
  });

  it('never replaces an abort from outside: the caller gets its own reason', async () => {
    const p = pipeline(timeout(10), fallback({ value: 'stale' }));
    const slow = (ctx: { signal: AbortSignal }) =>
      new Promise<string>((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)));
    await expect(p.execute(slow)).rejects.toBeInstanceOf(TimeoutError);
    const caller = new AbortController();
    const pending = fallback({ value: 'x' }).execute(slow, { signal: caller.signal });
    caller.abort(new Error('user left'));
    await expect(pending).rejects.toThrow('user left');
  });

  it('a replacement that fails rejects with its own error', async () => {
    const f = fallback({
      to: () => {
        throw new Error('no cache either');
      },
    });
    await expect(f.execute(() => Promise.reject(new Error('down')))).rejects.toThrow('no cache either');
  });

  it('needs value or to, not both', () => {
    expect(() => fallback({})).toThrow(HoldfastConfigError);
    expect(() => fallback({ value: 1, to: () => 2 })).toThrow(/not both/);
    expect(() => fallback({ value: 1, retries: 2 } as never)).toThrow(/retries is not a known option/);
  });
});
