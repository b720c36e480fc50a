/**
 * Run as a child by proxy-hostile.test.ts: 200 connections through a fault proxy with timed
 * toxics (latency, bandwidth, a reset due in a minute), bytes held by a freeze, then close().
 * Neither the upstream's nor the clients' sockets are destroyed by hand: the process must exit
 * on its own once the proxy and the upstream are closed.
 */
import { once } from 'node:events';
import { type AddressInfo, connect, createServer } from 'node:net';
import { faultProxy } from '../../src/index.js';

const upstream = createServer((s) => {
  s.on('error', () => {});
  s.on('data', (b) => s.write(b));
});
upstream.listen(0, '127.0.0.1');
await once(upstream, 'listening');
const proxy = await faultProxy({ target: { port: (upstream.address() as AddressInfo).port } });
proxy.add({ type: 'latency', latency: 5, jitter: 5, direction: 'both' });
proxy.add({ type: 'bandwidth', rate: 1_000 });
proxy.add({ type: 'reset', after: 60_000 });
proxy.add({ type: 'slicer', size: 10, delay: 30_000 });
const clients = await Promise.all(
  Array.from({ length: 200 }, async () => {
    const c = connect(proxy.port, '127.0.0.1');
    c.on('error', () => {});
    await once(c, 'connect');
    c.write('0123456789abcdefghij');
    await once(c, 'data');
    return c;
  }),
);
proxy.freeze();
for (const c of clients) c.write('held');
await proxy.close();
upstream.close();
console.log(`closed ${clients.length}`);
