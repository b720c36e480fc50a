/**
 * Review of overlapping drills on one proxy. A toxic's handle removed it by name: a step taking
 * off its own `freeze()` (or any toxic of a name both drills use) took off the other drill's,
 * mid-outage; and its own, replaced meanwhile, came back on at the other's end.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { drill, type FaultProxy, faultProxy, type ToxicHandle } from '../src/index.js';

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

function deferred() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { open, opened };
}

describe('two drills freezing one proxy', () => {
  it("one's step unfreezing leaves the other's freeze on, and its own does not come back", async () => {
    const bFroze = deferred();
    let mine: ToxicHandle | undefined;
    const a = drillOf(
      () => {
        mine = proxy.freeze();
      },
      () => bFroze.opened,
      () => mine?.remove(),
    );
    const b = drillOf(() => {
      proxy.freeze();
      bFroze.open();
    });
    await b.ran;
    await a.ran;
    // Before the fix: [] (drill a's unfreeze took drill b's freeze off, mid-outage).
    expect(toxics()).toEqual(['freeze']);
    await b.end();
    // Before the fix: [ 'freeze' ] (drill a's freeze, taken off by its own step, back on).
    expect(toxics()).toEqual([]);
    await a.end();
    expect(toxics()).toEqual([]);
  });

  it("a step taking its toxic off puts back the user's of its name it replaced", async () => {
    proxy.add({ type: 'latency', name: 'slow', latency: 10 });
    const a = drillOf(() => proxy.add({ type: 'latency', name: 'slow', latency: 500 }).remove());
    await a.ran;
    // Before the fix: [] (the user's setup lost for good: the drill's end found its own toxic off).
    expect(proxy.snapshot().toxics).toEqual([{ name: 'slow', type: 'latency', direction: 'downstream' }]);
    await a.end();
    expect(toxics()).toEqual(['slow']);
  });

  it("a step still running after its drill ended (aborted mid-step) undoes none of the user's faults put on since", async () => {
    const release = deferred();
    const a = drillOf(
      () => proxy.kill(),
      () => release.opened,
      () => proxy.restore(),
    );
    await waitFor(() => !proxy.snapshot().listening);
    await a.end();
    expect(proxy.snapshot().listening).toBe(true);
    // The user's own faults, after the drill.
    await proxy.refuse();
    proxy.add({ type: 'latency', name: 'mine', latency: 10 });
    release.open();
    await a.ran;
    // Before the fix: true and [] (the ended drill's late restore() listened again and cleared).
    expect(proxy.snapshot().listening).toBe(false);
    expect(toxics()).toEqual(['mine']);
  });
});

async function waitFor(ok: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !ok(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(ok()).toBe(true);
}
