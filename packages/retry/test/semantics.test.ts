import { AbortError } from 'p-retry';
import { describe, expect, it, vi } from 'vitest';
import { retry } from '../src/index.js';
import { finish, response, setup } from './support.js';

/** A policy on a manual clock with no jitter and no budget: waits of 100, 200, 400 ms. */
function policy(extra: Parameters<typeof retry>[0] = {}) {
  const env = setup();
  const p = retry({ clock: env.clock, bus: env.bus, jitter: 'none', budget: false, name: 'orders', ...extra });
  return { ...env, policy: p };
}

/** A promise and the functions that settle it. */
function deferred<T = void>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('retry(): the caller abort decides the outcome', () => {
  it('rejects with the caller reason when the attempt resolves after the abort', async () => {
    const { of, policy: p } = policy();
    const controller = new AbortController();
    const reason = new Error('caller left');
    const late = deferred<string>();
    const call = p.execute(() => late.promise, { signal: controller.signal });
    controller.abort(reason);
    late.resolve('value nobody waits for');
    await expect(call).rejects.toBe(reason);
    expect(of('retry.giveUp').map((e) => e.reason)).toEqual(['aborted']);
  });

  it('rejects with the caller reason, not the attempt error, and says aborted, on a later attempt too', async () => {
    const { clock, of, policy: p } = policy();
    const controller = new AbortController();
    const reason = new Error('caller left');
    let attempts = 0;
    const second = deferred<string>();
    const call = p.execute(
      () => {
        attempts++;
        if (attempts === 1) throw new Error('reset');
        return second.promise;
      },
      { signal: controller.signal },
    );
    const outcome = call.catch((e: unknown) => e);
    await clock.advance(100);
    expect(attempts).toBe(2);
    controller.abort(reason);
    second.reject(new Error('socket closed')); // what a client does when its signal aborts
    expect(await outcome).toBe(reason);
    expect(attempts).toBe(2);
    expect(of('retry.giveUp')).toMatchObject([{ reason: 'aborted', attempts: 2 }]);
  });

  it('a Response retried result that arrives after the abort is dropped and its body freed', async () => {
    const { of, policy: p } = policy();
    const controller = new AbortController();
    const late = deferred<Response>();
    const call = p.execute(() => late.promise, { signal: controller.signal });
    controller.abort();
    const res = response(200);
    late.resolve(res);
    await expect(call).rejects.toMatchObject({ name: 'AbortError' });
    expect(of('retry.giveUp').map((e) => e.reason)).toEqual(['aborted']);
    expect(res.bodyUsed).toBe(true); // cancelled, so its connection is freed
  });
});

describe('retry(): AbortError by name is never retried', () => {
  it('not with the default predicate, and not with a custom retryOn.error that says yes to everything', async () => {
    for (const retryOn of [undefined, { error: () => true }]) {
      const { of, policy: p } = policy(retryOn ? { retryOn } : {});
      let attempts = 0;
      const stop = new AbortError('do not retry');
      const call = p.execute(() => {
        attempts++;
        throw stop;
      });
      // As p-retry does: the call rejects with the error the AbortError wraps (review s38).
      await expect(call).rejects.toBe(stop.originalError);
      expect(attempts).toBe(1);
      expect(of('retry.giveUp').map((e) => e.reason)).toEqual(['notRetryable']);
      // Any error named AbortError, such as the DOMException fetch throws.
      const dom = new DOMException('aborted', 'AbortError');
      await expect(p.execute(() => Promise.reject(dom))).rejects.toBe(dom);
    }
  });
});

describe('retry(): async predicates and onRetry are awaited', () => {
  it('retryOn.error resolving to false does not retry; resolving to true does', async () => {
    const no = policy({ retryOn: { error: async () => false } });
    let attempts = 0;
    const fail = new Error('nope');
    await expect(
      no.policy.execute(() => {
        attempts++;
        throw fail;
      }),
    ).rejects.toBe(fail);
    expect(attempts).toBe(1); // a Promise is not a truthy "retry"

    const yes = policy({ retryOn: { error: async (_e, attempt) => attempt < 2 } });
    attempts = 0;
    const call = yes.policy.execute(() => {
      attempts++;
      throw new Error(`attempt ${attempts}`);
    });
    const outcome = call.catch((e: Error) => e.message);
    await finish(yes.clock);
    expect(await outcome).toBe('attempt 2');
    expect(attempts).toBe(2);
  });

  it('retryOn.result resolving to true retries the result, false returns it', async () => {
    const { clock, policy: p } = policy({ retryOn: { result: async (r) => r === 'not yet' } });
    const results = ['not yet', 'not yet', 'done'];
    const call = p.execute(() => results.shift());
    await finish(clock);
    await expect(call).resolves.toBe('done');
    expect(results).toEqual([]);
    const { policy: q } = policy({ retryOn: { result: () => Promise.resolve(false) } });
    await expect(q.execute(() => 'first')).resolves.toBe('first');
  });

  it('onRetry is awaited before the wait starts, and its rejection does not change the call', async () => {
    const gate = deferred();
    const seen: string[] = [];
    const { clock, policy: p } = policy({
      onRetry: async ({ attempt }) => {
        seen.push(`onRetry ${attempt}`);
        await gate.promise;
        seen.push(`onRetry ${attempt} done`);
      },
    });
    let attempts = 0;
    const call = p.execute(() => {
      seen.push(`attempt ${++attempts}`);
      if (attempts === 1) throw new Error('reset');
      return 'ok';
    });
    await clock.advance(1_000);
    expect(seen).toEqual(['attempt 1', 'onRetry 2']);
    expect(clock.pending).toBe(0); // no wait started while onRetry runs
    gate.resolve();
    await clock.advance(99);
    expect(seen).toEqual(['attempt 1', 'onRetry 2', 'onRetry 2 done']);
    await clock.advance(1);
    await expect(call).resolves.toBe('ok');

    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    const last = new Error('x');
    const { clock: qClock, policy: q } = policy({ onRetry: () => Promise.reject(new Error('onRetry broke')) });
    const call2 = q.execute(() => Promise.reject(last)).catch((e: unknown) => e);
    await finish(qClock);
    expect(await call2).toMatchObject({ code: 'E_RETRY_EXHAUSTED', cause: last });
    warn.mockRestore();
  });

  it('an abort while an async predicate runs rejects with the caller reason and says aborted', async () => {
    const verdict = deferred<boolean>();
    const { of, policy: p } = policy({ retryOn: { error: () => verdict.promise } });
    const controller = new AbortController();
    const call = p.execute(() => Promise.reject(new Error('reset')), { signal: controller.signal });
    const outcome = call.catch((e: unknown) => e);
    await new Promise((r) => setImmediate(r));
    controller.abort('left');
    verdict.resolve(true);
    expect(await outcome).toBe('left');
    expect(of('retry.giveUp').map((e) => e.reason)).toEqual(['aborted']);
    expect(of('retry.attempt')).toEqual([]);
  });
});
