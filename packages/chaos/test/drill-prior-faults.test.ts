/**
 * A drill takes off the faults its steps put on, and only those: a fault the user put on before the
 * drill (a dependency kept down, a frozen replica) is part of the setup and stays on after it,
 * even when a step put the same fault on again.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { drill, type FaultProxy, faultProxy } from '../src/index.js';

let server: Server;
let proxy: FaultProxy;
/** A drill of a short load that needs no network, playing `run` at its start. */
const drillWith = (run: () => unknown) =>
  drill({
    print: false,
    load: { request: () => true, rate: 20, duration: 100 },
    steps: [{ at: 0, name: 'step', run }],
  });

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

describe('drill leaves the faults put on before it', () => {
  it('a proxy refused before the drill, killed again by a step, still refuses after it', async () => {
    await proxy.refuse();
    await drillWith(() => proxy.kill());
    expect(proxy.snapshot().listening).toBe(false);
  });

  it('a proxy frozen before the drill, frozen again by a step, is still frozen after it', async () => {
    proxy.freeze();
    await drillWith(() => proxy.freeze());
    expect(proxy.snapshot().toxics.map((t) => t.name)).toEqual(['freeze']);
  });

  it('a toxic of the user replaced by a step of the same name is the user’s again after it', async () => {
    proxy.add({ type: 'latency', name: 'slow', latency: 100 });
    await drillWith(() => proxy.add({ type: 'latency', name: 'slow', latency: 5_000 }));
    expect(proxy.snapshot().toxics).toEqual([{ name: 'slow', type: 'latency', direction: 'downstream' }]);
  });

  it('what the steps put on still goes: a refusal and a toxic of their own', async () => {
    await drillWith(async () => {
      await proxy.kill();
      proxy.add({ type: 'latency', name: 'slow', latency: 100 });
    });
    expect(proxy.snapshot()).toMatchObject({ listening: true, toxics: [] });
  });
});
