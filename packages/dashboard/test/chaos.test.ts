import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { faultProxy, injectFault } from '@holdfast/chaos';
import { createBus, createPolicyRegistry } from '@holdfast/core';
import { afterEach, describe, expect, it } from 'vitest';
import { type DashboardSnapshot, dashboard } from '../src/index.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function serve(server: Server): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('the dashboard shows what chaos injected, apart from real faults', () => {
  it('lists active toxics and counts injections in the snapshot; the page has their section', async () => {
    const bus = createBus();
    const dash = dashboard({ bus, policies: createPolicyRegistry(), path: '/ops', interval: 100 });
    cleanups.push(() => dash.close());
    const url = await serve(createServer(dash));
    const snapshot = async () => (await (await fetch(`${url}/ops/snapshot`)).json()) as DashboardSnapshot;

    expect((await snapshot()).chaos).toEqual({ active: false, injected: [], toxics: [], drill: null });

    const proxy = await faultProxy({ target: { port: 1 }, bus, name: 'payments-proxy' });
    cleanups.push(() => proxy.close());
    const lag = proxy.add({ type: 'latency', latency: 100, name: 'slow-payments' });
    const flaky = injectFault({ enabled: true, bus, name: 'flaky-db' });
    for (let i = 0; i < 3; i++) await flaky.execute(() => 1).catch(() => {});

    const during = (await snapshot()).chaos;
    expect(during.active).toBe(true);
    expect(during.toxics).toMatchObject([
      {
        proxy: 'payments-proxy',
        name: 'slow-payments',
        toxic: 'latency',
        direction: 'downstream',
        target: '127.0.0.1:1',
      },
    ]);
    expect(during.injected).toMatchObject([
      { source: 'flaky-db', kind: 'fault', detail: 'E_INJECTED_FAULT', count: 3 },
    ]);

    lag.remove();
    const after = (await snapshot()).chaos;
    expect(after.active).toBe(false);
    expect(after.toxics).toEqual([]);
    expect(after.injected[0]?.count).toBe(3);

    const html = await (await fetch(`${url}/ops`)).text();
    expect(html).toContain('Injected faults (chaos)');
    expect(html).toContain('Faults are being injected on purpose');
  });

  it('announces a toxic on the live change stream', async () => {
    const bus = createBus();
    const dash = dashboard({ bus, policies: createPolicyRegistry(), path: '/ops', interval: 100 });
    cleanups.push(() => dash.close());
    const url = await serve(createServer(dash));
    const abort = new AbortController();
    cleanups.push(() => abort.abort());
    const res = await fetch(`${url}/ops/events`, { signal: abort.signal });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const proxy = await faultProxy({ target: { port: 1 }, bus, name: 'redis-proxy' });
    cleanups.push(() => proxy.close());
    proxy.add({ type: 'reset', name: 'rst' });
    let text = '';
    while (!text.includes('event: change')) text += new TextDecoder().decode((await reader.read()).value);
    const change = text.slice(text.indexOf('event: change'));
    expect(change).toMatch(/"type":"chaos.toxic".*"name":"rst"/);
  });
});
