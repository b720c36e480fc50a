import type { Policy } from '@holdfast/core';
import { afterEach, describe, expect, it } from 'vitest';
import { adaptiveConcurrency, bulkhead, tokenBucket } from '../src/index.js';
import { closeServers, serve } from './serve.js';

// README: a cost that is not a whole number from 1 to what the limiter holds gets a 500
// problem+json (bad-cost) and takes nothing, never a silent allow. Only a rate limiter looked at a
// cost of 1.5: a bulkhead or an adaptive limiter alone let the request through (200).
describe.each(['express', 'fastify'] as const)(
  '%s: a bad cost is answered the same whatever the policy holds',
  (kind) => {
    afterEach(closeServers);
    const policies: [string, () => Policy][] = [
      ['a token bucket', () => tokenBucket({ limit: 5, interval: 60_000, policies: false })],
      ['a bulkhead alone', () => bulkhead({ maxConcurrent: 5, policies: false })],
      ['an adaptive limiter alone', () => adaptiveConcurrency({ algorithm: 'aimd', policies: false })],
    ];
    const costs: [string, () => unknown][] = [
      ['1.5', () => 1.5],
      ['0', () => 0],
      ['-1', () => -1],
      ['NaN', () => Number.NaN],
      ['1e9 + 1 (more than any limit holds)', () => 1e9 + 1],
      ['Infinity', () => Number.POSITIVE_INFINITY],
      ["a string '2'", () => '2'],
      ['a promise of 2.5', async () => 2.5],
    ];
    it.each(policies)('%s: 500 problem+json (bad-cost), never an allow', async (_name, policy) => {
      for (const [what, cost] of costs) {
        const url = await serve(kind, { policy: policy(), key: () => 'k', cost: cost as () => number });
        const res = await fetch(`${url}/x`);
        const body = await res.text();
        expect([what, res.status, res.headers.get('content-type')]).toEqual([
          what,
          500,
          expect.stringMatching(/^application\/problem\+json/),
        ]);
        expect(JSON.parse(body)).toMatchObject({ type: 'urn:holdfast:problem:bad-cost', code: 'E_CONFIG' });
      }
    });

    it.each(policies)('%s: a cost that rejects fails the request (500), never an allow', async (_name, policy) => {
      const url = await serve(kind, {
        policy: policy(),
        key: () => 'k',
        cost: () => Promise.reject(new Error('plan lookup failed')),
      });
      const res = await fetch(`${url}/x`);
      await res.text();
      expect(res.status).toBe(500);
    });

    it('a whole cost up to 1e9 goes through a bulkhead alone (no limit to hold it against)', async () => {
      const url = await serve(kind, { policy: bulkhead({ maxConcurrent: 1, policies: false }), cost: () => 1e9 });
      expect((await fetch(`${url}/x`)).status).toBe(200);
    });
  },
);
