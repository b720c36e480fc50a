import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createConnection, createServer, Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type FaultProxy, faultProxy } from '../src/index.js';

// A proxy started on a free port is killed and restored on that port. While it refuses, nothing
// else of the machine may take the port: a drill's restore step once threw EADDRINUSE in CI (the
// test files run side by side, and a port of the ephemeral range went to another socket).

const opened: (Server | Socket | FaultProxy)[] = [];
afterEach(async () => {
  for (const thing of opened.splice(0).reverse()) {
    if ('kill' in thing) await thing.close();
    else if (thing instanceof Server) await new Promise((resolve) => thing.close(resolve));
    else thing.destroy();
  }
});

/** The system's ephemeral ports (Linux): what `listen(0)` and outgoing connections are given. */
function ephemeral(): { min: number; max: number } {
  const [min, max] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'latin1').trim().split(/\s+/).map(Number);
  return { min: min as number, max: max as number };
}

/** An echo server on a free loopback port. */
async function echo(): Promise<Server> {
  const server = createServer((socket) => {
    // The proxy's kill() resets its connections: nothing to report.
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  opened.push(server);
  return server;
}

/** One line sent through `port`, as echoed back. */
async function roundTrip(port: number, text: string): Promise<string> {
  const socket = createConnection(port, '127.0.0.1');
  opened.push(socket);
  await once(socket, 'connect');
  socket.on('error', () => {});
  socket.write(text);
  const [chunk] = (await once(socket, 'data')) as [Buffer];
  socket.destroy();
  return chunk.toString('latin1');
}

describe.runIf(process.platform === 'linux')('faultProxy on a free port', () => {
  it('listens below the ephemeral range, so no listen(0) or outgoing connection takes its port while it is killed', async () => {
    const target = await echo();
    const range = ephemeral();
    const ports = new Set<number>();
    for (let i = 0; i < 20; i++) {
      const proxy = await faultProxy({ target: { port: (target.address() as { port: number }).port } });
      opened.push(proxy);
      ports.add(proxy.port);
      expect(proxy.port).toBeLessThan(range.min);
      expect(proxy.port).toBeGreaterThanOrEqual(1_024);
    }
    // Twenty proxies, twenty ports: each a free one, not one fixed port.
    expect(ports.size).toBe(20);
  });

  it('kill(), 200 servers on listen(0) and 200 outgoing connections meanwhile, then restore(): the proxy answers on its port again', async () => {
    const target = await echo();
    const proxy = await faultProxy({ target: { port: (target.address() as { port: number }).port } });
    opened.push(proxy);
    expect(await roundTrip(proxy.port, 'before')).toBe('before');
    await proxy.kill();
    await expect(roundTrip(proxy.port, 'dead')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    const taken: number[] = [];
    for (let i = 0; i < 200; i++) {
      const server = createServer();
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      opened.push(server);
      const client = createConnection((target.address() as { port: number }).port, '127.0.0.1');
      client.on('error', () => {});
      opened.push(client);
      await once(client, 'connect');
      taken.push((server.address() as { port: number }).port, client.localPort as number);
    }
    expect(taken).not.toContain(proxy.port);
    await proxy.restore();
    expect(await roundTrip(proxy.port, 'after')).toBe('after');
  });
});
