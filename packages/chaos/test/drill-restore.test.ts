/**
 * A drill interrupted (the caller aborts, the driver throws, a step throws or hangs) must leave no
 * fault it put on a fault proxy behind: a real HTTP server, a real fault proxy, a real client.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { drill, type FaultProxy, faultProxy } from '../src/index.js';

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

let server: Server;
let proxy: FaultProxy;
/** One GET through the proxy, on a connection of its own: true for a 200, else false. */
const reachable = () =>
  fetch(proxy.url, { signal: AbortSignal.timeout(1_000), headers: { connection: 'close' } }).then(
    (r) => r.text().then(() => r.ok),
    () => false,
  );

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

describe('drill, interrupted, restores what it put on', () => {
  it('the caller aborts mid-drill: it rejects with the reason, the killed proxy listens again', async () => {
    const stop = new AbortController();
    const outcome = drill({
      print: false,
      signal: stop.signal,
      load: { request: () => reachable(), rate: 20, duration: 5_000 },
      steps: [
        { at: 50, name: 'kill', run: () => proxy.kill() },
        { at: 4_000, name: 'restore', run: () => proxy.restore() },
      ],
    }).then(
      () => 'resolved',
      (e: unknown) => e,
    );
    for (let i = 0; i < 200 && proxy.snapshot().listening; i++) await tick(10);
    expect(await reachable()).toBe(false); // killed, as the step said
    const reason = new Error('deploy cancelled');
    stop.abort(reason);
    expect(await outcome).toBe(reason);
    expect(proxy.snapshot()).toMatchObject({ listening: true, toxics: [] });
    expect(await reachable()).toBe(true);
  });

  it('a signal aborted before the start: nothing runs', async () => {
    let ran = 0;
    const outcome = await drill({
      print: false,
      signal: AbortSignal.abort(),
      load: { request: () => ran++, rate: 20, duration: 200 },
      steps: [{ at: 0, name: 'freeze', run: () => proxy.freeze() }],
    }).then(
      () => 'resolved',
      (e: Error) => e.name,
    );
    expect(outcome).toBe('AbortError');
    expect(ran).toBe(0);
    expect(proxy.snapshot().toxics).toEqual([]);
  });

  it('a restore step that throws: the freeze is taken off once the drill ends', async () => {
    const result = await drill({
      print: false,
      load: { request: () => true, rate: 20, duration: 300 },
      steps: [
        { at: 50, name: 'freeze', run: () => proxy.freeze() },
        {
          at: 150,
          name: 'restore (reconnects the pool first, which fails)',
          run: () => {
            throw new Error('pool reconnect failed');
          },
        },
      ],
    });
    expect(result.steps.map((s) => s.error ?? 'ok')).toEqual(['ok', 'pool reconnect failed']);
    expect(proxy.snapshot().toxics).toEqual([]);
    expect(await reachable()).toBe(true);
  });

  it('a driver that throws: the drill rejects and the killed proxy listens again', async () => {
    const outcome = await drill({
      print: false,
      load: {
        duration: 300,
        drive: async () => {
          await tick(100);
          throw new Error('driver bug');
        },
      },
      steps: [{ at: 50, name: 'kill', run: () => proxy.kill() }],
    }).then(
      () => 'resolved',
      (e: Error) => e.message,
    );
    expect(outcome).toBe('driver bug');
    expect(proxy.snapshot()).toMatchObject({ listening: true, toxics: [] });
    expect(await reachable()).toBe(true);
  });

  it('a hung step that kills after the drill has settled puts no fault on', async () => {
    let late: Promise<void> | undefined;
    const result = await drill({
      print: false,
      load: { request: () => true, rate: 20, duration: 200, timeout: 100 },
      steps: [
        {
          at: 50,
          name: 'kill, late',
          run: () =>
            (late = (async () => {
              await tick(500);
              await proxy.kill();
              proxy.add({ type: 'latency', latency: 5_000 });
            })()),
        },
      ],
    });
    expect(result.steps[0]?.hung).toBe(true);
    await late; // the step goes on after the drill, and ends
    expect(proxy.snapshot()).toMatchObject({ listening: true, toxics: [] });
    expect(await reachable()).toBe(true);
  });

  it('a fault put on before the drill, outside its steps, is left on', async () => {
    proxy.add({ type: 'latency', latency: 1, name: 'baseline' });
    await drill({
      print: false,
      load: { request: () => true, rate: 20, duration: 200 },
      steps: [{ at: 50, name: 'slow', run: () => void proxy.add({ type: 'latency', latency: 50 }) }],
    });
    expect(proxy.snapshot().toxics.map((t) => t.name)).toEqual(['baseline']);
  });
});
