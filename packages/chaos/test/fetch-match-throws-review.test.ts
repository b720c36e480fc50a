import { describe, expect, it } from 'vitest';
import { recordWarnings, tick } from '../../../test/support/warnings.js';
import { faultyFetch } from '../src/index.js';

/** The fetch underneath: it counts what reaches it and answers 200. */
function backend() {
  const urls: string[] = [];
  const fetch = async (input: string | URL | Request) => {
    urls.push(input instanceof Request ? input.url : String(input));
    return new Response('ok', { status: 200 });
  };
  return { urls, fetch: fetch as typeof globalThis.fetch };
}

const warnings = recordWarnings();

describe("faultyFetch: a fault's match that throws (review)", () => {
  it('reads as no match: the request goes on, to the next fault or the server, told once', async () => {
    const real = backend();
    // Written for JSON bodies, met by a GET without one: reads a header that is not there.
    const match = (r: Request) => (r.headers.get('content-type') as string).startsWith('application/json');
    const f = faultyFetch({
      enabled: true,
      fetch: real.fetch,
      name: 'payments-chaos',
      faults: [
        { type: 'status', status: 500, match },
        { type: 'status', status: 503, match: (r) => r.url.endsWith('/b') },
      ],
    });
    const a = await f('http://api.test/a');
    const b = await f('http://api.test/b');
    const c = await f('http://api.test/c', {
      method: 'POST',
      body: '{}',
      headers: { 'content-type': 'application/json' },
    });
    expect([a.status, b.status, c.status]).toEqual([200, 503, 500]);
    expect(real.urls).toEqual(['http://api.test/a']);
    expect(f.injected).toBe(2);
    await tick();
    const told = warnings.filter((w) => w.code === 'HOLDFAST_PREDICATE_ERROR');
    expect(told).toHaveLength(1);
    expect(told[0]?.message).toMatch(/^payments-chaos: a fault's match threw .*startsWith/);
  });

  it('an error no message can be read from is told as such, and breaks nothing', async () => {
    const real = backend();
    const trap = () => {
      throw new Error('no reading me');
    };
    const unreadable = new Proxy(new Error('x'), { get: trap, getPrototypeOf: trap });
    const f = faultyFetch({
      enabled: true,
      fetch: real.fetch,
      faults: [
        {
          type: 'refuse',
          match: () => {
            throw unreadable;
          },
        },
      ],
    });
    expect((await f('http://api.test/a')).status).toBe(200);
    expect((await f('http://api.test/a')).status).toBe(200);
    expect(f.injected).toBe(0);
    await tick();
    expect(warnings.filter((w) => w.code === 'HOLDFAST_PREDICATE_ERROR').map((w) => w.message)).toEqual([
      "faultyFetch: a fault's match threw (reported once per function); the fault was not applied: an error that cannot be read",
    ]);
  });

  it('an async match (a promise is no boolean) reads as no match, told once; its rejection is no unhandled rejection', async () => {
    const real = backend();
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      // Meant for POST /pay alone: a body read is async, and a GET's body is no JSON.
      const match = async (r: Request) => ((await r.clone().json()) as { op?: string }).op === 'pay';
      const f = faultyFetch({
        enabled: true,
        fetch: real.fetch,
        faults: [{ type: 'status', status: 500, match: match as unknown as (r: Request) => boolean }],
      });
      const get = await f('http://api.test/orders');
      const list = await f('http://api.test/orders', { method: 'POST', body: '{"op":"list"}' });
      await tick();
      expect([get.status, list.status, f.injected, unhandled]).toEqual([200, 200, 0, []]);
      const told = warnings.filter((w) => w.code === 'HOLDFAST_PREDICATE_ERROR').map((w) => w.message);
      expect(told).toEqual([
        "faultyFetch: a fault's match threw (reported once per function); the fault was not applied: it returned a promise, not true or false",
      ]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
