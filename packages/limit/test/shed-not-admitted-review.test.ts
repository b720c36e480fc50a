import { fallback, pipeline } from '@holdfast/core';
import { afterEach, describe, expect, it } from 'vitest';
import { tokenBucket } from '../src/index.js';
import { closeServers, serve } from './serve.js';

/**
 * A policy that settles a request without admitting it: a `fallback()` (or a breaker's `fallback`
 * option) in the middleware's pipeline serves a value in place of the refusal, so the function
 * that admits the request never runs. Before, nothing answered: the request hung until its client
 * gave up (Express and Fastify alike), every one the limit refused.
 */

afterEach(closeServers);

/** GET /x; a request with no answer within 5 s is reported as hung (not a timing assertion: a hang). */
async function get(url: string, headers: Record<string, string> = {}) {
  try {
    const res = await fetch(`${url}/x`, { headers, signal: AbortSignal.timeout(5_000) });
    const body = await res.text();
    return { status: res.status, headers: Object.fromEntries(res.headers), body };
  } catch (error) {
    return { status: `no answer (${(error as Error).name})`, headers: {} as Record<string, string>, body: '' };
  }
}

describe.each(['express', 'fastify'] as const)('%s: a policy that answers without admitting', (kind) => {
  it('a fallback over a rate limit: the refused request gets 503 problem+json with Retry-After, never a hang', async () => {
    const policy = pipeline(
      fallback({ value: 'served instead' }),
      tokenBucket({ limit: 1, interval: 60_000, policies: false }),
    );
    const url = await serve(kind, { policy, retryAfter: 7_000 });
    const first = await get(url);
    const second = await get(url);
    expect(first.status).toBe(200);
    expect(second.status).toBe(503);
    expect(second.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(second.headers['retry-after']).toBe('7');
    expect(JSON.parse(second.body)).toMatchObject({ status: 503, code: 'E_NOT_ADMITTED' });
  });

  it('what a limit took is given back when a fallback serves the refusal of a later one', async () => {
    const perUser = tokenBucket({ limit: 2, interval: 60_000, policies: false });
    const total = tokenBucket({ limit: 1, interval: 60_000, key: () => 'all', policies: false });
    const url = await serve(kind, {
      policy: pipeline(fallback({ value: null }), perUser, total),
      key: (req) => req.headers['x-user'] as string,
    });
    expect((await get(url, { 'x-user': 'a' })).status).toBe(200);
    expect((await get(url, { 'x-user': 'b' })).status).toBe(503);
    // b never ran: its unit is back (2 - this take), as for any request a later limit refused.
    expect(perUser.take('b').remaining).toBe(1);
  });
});
