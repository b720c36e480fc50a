/**
 * Two drills at once on one fault proxy: each owns exactly the faults its steps put on. The one
 * that ends first takes off its own and leaves the other's on; the other, ending later, puts back
 * none of the first's.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { drill, type FaultProxy, faultProxy } from '../src/index.js';

let server: Server;
let proxy: FaultProxy;

beforeAll(async () => {
  server = createServer((_req, res) => res.end('ok'));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  proxy = await faultProxy({ target: { port: (server.address() as AddressInfo).port } });
});
afterEach(() => proxy.restore());
afterAll(async () => {
  await proxy.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

/**
 * A drill of a load that needs no network, playing `steps` at its start, until the test ends it
 * (an abort, after which the drill takes its steps' faults off as at any end). `ran` resolves once
 * every step ran.
 */
function drillOf(...runs: (() => unknown)[]) {
  const stop = new AbortController();
  let ran!: () => void;
  const all = new Promise<void>((resolve) => {
    ran = resolve;
  });
  const done = drill({
    print: false,
    signal: stop.signal,
    load: { request: () => true, rate: 20, duration: 60_000 },
    steps: [
      {
        at: 0,
        name: 'faults',
        run: async () => {
          for (const run of runs) await run();
          ran();
        },
      },
    ],
  }).catch((error: unknown) => (stop.signal.aborted ? 'ended' : Promise.reject(error)));
  return {
    ran: all,
    end: async () => {
      stop.abort(new Error('ended by the test'));
      expect(await done).toBe('ended');
    },
  };
}

const toxics = () => proxy.snapshot().toxics.map((t) => t.name);

describe('two drills at once on one proxy', () => {
  it('both kill it: the first to end leaves it refusing for the other; it listens once both ended', async () => {
    const a = drillOf(() => proxy.kill());
    await a.ran;
    const b = drillOf(() => proxy.kill());
    await b.ran;
    await a.end();
    // Before the fix: true (drill a's end listened again, in the middle of drill b's outage).
    expect(proxy.snapshot().listening).toBe(false);
    await b.end();
    expect(proxy.snapshot().listening).toBe(true);
  });

  it('both kill it, the second ends first: still refusing for the first until it ends', async () => {
    const a = drillOf(() => proxy.kill());
    await a.ran;
    const b = drillOf(() => proxy.kill());
    await b.ran;
    await b.end();
    expect(proxy.snapshot().listening).toBe(false);
    await a.end();
    expect(proxy.snapshot().listening).toBe(true);
  });

  it('both freeze it: the second to end puts back no freeze of the first, already ended', async () => {
    const a = drillOf(() => proxy.freeze());
    await a.ran;
    const b = drillOf(() => proxy.freeze());
    await b.ran;
    await a.end();
    expect(toxics()).toEqual(['freeze']);
    await b.end();
    // Before the fix: ['freeze'] (drill b's end put drill a's freeze back, for good).
    expect(toxics()).toEqual([]);
  });

  it('both freeze it, the second ends first: the first is still frozen until it ends', async () => {
    const a = drillOf(() => proxy.freeze());
    await a.ran;
    const b = drillOf(() => proxy.freeze());
    await b.ran;
    await b.end();
    expect(toxics()).toEqual(['freeze']);
    await a.end();
    expect(toxics()).toEqual([]);
  });

  it("a restore step of one drill takes off its own faults, not the other drill's", async () => {
    const b = drillOf(
      () => proxy.add({ type: 'latency', name: 'b-slow', latency: 100 }),
      () => proxy.kill(),
    );
    await b.ran;
    const a = drillOf(
      () => proxy.add({ type: 'latency', name: 'a-slow', latency: 100 }),
      () => proxy.kill(),
      () => proxy.restore(),
    );
    await a.ran;
    // Before the fix: [] and listening (drill a's restore step took drill b's faults off too).
    expect({ toxics: toxics(), listening: proxy.snapshot().listening }).toEqual({
      toxics: ['b-slow'],
      listening: false,
    });
    await a.end();
    await b.end();
    expect({ toxics: toxics(), listening: proxy.snapshot().listening }).toEqual({ toxics: [], listening: true });
  });

  it('a toxic of the same name in the user’s setup and both drills: after both, the user’s is back', async () => {
    proxy.add({ type: 'latency', name: 'slow', latency: 1 });
    const a = drillOf(() => proxy.add({ type: 'latency', name: 'slow', latency: 2 }));
    await a.ran;
    const b = drillOf(() => proxy.add({ type: 'latency', name: 'slow', latency: 3 }));
    await b.ran;
    await a.end();
    expect(toxics()).toEqual(['slow']);
    await b.end();
    // The user's own, put on before either drill.
    expect(proxy.snapshot().toxics).toEqual([{ name: 'slow', type: 'latency', direction: 'downstream' }]);
  });

  it('a refusal of the user before both drills stays after them', async () => {
    await proxy.refuse();
    const a = drillOf(() => proxy.kill());
    await a.ran;
    const b = drillOf(() => proxy.kill());
    await b.ran;
    await a.end();
    await b.end();
    expect(proxy.snapshot().listening).toBe(false);
  });
});
