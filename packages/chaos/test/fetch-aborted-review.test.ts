import { describe, expect, it } from 'vitest';
import { type FetchFault, faultyFetch } from '../src/index.js';

/**
 * A request whose signal has already aborted never goes out: fetch rejects with the signal's
 * reason. A fault that answers it instead (a 503, a refused connection) tells the caller's retry
 * or breaker a story the network could not have told, and counts a request nobody wanted.
 */
const url = 'http://127.0.0.1:9/pay';
const faults: FetchFault[] = [
  { type: 'status', status: 503 },
  { type: 'refuse' },
  { type: 'reset' },
  { type: 'delay', delay: 10 },
  { type: 'hang' },
];

describe('faultyFetch: a request already aborted', () => {
  for (const fault of faults) {
    for (const [how, call] of [
      ['signal in init', (f: typeof fetch, s: AbortSignal) => f(url, { method: 'POST', body: 'x', signal: s })],
      ["the Request's signal", (f: typeof fetch, s: AbortSignal) => f(new Request(url, { signal: s }))],
    ] as const) {
      it(`${fault.type}, ${how}: rejects with the signal's reason, touches nothing`, async () => {
        let sent = 0;
        const f = faultyFetch({
          enabled: true,
          faults: [fault],
          fetch: async () => {
            sent++;
            return new Response('ok');
          },
        });
        const reason = new Error('caller gave up');
        await expect(call(f, AbortSignal.abort(reason))).rejects.toBe(reason);
        expect({ sent, injected: f.injected }).toEqual({ sent: 0, injected: 0 });
      });
    }
  }
});
