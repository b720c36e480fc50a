import { pipeline } from '@holdfast/core';
import { afterEach, describe, expect, it } from 'vitest';
import { slidingWindow, tokenBucket } from '../src/index.js';
import { closeServers, serve } from './serve.js';

const HOUR = 3_600_000;

/** The rate-limit headers of one GET, and its status. */
async function get(url: string) {
  const res = await fetch(`${url}/x`);
  await res.text();
  const headers = Object.fromEntries([...res.headers].filter(([n]) => /ratelimit|retry-after/.test(n)));
  return { status: res.status, headers };
}

// A limit that took units for a request a later limit of the pipeline then refused gives them back:
// the request never ran. Its headers were written as it took them: a limit of 1 an hour said
// remaining 0 and reset in an hour on a 429 that another limit (back in a second) gave, and a client
// that believed it waited an hour for a limit that was whole.
describe.each(['express', 'fastify'] as const)('%s: headers after a give-back', (kind) => {
  afterEach(closeServers);

  it.each([
    ['tokenBucket', () => tokenBucket({ limit: 1, interval: HOUR, policies: false })],
    ['slidingWindow', () => slidingWindow({ limit: 1, interval: HOUR, policies: false })],
  ])('%s given back: not shown as spent', async (_name, make) => {
    const hourly = make();
    // Spent: back whole in 10 s.
    const spent = () => {
      const l = tokenBucket({ limit: 2, interval: 10_000, policies: false });
      l.take('k', 2);
      return l;
    };
    const url = await serve(kind, [
      { policy: pipeline(hourly, spent()), key: () => 'k', standardHeaders: 'draft-7', legacyHeaders: true },
    ]);
    const before = Math.ceil(Date.now() / 1000);
    const { status, headers } = await get(url);
    expect(status).toBe(429);
    // The hourly limit is whole again (given back): the refusal is the other limit's.
    expect(hourly.take('probe-of-nothing').allowed).toBe(true);
    expect(headers.ratelimit).toBe('limit=2, remaining=0, reset=10');
    expect(headers['x-ratelimit-limit']).toBe('2');
    expect(Number(headers['x-ratelimit-reset'])).toBeLessThanOrEqual(before + 11);
    // And the hourly limit, listed in draft 8, is whole: r=1, t=0.
    const eight = await serve(kind, [{ policy: pipeline(make(), spent()), key: () => 'k' }]);
    const again = await get(eight);
    expect(again.status).toBe(429);
    expect(again.headers.ratelimit).toMatch(/r=1;t=0/);
  });
});
