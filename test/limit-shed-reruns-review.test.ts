/**
 * Review of the load-shedding middleware with a policy that runs its function again: a `retry()`
 * before the limits (docs: "With a retry() before the limits, each try takes again") retries a
 * request whose handler answered 5xx, and a `hedge()` sends a slow one again. The function that
 * admits a request is that request: it cannot run twice. Before, each later run took a place that
 * nothing ever gave back (a bulkhead of 2 was full for good after two 500s, and every request was
 * then a 500: the retry's give-up on the full bulkhead, E_RETRY_EXHAUSTED, was no refusal).
 */
import { hedge, pipeline } from '@holdfast/core';
import { bulkhead, tokenBucket } from '@holdfast/limit';
import { retry } from '@holdfast/retry';
import { afterEach, describe, expect, it } from 'vitest';
import { closeServers, serve } from '../packages/limit/test/serve.js';

afterEach(closeServers);

async function get(url: string) {
  const res = await fetch(url);
  return { status: res.status, headers: Object.fromEntries(res.headers), body: await res.text() };
}

const quick = { maxAttempts: 3, backoff: { initialDelay: 1, maxDelay: 1 }, jitter: 'none' } as const;

describe.each(['express', 'fastify'] as const)('%s: a policy that runs the request again', (framework) => {
  it('retry() before a bulkhead: 500s from the handler leave no place taken; later requests get 200', async () => {
    const slots = bulkhead({ maxConcurrent: 2, policies: false });
    const url = await serve(framework, { policy: pipeline(retry({ ...quick, budget: false }), slots) });
    const boom = [];
    for (let i = 0; i < 4; i++) boom.push((await get(`${url}/boom`)).status);
    expect(boom).toEqual([500, 500, 500, 500]);
    await expect.poll(() => slots.running).toBe(0);
    const ok = [];
    for (let i = 0; i < 3; i++) ok.push((await get(`${url}/x`)).status);
    // Before: [500, 500, 500], the bulkhead's 2 slots held for good by the retries of the first 500s.
    expect(ok).toEqual([200, 200, 200]);
  });

  it("retry() that gives up on a full bulkhead: 503 problem+json with Retry-After, the bulkhead's code, never a 500", async () => {
    const slots = bulkhead({ maxConcurrent: 1, policies: false });
    const url = await serve(framework, { policy: pipeline(retry({ ...quick, budget: false }), slots) });
    const answers = await Promise.all(Array.from({ length: 6 }, () => get(`${url}/slow`)));
    const shed = answers.filter((a) => a.status !== 200);
    expect(shed.length).toBeGreaterThan(0);
    for (const a of shed) {
      expect(a.status).toBe(503);
      expect(a.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(a.headers['retry-after']).toMatch(/^\d+$/);
      expect(JSON.parse(a.body)).toMatchObject({ status: 503, code: 'E_BULKHEAD_FULL' });
    }
    await expect.poll(() => slots.running).toBe(0);
  });

  it('retry() that gives up on a rate limit: 429 with its Retry-After', async () => {
    const limit = tokenBucket({ limit: 1, interval: 60_000, policies: false });
    const url = await serve(framework, { policy: pipeline(retry({ ...quick, budget: false }), limit) });
    expect((await get(`${url}/x`)).status).toBe(200);
    const refused = await get(`${url}/x`);
    expect(refused.status).toBe(429);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(59);
    expect(JSON.parse(refused.body)).toMatchObject({ status: 429, code: 'E_RATE_LIMITED' });
  });

  it('hedge() before a bulkhead: a slow request hedged keeps no place once its response ended', async () => {
    const slots = bulkhead({ maxConcurrent: 4, policies: false });
    const url = await serve(framework, { policy: pipeline(hedge({ delay: 5, safe: true, budget: false }), slots) });
    const answers = await Promise.all(Array.from({ length: 2 }, () => get(`${url}/slow`)));
    expect(answers.map((a) => a.status)).toEqual([200, 200]);
    // Before: each hedge ran the admitting function a second time, and that run never settled: 2 slots kept for good.
    await expect.poll(() => slots.running).toBe(0);
  });
});
