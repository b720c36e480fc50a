import { type ExecuteOptions, hedge, type Operation, pipeline, timeout } from '@holdfast/core';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { bulkhead, slidingWindow, tokenBucket } from '../src/index.js';

/** A user's own policy with an option of its own. */
const tenantPolicy = {
  name: 'tenant',
  execute<T>(fn: Operation<T>, options?: ExecuteOptions & { tenant?: string }): Promise<T> {
    return Promise.resolve(fn(options as never));
  },
};

describe('pipeline() types: hostile review', () => {
  it('eight policies, a user-defined one among them: every option typed, none lost to never', async () => {
    const q = { policies: false as const };
    const p = pipeline(
      timeout(1000),
      bulkhead({ maxConcurrent: 2, ...q }),
      tokenBucket({ limit: 5, ...q }),
      slidingWindow({ limit: 5, interval: 1000, key: () => 'all', ...q }),
      hedge({ delay: 10_000 }),
      timeout(2000),
      tenantPolicy,
      pipeline(timeout(3000), tokenBucket({ limit: 9, ...q })),
    );
    type O = NonNullable<Parameters<typeof p.execute>[1]>;
    expectTypeOf<{ key: string; cost: number; safe: boolean; tenant: string }>().toExtend<O>();
    expectTypeOf<O>().not.toBeNever();
    // @ts-expect-error an option none of them takes
    const bad: O = { nope: 1 };
    expect(bad).toBeDefined();
    expect(await p.execute(() => 1, { key: 'u', cost: 1, safe: false, tenant: 't' })).toBe(1);
  });
});
