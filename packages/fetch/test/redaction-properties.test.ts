/**
 * Property: whatever URL a call is made to, with secrets in its query (the default names in any
 * case, the user's own `secretParams`), and whatever happens (statuses that are retried or thrown,
 * fetch failing with a message that quotes the URL), no secret value reaches the error's message,
 * an event, or the client's snapshot.
 */
import { createBus, type HoldfastEvent } from '@holdfast/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { resilientFetch } from '../src/index.js';

const secret = fc.stringMatching(/^[A-Za-z0-9]{6,10}$/).map((s) => `S3CR${s}`);
const param = fc.constantFrom('token', 'TOKEN', 'Api_Key', 'sig', 'signature', 'password', 'x-session', 'X-Session');
const outcome = fc.oneof(
  fc.constantFrom(200, 404, 429, 500, 503).map((status) => ({ status })),
  fc.constantFrom('refused', 'quoted').map((fail) => ({ fail })),
);

function stringify(value: unknown): string {
  try {
    return JSON.stringify(value, (_k, v) => (v instanceof Error ? `${v.name}: ${v.message}` : v)) ?? '';
  } catch {
    return String(value);
  }
}

describe('resilientFetch redaction properties', () => {
  it('any secret query, any outcome sequence: the error message, events and snapshot show no secret value', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(param, secret), { minLength: 1, maxLength: 3 }),
        fc.constantFrom('https://api.example.com', 'http://127.0.0.1:9', 'HTTPS://API.example.com:8443'),
        fc.array(outcome, { minLength: 1, maxLength: 4 }),
        fc.boolean(),
        async (params, origin, outcomes, throwOnHttpError) => {
          const query = params.map(([p, v]) => `${p}=${v}`).join('&');
          const url = `${origin}/v1/items?page=2&${query}`;
          const secrets = params.map(([, v]) => v);
          let i = 0;
          const fake = async (input: string | URL | Request) => {
            const o = outcomes[Math.min(i++, outcomes.length - 1)] as { status?: number; fail?: string };
            const href = String(input instanceof Request ? input.url : input);
            if (o.fail === 'refused') {
              const cause = Object.assign(new Error(`connect ECONNREFUSED ${new URL(href).host}`), {
                code: 'ECONNREFUSED',
              });
              throw new TypeError('fetch failed', { cause });
            }
            if (o.fail === 'quoted') throw new TypeError(`Failed to parse URL from ${href}`);
            return new Response(`status ${o.status}`, { status: o.status ?? 200 });
          };
          const bus = createBus();
          const events: HoldfastEvent[] = [];
          bus.on('*', (e) => events.push(e));
          const client = resilientFetch({
            fetch: fake as typeof fetch,
            bus,
            retry: { maxAttempts: 3, backoff: { initialDelay: 0, maxDelay: 1 } },
            budget: false,
            secretParams: ['x-session'],
            throwOnHttpError,
          });
          try {
            const shown: string[] = [];
            try {
              const res = await client(url);
              await res.text();
            } catch (error) {
              shown.push(String(error), (error as Error).message ?? '', stringify(error));
            }
            shown.push(stringify(events), stringify(client.snapshot()));
            for (const text of shown) for (const s of secrets) expect(text, `${s} shown`).not.toContain(s);
          } finally {
            client.dispose();
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});
