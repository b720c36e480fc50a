/**
 * Outside review (s38b) of 21362083: each `it` is one bug a user would hit, failing on the code
 * as reviewed. Loopback only; every server, socket and proxy is closed.
 */
import { once } from 'node:events';
import { createServer as createHttpServer, type Server } from 'node:http';
import { type AddressInfo, connect, createServer as createTcpServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type FaultProxy, faultProxy, faultyFetch } from '../src/index.js';

const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

describe('review s38b: faultyFetch passes init on', () => {
  it('a POST with a body and headers, faults on, reaches the server without its Content-Type', async () => {
    const server: Server = createHttpServer((req, res) => {
      req.resume();
      req.on('end', () => res.end(String(req.headers['content-type'])));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise((r) => server.close(r)));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const init = { method: 'POST', body: new URLSearchParams({ a: '1' }), headers: { 'x-trace': '1' } };
    const plain = await (await fetch(url, init)).text();
    expect(plain).toBe('application/x-www-form-urlencoded;charset=UTF-8');
    // A delay of 1 ms: the request goes on to the fetch underneath, which gets `init` again.
    const f = faultyFetch({ enabled: true, faults: [{ type: 'delay', delay: 1 }] });
    const faulty = await (await f(url, { ...init, body: new URLSearchParams({ a: '1' }) })).text();
    expect(faulty).toBe(plain);
  });
});

describe("review s38b: faultProxy's own-address refusal", () => {
  it('refuses a proxy on 127.0.0.2:P in front of a server on 127.0.0.1:P, two different sockets', async () => {
    const server = createTcpServer((s) => {
      s.on('error', () => {});
      s.end('hello');
    });
    server.listen({ port: 0, host: '127.0.0.1' });
    await once(server, 'listening');
    closers.push(() => new Promise((r) => server.close(r)));
    const port = (server.address() as AddressInfo).port;
    // Same port on another loopback address: a proxy there connects to the server, not to itself.
    const proxy: FaultProxy = await faultProxy({ host: '127.0.0.2', port, target: { host: '127.0.0.1', port } });
    closers.push(() => proxy.close());
    const socket = connect({ host: '127.0.0.2', port });
    socket.on('error', () => {});
    closers.push(() => socket.destroy());
    const [data] = await once(socket, 'data');
    expect(String(data)).toBe('hello');
  });
});
