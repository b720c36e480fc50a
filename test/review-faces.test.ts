/**
 * An outside review of the fixes for issue 15 ("every face behaves as documented"). Each `it`
 * is one promise the docs or the issue make that a user can still break; every test here
 * failed when it was written. The rules quoted are docs/concepts.md "Aborts: the rules" unless
 * said otherwise.
 */

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fallback, HoldfastConfigError, pipeline, timeout } from '@holdfast/core';
import { resilientFetch, withBreaker, withRetry, withTimeout } from '@holdfast/fetch';
import { bulkhead } from '@holdfast/limit';
import { retry } from '@holdfast/retry';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Settles a promise into a value the test can compare. */
async function outcome(p: Promise<unknown>): Promise<{ ok: true; value: unknown } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await p };
  } catch (error) {
    return { ok: false, error };
  }
}

describe('aborts: "rejects with signal.reason, whatever the attempt returns or throws after"', () => {
  it('retry: an abort while an async retryOn.result runs wins (first attempt, predicate says no)', async () => {
    const controller = new AbortController();
    const reason = new Error('caller left');
    const policy = retry({
      budget: false,
      maxAttempts: 3,
      retryOn: {
        result: async () => {
          controller.abort(reason); // the caller gives up while the hook decides
          await sleep(10);
          return false;
        },
      },
    });
    const got = await outcome(policy.execute(async () => 'late value', { signal: controller.signal }));
    expect(got).toEqual({ ok: false, error: reason });
  });

  it('retry: an abort while an async retryOn.result runs wins (a later attempt, predicate says no)', async () => {
    const controller = new AbortController();
    const reason = new Error('caller left');
    let calls = 0;
    const policy = retry({
      budget: false,
      maxAttempts: 3,
      jitter: 'none',
      backoff: { type: 'constant', initialDelay: 1 },
      retryOn: {
        result: async (value) => {
          if (value === 'second') {
            controller.abort(reason);
            await sleep(10);
            return false;
          }
          return true; // the first result is retried
        },
      },
    });
    const got = await outcome(
      policy.execute(async () => (++calls === 1 ? 'first' : 'second'), { signal: controller.signal }),
    );
    expect(got).toEqual({ ok: false, error: reason });
  });

  it('timeout (cooperative): the caller aborted first, the deadline then passed, the function resolved late', async () => {
    const controller = new AbortController();
    const reason = new Error('caller left');
    const call = timeout(30).execute(
      async () => {
        await sleep(80); // ignores its signal
        return 'late value';
      },
      { signal: controller.signal },
    );
    setTimeout(() => controller.abort(reason), 5);
    expect(await outcome(call)).toEqual({ ok: false, error: reason });
  });

  it('timeout (cooperative): the caller aborted first, the deadline then passed, the function threw its own error', async () => {
    const controller = new AbortController();
    const reason = new Error('caller left');
    const call = timeout(30).execute(
      async () => {
        await sleep(80);
        throw new Error('function failed');
      },
      { signal: controller.signal },
    );
    setTimeout(() => controller.abort(reason), 5);
    expect(await outcome(call)).toEqual({ ok: false, error: reason });
  });

  it('pipeline(): an empty pipeline never runs the function for a signal aborted before the call', async () => {
    let ran = 0;
    const reason = new Error('already gone');
    const got = await outcome(pipeline().execute(async () => ++ran, { signal: AbortSignal.abort(reason) }));
    expect({ got, ran }).toEqual({ got: { ok: false, error: reason }, ran: 0 });
  });

  it('fallback() inside a pipeline: a signal aborted before the call runs neither the function nor the fallback', async () => {
    let ran = 0;
    const reason = new Error('already gone');
    const got = await outcome(
      pipeline(fallback({ value: 'fallback value' })).execute(async () => ++ran, {
        signal: AbortSignal.abort(reason),
      }),
    );
    expect({ got, ran }).toEqual({ got: { ok: false, error: reason }, ran: 0 });
  });

  it('fallback() inside a pipeline: aborted during the attempt, the function then throws its own error', async () => {
    const controller = new AbortController();
    const reason = new Error('caller left');
    const call = pipeline(fallback({ value: 'fallback value' })).execute(
      async () => {
        await sleep(30);
        throw new Error('function failed');
      },
      { signal: controller.signal },
    );
    setTimeout(() => controller.abort(reason), 5);
    expect(await outcome(call)).toEqual({ ok: false, error: reason });
  });
});

describe('options: "Bad options throw HoldfastConfigError naming the option path and bad value"', () => {
  it('bulkhead() refuses a queueTimeout over 2^31-1 ms (Node fires such a timer at once)', async () => {
    let made: ReturnType<typeof bulkhead> | undefined;
    let error: unknown;
    try {
      made = bulkhead({ maxConcurrent: 1, maxQueue: 1, queueTimeout: 2 ** 31 });
    } catch (e) {
      error = e;
    }
    if (made !== undefined) {
      // Accepted: then a queued call must at least not be refused at once.
      let release!: () => void;
      const first = made.execute(() => new Promise<void>((r) => (release = r)));
      const second = outcome(made.execute(async () => 'queued'));
      await sleep(50);
      release();
      await first;
      expect(await second, 'a queued call with a 24-day queueTimeout').toEqual({ ok: true, value: 'queued' });
    }
    expect(error).toBeInstanceOf(HoldfastConfigError);
    expect(String((error as Error).message)).toContain('queueTimeout');
  });

  it('resilientFetch({ baseUrls }) checks retry.backoff where it is given, as it does without baseUrls', () => {
    const bad = { retry: { backoff: { initialDelay: 5_000, maxDelay: 100 } } };
    // Without baseUrls the bad backoff is refused, named retry.backoff.maxDelay.
    expect(() => resilientFetch(bad)).toThrow(/retry\.backoff\.maxDelay/);
    // With baseUrls the same option is accepted and then silently ignored.
    let error: unknown;
    try {
      resilientFetch({ ...bad, baseUrls: ['http://127.0.0.1:1'] }).dispose();
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(HoldfastConfigError);
    expect(String((error as Error).message)).toMatch(/retry\.backoff/);
  });
});

describe('wrappers: "The wrapper keeps fn\'s parameters and the this it is called with"', () => {
  it("withRetry/withBreaker/withTimeout keep the wrapped function's name and length", () => {
    async function loadUser(id: string, tenant: string) {
      return `${tenant}/${id}`;
    }
    const wrapped = [withRetry(loadUser), withBreaker(loadUser, { policies: false }), withTimeout(loadUser, 1_000)];
    expect(wrapped.map((f) => [f.name, f.length])).toEqual(wrapped.map(() => ['loadUser', 2]));
  });
});
