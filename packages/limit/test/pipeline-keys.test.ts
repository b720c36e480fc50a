import { type ExecuteOptions, HoldfastConfigError, pipeline, timeout } from '@holdfast/core';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { bulkhead, type RateLimitExecuteOptions, slidingWindow, tokenBucket } from '../src/index.js';

const settled = async (calls: Promise<unknown>[]) => (await Promise.allSettled(calls)).map((r) => r.status);

describe("a limiter's own key: 10 per user and 1000 in total in one pipeline", () => {
  it('a limiter with key: () => ... counts every call of the pipeline under its own key', async () => {
    const perUser = tokenBucket({ limit: 2, interval: 60_000, policies: false });
    const total = tokenBucket({ limit: 3, interval: 60_000, key: () => 'all', policies: false });
    const api = pipeline(perUser, total);
    const users = ['a', 'b', 'c', 'd', 'e'];
    // Before: total counted each user apart (3 per user): all five went through.
    expect(await settled(users.map((key) => api.execute(async () => key, { key })))).toEqual([
      'fulfilled',
      'fulfilled',
      'fulfilled',
      'rejected',
      'rejected',
    ]);
    expect(total.snapshot()).toMatchObject({ keys: 1, allowed: 3, rejected: 2 });
    // take() counts under the same key as execute(): before, total.take() read the defaultKey's full limit.
    expect(total.take()).toMatchObject({ allowed: false, remaining: 0 });
    expect(total.take('z')).toMatchObject({ allowed: false, remaining: 0 });
    // perUser still counts per user: a's second call goes through it, and total refuses it.
    expect(perUser.take('a').remaining).toBe(0);
  });

  it('the call cost still counts; the key function sees the call key (undefined without one)', async () => {
    const seen: unknown[] = [];
    const perTenant = slidingWindow({
      limit: 10,
      interval: 60_000,
      key: (k) => {
        seen.push(k);
        return k?.split('/')[0];
      },
      policies: false,
    });
    const api = pipeline(timeout(5_000), perTenant);
    await api.execute(async () => 1, { key: 'acme/alice', cost: 4 });
    await api.execute(async () => 1, { key: 'acme/bob', cost: 4 });
    await expect(api.execute(async () => 1, { key: 'acme/carol', cost: 4 })).rejects.toMatchObject({
      code: 'E_RATE_LIMITED',
    });
    await api.execute(async () => 1);
    expect(seen).toEqual(['acme/alice', 'acme/bob', 'acme/carol', undefined]);
    // undefined from the key function: the defaultKey, with the whole limit.
    expect(perTenant.take('').remaining).toBe(8);
    expect(perTenant.take('acme/dave').remaining).toBe(1);
    expect(seen.at(-1)).toBe('acme/dave');
  });

  it('a key function that throws or returns a non-string rejects the call with E_CONFIG, and runs nothing', async () => {
    let ran = 0;
    const boom = tokenBucket({
      limit: 5,
      key: () => {
        throw new Error('lookup failed');
      },
      policies: false,
    });
    await expect(boom.execute(async () => ran++, { key: 'a' })).rejects.toThrow('lookup failed');
    const bad = tokenBucket({ limit: 5, key: () => ({ token: 's3cret' }) as never, policies: false });
    const error = await bad.execute(async () => ran++, { key: 'a' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HoldfastConfigError);
    expect(String((error as Error).message)).not.toContain('s3cret');
    expect(ran).toBe(0);
  });

  it('key must be a function: anything else is refused when the limiter is made', () => {
    expect(() => tokenBucket({ limit: 5, key: 'all' as never })).toThrow(/key/);
  });
});

describe("pipeline().execute is typed for a limiter's key and cost", () => {
  it('takes { key, cost } when a rate limiter is in it, and not when none is', async () => {
    const perUser = tokenBucket({ limit: 100, policies: false });
    const api = pipeline(timeout(1_000), bulkhead({ maxConcurrent: 2, policies: false }), perUser);
    expectTypeOf<RateLimitExecuteOptions>().toExtend<Parameters<typeof api.execute>[1]>();
    expectTypeOf<NonNullable<Parameters<typeof api.execute>[1]>>().toExtend<RateLimitExecuteOptions>();
    expect(await api.execute(async () => 1, { key: 'alice', cost: 2, signal: AbortSignal.timeout(5_000) })).toBe(1);
    // Nested: the outer pipeline takes what the inner one does.
    const outer = pipeline(timeout(5_000), api);
    expect(await outer.execute(async () => 2, { key: 'bob' })).toBe(2);
    const plain = pipeline(timeout(1_000), timeout(2_000));
    expectTypeOf(plain.execute<number>)
      .parameter(1)
      .toEqualTypeOf<ExecuteOptions | undefined>();
    expectTypeOf(pipeline().execute<number>)
      .parameter(1)
      .toEqualTypeOf<ExecuteOptions | undefined>();
    // Checked by tsc, never run.
    const typeErrors = () => {
      // @ts-expect-error no limiter in it: a key would be read by nothing
      void plain.execute(async () => 3, { key: 'alice' });
      // @ts-expect-error a cost is a number
      void api.execute(async () => 4, { cost: '2' });
    };
    expect(typeof typeErrors).toBe('function');
  });
});
