import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { drill, type FaultProxy, faultProxy } from '../../src/index.js';

/**
 * The rig of the overlapping-drill tests: an upstream answering 'ok', a fault proxy in front of
 * it (restored after each test, closed after the file), and drills that play their steps at
 * once and run until the test ends them.
 */
export function overlapRig() {
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
   * A drill of a load that needs no network, playing `runs` at its start, until the test ends it
   * (an abort, after which the drill takes its steps' faults off as at any end). `ran` resolves
   * once every step ran.
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

  return {
    /** The fault proxy (set once the file's tests start). */
    get proxy(): FaultProxy {
      return proxy;
    },
    drillOf,
    /** The names of the toxics on now. */
    toxics: () => proxy.snapshot().toxics.map((t) => t.name),
  };
}
