import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { createBus, seededRandom } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { faultProxy } from '../src/index.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const tcpHandles = () => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;

describe('faultProxy, for a long time: connections opening and closing while resets come and go', () => {
  /**
   * Soak: a reset (a reset toxic, resetAll(), kill()) that caught a link whose FIN to one side
   * was still on its way left that link for good, with its socket's handle open: libuv refuses
   * the RST (EINVAL) and Node then drops the handle unclosed. Links and handles grew with every
   * such reset, and proxy.close() never resolved. Within 40 rounds of 10 connections here.
   */
  it('every link goes once its clients are gone, no socket handle is left, and close() resolves', async () => {
    const random = seededRandom(7);
    const big = Buffer.alloc(256 * 1024, 1);
    const upstream = createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => {});
      s.on('data', () => {});
      if (random() < 0.5) s.end(big);
      else setTimeout(() => s.end('bye'), random() * 10);
    });
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    const handlesBefore = tcpHandles();
    const proxy = await faultProxy({ target: { host: '127.0.0.1', port: (upstream.address() as AddressInfo).port } });
    let linksLeft = 0;
    try {
      for (let round = 0; round < 40 && linksLeft === 0; round++) {
        const clients: Socket[] = [];
        for (let i = 0; i < 10; i++) {
          const client = connect({ port: proxy.port, host: '127.0.0.1', allowHalfOpen: true });
          client.on('error', () => {});
          if (i % 2) client.pause(); // a client that does not read
          client.write('hello');
          if (i % 3 === 0) client.end();
          clients.push(client);
        }
        await sleep(random() * 15);
        const action = round % 3;
        if (action === 0) proxy.resetAll();
        else if (action === 1) {
          const toxic = proxy.add({ type: 'reset', after: Math.floor(random() * 5) });
          await sleep(6);
          toxic.remove();
        } else {
          await proxy.kill();
          await proxy.restore();
        }
        for (const client of clients) if (random() < 0.5) client.destroy();
        for (const client of clients) client.end();
        await sleep(30);
        for (const client of clients) client.destroy();
        for (let wait = 0; wait < 20 && proxy.snapshot().connections > 0; wait++) await sleep(10);
        linksLeft = proxy.snapshot().connections;
      }
      expect(linksLeft).toBe(0);
    } finally {
      const closed = await Promise.race([proxy.close().then(() => 'closed'), sleep(2_000).then(() => 'still open')]);
      upstream.close();
      expect(closed).toBe('closed');
    }
    for (let wait = 0; wait < 20 && tcpHandles() > handlesBefore; wait++) await sleep(10);
    expect(tcpHandles()).toBe(handlesBefore);
  }, 30_000);

  it('100 proxies closed with toxics on: every toxic is announced off, none shows on for good', async () => {
    const bus = createBus();
    const on = new Set<string>();
    bus.on('chaos.toxic', (e) => (e.active ? on.add(`${e.source}/${e.name}`) : on.delete(`${e.source}/${e.name}`)));
    for (let i = 0; i < 100; i++) {
      const proxy = await faultProxy({ name: `drill-${i}`, bus, target: { host: '127.0.0.1', port: 1 } });
      proxy.add({ type: 'latency', latency: 5 });
      proxy.freeze();
      // A drill that ends by closing its proxy, toxics still on.
      await proxy.close();
      expect(proxy.snapshot().toxics).toEqual([]);
    }
    expect(on.size).toBe(0);
  });
});
