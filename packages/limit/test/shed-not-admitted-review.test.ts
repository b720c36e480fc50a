import { fallback, HoldfastConfigError, pipeline } from '@holdfast/core';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { loadShedding as expressShedding } from '../src/express.js';
import { tokenBucket } from '../src/index.js';
import { closeServers, listen, serve } from './serve.js';

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

describe('a policy function that returns something not a Policy', () => {
  const bucket = tokenBucket({ limit: 5, interval: 60_000, policies: false });
  const picks = [
    ['a promise (an async function)', async () => bucket],
    ['null', () => null],
    ['an object without execute', () => ({})],
  ] as const;

  it.each(picks)('Express: %s fails the request with an error naming the policy option', async (_, pick) => {
    const errors: unknown[] = [];
    const app = express();
    app.use(expressShedding({ policy: pick as never }));
    app.get('/x', (_req, res) => void res.send('ok'));
    app.use((error: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      errors.push(error);
      res.status(500).send('error');
    });
    const res = await fetch(`${await listen(app)}/x`);
    expect(res.status).toBe(500);
    // Before: TypeError: policy.execute is not a function (or: Cannot read properties of null).
    expect(errors[0]).toBeInstanceOf(HoldfastConfigError);
    expect((errors[0] as HoldfastConfigError).issues[0]?.path).toBe('policy');
    expect((errors[0] as Error).message).toMatch(/^limit\/express: policy must return a Policy or undefined/);
  });

  it.each(picks)('Fastify: %s fails the request with an error naming the policy option', async (_, pick) => {
    const url = await serve('fastify', { policy: pick as never });
    const res = await fetch(`${url}/x`);
    expect(res.status).toBe(500);
    expect(((await res.json()) as { message: string }).message).toMatch(
      /^limit\/fastify: policy must return a Policy or undefined/,
    );
  });
});
