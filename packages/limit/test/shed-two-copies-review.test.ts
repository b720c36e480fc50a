import express from 'express';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadShedding } from '../src/express.js';
import { bulkhead, tokenBucket } from '../src/index.js';
import { closeServers, listen } from './serve.js';

/**
 * Two copies of the middleware in one process: the ESM and the CommonJS build (an ESM app that
 * uses a CommonJS router, or the reverse), each mounted with the same policy. A request takes one
 * place in a policy however many times it meets it (README): before, each copy kept its own
 * record of the places a response holds, and a request took two: a bulkhead of 1 refused every
 * request with 503, and a token bucket counted each request twice.
 */

afterEach(closeServers);

/** The middleware of a second, fresh copy of the module (as the other build is). */
async function otherCopy(): Promise<typeof loadShedding> {
  vi.resetModules();
  return (await import('../src/express.js')).loadShedding;
}

async function app(policy: Parameters<typeof loadShedding>[0]['policy']): Promise<string> {
  const other = await otherCopy();
  const a = express();
  a.use(loadShedding({ policy, key: () => 'k' }));
  a.use(other({ policy, key: () => 'k' }));
  a.get('/x', (_req, res) => void res.send('ok'));
  return `${await listen(a)}/x`;
}

describe('the middleware loaded twice (ESM and CommonJS builds) with one policy', () => {
  it('a bulkhead of 1 admits one request at a time, and frees its place at the end', async () => {
    const slots = bulkhead({ maxConcurrent: 1, policies: false });
    const url = await app(slots);
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await fetch(url)).status);
    // Before: [503, 503, 503]: the second copy found the only slot taken by the same request.
    expect(statuses).toEqual([200, 200, 200]);
    await expect.poll(() => slots.running).toBe(0);
  });

  it('a token bucket counts a request once', async () => {
    const url = await app(tokenBucket({ limit: 3, interval: 60_000, policies: false }));
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await fetch(url)).status);
    // Before: [200, 429, 429, 429]: each request took 2 of the 3.
    expect(statuses).toEqual([200, 200, 200, 429]);
  });
});
