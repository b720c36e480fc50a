/**
 * What the *-review tests of the fault proxy share: loopback servers, proxies and clients that
 * are all closed after each test.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach } from 'vitest';
import { type FaultProxy, type FaultProxyOptions, faultProxy } from '../../src/index.js';

const servers: Server[] = [];
const sockets: Socket[] = [];
/** Proxies closed after each test; push one made by hand. */
export const proxies: FaultProxy[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(proxies.splice(0).map((p) => p.close()));
  for (const s of servers.splice(0)) s.close();
});

/** A loopback TCP server calling `handler` with each connection; resolves to its port. */
export async function listen(handler: (s: Socket) => void): Promise<number> {
  const server = createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    handler(s);
  });
  servers.push(server);
  server.listen({ port: 0, host: '127.0.0.1' });
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

/** A fault proxy in front of `port`. */
export async function proxyTo(port: number, options: Partial<FaultProxyOptions> = {}): Promise<FaultProxy> {
  const p = await faultProxy({ target: { port }, ...options });
  proxies.push(p);
  return p;
}

/** A client of the proxy; `allowHalfOpen` keeps its side open after the other side's FIN. */
export function client(p: FaultProxy, allowHalfOpen = false): Socket {
  const s = connect({ port: p.port, host: '127.0.0.1', allowHalfOpen });
  s.on('error', () => {});
  sockets.push(s);
  return s;
}

export const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
