import { hedge, pipeline, timeout } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { bulkhead, type RateLimitExecuteOptions, tokenBucket } from '../src/index.js';

/** A pipeline's execute() is typed for ExecuteOptions; a key and cost ride along. */
const keyed = (o: RateLimitExecuteOptions): RateLimitExecuteOptions => o;
const settled = async (calls: Promise<unknown>[]) => (await Promise.allSettled(calls)).map((r) => r.status);

describe('the call key reaches the limiters of its pipeline, and no others', () => {
  it("a ctx passed on to another limiter (a shared downstream limit) counts under that limiter's defaultKey", async () => {
    const perUser = tokenBucket({ limit: 100, policies: false });
    const downstream = tokenBucket({ limit: 2, policies: false });
    const run = (key: string) => perUser.execute((ctx) => downstream.execute(async () => 'ok', ctx), { key });
    // Before: downstream counted each user apart, so its limit of 2 was 2 per user.
    expect(await settled([run('a'), run('b'), run('c')])).toEqual(['fulfilled', 'fulfilled', 'rejected']);
    expect(downstream.take('a').remaining).toBe(1);
  });

  it("the ctx a pipeline's function gets carries no key or cost for a limiter it is passed to", async () => {
    const perUser = tokenBucket({ limit: 100, policies: false });
    const downstream = tokenBucket({ limit: 5, policies: false });
    const p = pipeline(timeout(5_000), bulkhead({ maxConcurrent: 4, policies: false }), perUser);
    // A cost of 50 is fine for perUser; for downstream (burst 5) it was an E_CONFIG error.
    const call = (key: string) =>
      p.execute((ctx) => downstream.execute(async () => key, ctx), keyed({ key, cost: 50 }));
    expect(await call('a')).toBe('a');
    expect(await settled([call('b'), call('c'), call('d'), call('e'), call('f')])).toEqual([
      'fulfilled',
      'fulfilled',
      'fulfilled',
      'fulfilled',
      'rejected', // perUser: f is fine (50 of 100); downstream: the sixth call of its limit of 5
    ]);
  });

  it('nor does the ctx of a last policy that hands on the scope it was given (a breaker, a bulkhead inside a timeout)', async () => {
    const downstream = tokenBucket({ limit: 5, policies: false });
    const p = pipeline(timeout(5_000), bulkhead({ maxConcurrent: 2, policies: false }));
    await p.execute((ctx) => downstream.execute(async () => 1, ctx), keyed({ key: 'alice', cost: 3 }));
    // Before: alice was charged 3 on downstream; now its defaultKey is charged 1.
    expect(downstream.take('alice').remaining).toBe(4);
    expect(downstream.take('').remaining).toBe(3);
  });

  it('nested pipelines, a queueing bulkhead and hedge attempts: each call counts under its own key', async () => {
    const perUser = tokenBucket({ limit: 2, interval: 60_000, policies: false });
    const b = bulkhead({ maxConcurrent: 1, maxQueue: 10, policies: false });
    const p = pipeline(timeout(5_000), pipeline(b, pipeline(perUser)));
    const calls = ['a', 'b', 'a', 'b', 'a', 'c'].map((key) => p.execute(async () => key, keyed({ key })));
    expect(await settled(calls)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    // Two attempts of one hedged call each take from the call's key (as each try of a retry does).
    const hedged = tokenBucket({ limit: 10, interval: 60_000, policies: false });
    const h = pipeline(hedge({ delay: 1, safe: true, budget: false, policies: false }), hedged);
    let attempts = 0;
    let release = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const out = h.execute(
      async () => {
        if (++attempts === 2) release();
        await gate;
        return 'ok';
      },
      keyed({ key: 'z' }),
    );
    expect(await out).toBe('ok');
    expect(hedged.take('z').remaining).toBe(10 - attempts - 1);
    expect(hedged.take('').remaining).toBe(9);
  });
});
