import type { ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import type { ResilientFetchOptions } from '../src/index.js';
import { perTest, reply } from './upstream.js';

const t = perTest();

/** What the caller got: the error's code, or the body it read (`cut <code>` if the read failed). */
function outcome(call: Promise<Response>, before: () => void = () => {}): Promise<string> {
  return call.then(
    (res) => {
      before();
      return res.text().then(
        (text) => `body ${text}`,
        (error: { code?: string; name?: string }) => `cut ${error.code ?? error.name}`,
      );
    },
    (error: { code?: unknown; name?: string }) => `error ${typeof error.code === 'string' ? error.code : error.name}`,
  );
}

describe('dispose() in the microtasks between the response and its return to the caller', { timeout: 60_000 }, () => {
  it.each([
    ['the defaults', {}],
    ['no breakers, no retries', { breaker: false, retry: false }],
    ['a hedge', { hedge: { delay: 60_000 } }],
    ['base URLs', 'baseUrls'],
  ] as const)(
    'the call rejects with E_DISPOSED or its body reads to the end, never a response cut (%s)',
    async (_, extra) => {
      // dispose() from another promise chain (a shutdown path's continuation) lands k microtasks
      // after fetch's response came: at every k, the call is unanswered (E_DISPOSED) or answered.
      const got = new Map<string, number[]>();
      for (let k = 0; k < 40; k++) {
        const held: ServerResponse[] = [];
        const s = await t.server((_, res) => {
          res.writeHead(200);
          res.write('first ');
          held.push(res);
        });
        const options: ResilientFetchOptions = extra === 'baseUrls' ? { baseUrls: [s.url] } : extra;
        let disposeLater = () => {};
        const http = t.client({
          ...options,
          fetch: async (input, init) => {
            const res = await fetch(input, init);
            disposeLater();
            return res;
          },
        });
        disposeLater = () => {
          let p = Promise.resolve();
          for (let i = 0; i < k; i++) p = p.then(() => {});
          void p.then(() => http.dispose());
        };
        const out = await outcome(http(extra === 'baseUrls' ? '/orders' : `${s.url}/orders`), () => {
          for (const res of held) res.end('and last');
        });
        got.set(out, [...(got.get(out) ?? []), k]);
        await s.close();
      }
      expect([...got.keys()].filter((out) => out !== 'error E_DISPOSED' && out !== 'body first and last')).toEqual([]);
      // Both ends of the window were reached: dispose() early (unanswered) and late (answered).
      expect(got.has('error E_DISPOSED') && got.has('body first and last')).toBe(true);
    },
  );
});

describe('dispose() then the caller aborts, in the same tick', { timeout: 30_000 }, () => {
  it('dispose() came first: the call rejects with E_DISPOSED, as a Request with a body does', async () => {
    const s = await t.server(reply(200));
    const http = t.client({ breaker: false, retry: false });
    const caller = new AbortController();
    const call = outcome(http(`${s.url}/orders`, { signal: caller.signal }));
    http.dispose();
    caller.abort();
    expect(await call).toBe('error E_DISPOSED');
    expect(s.seen).toHaveLength(0);
  });
});

describe('a signal that is no AbortSignal', { timeout: 30_000 }, () => {
  it.each([
    ['a string', 'stop'],
    ['a number', 42],
    ['an object without addEventListener', { aborted: false }],
  ])(
    'is refused with a TypeError that names the signal, as fetch refuses it, sending nothing (%s)',
    async (_, signal) => {
      const s = await t.server(reply(200));
      const http = t.client({});
      const refused = await http(`${s.url}/orders`, { signal } as unknown as RequestInit).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(TypeError);
      expect((refused as TypeError).message).toBe(
        "Failed to construct 'Request': member signal is not of type AbortSignal.",
      );
      expect(s.seen).toHaveLength(0);
    },
  );
});
