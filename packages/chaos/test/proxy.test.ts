import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { createBus, HoldfastConfigError } from '@holdfast/core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type FaultProxy, faultProxy } from '../src/index.js';

/** An HTTP upstream: `/` answers `ok`, `/big` answers 20,000 bytes. Counts the requests it saw. */
let upstream: Server;
let seen = 0;
let port = 0;
const big = Buffer.alloc(20_000, 'x');

beforeAll(async () => {
  upstream = createServer((req, res) => {
    seen++;
    if (req.url === '/big') res.end(big);
    else res.end('ok');
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  port = (upstream.address() as AddressInfo).port;
});

afterAll(async () => {
  upstream.closeAllConnections();
  await new Promise((resolve) => upstream.close(resolve));
});

const proxies: FaultProxy[] = [];
async function proxy(): Promise<FaultProxy> {
  const p = await faultProxy({ target: { port } });
  proxies.push(p);
  return p;
}
afterEach(async () => {
  await Promise.all(proxies.splice(0).map((p) => p.close()));
});

/** A raw HTTP/1.1 exchange on one socket, so a test sees chunks and closes as they happen. */
function raw(p: FaultProxy): { socket: Socket; chunks: Buffer[]; closed: Promise<void>; send(path: string): void } {
  const socket = connect(p.port, '127.0.0.1');
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return {
    socket,
    chunks,
    closed,
    send: (path) => socket.write(`GET ${path} HTTP/1.1\r\nhost: x\r\n\r\n`),
  };
}

const causeCode = (error: unknown) => (error as { cause?: { code?: string } }).cause?.code;

describe('faultProxy in front of an HTTP server', () => {
  it('forwards untouched with no toxic, and close() leaves no socket behind', async () => {
    const p = await proxy();
    const res = await fetch(`${p.url}/big`);
    expect((await res.arrayBuffer()).byteLength).toBe(20_000);
    expect(p.snapshot()).toMatchObject({ listening: true, accepted: 1, toxics: [] });
    await p.close();
    expect(p.connections()).toEqual([]);
    const probe = connect(p.port, '127.0.0.1');
    const [refused] = await once(probe, 'error').catch((e: unknown) => [e]);
    expect(refused).toMatchObject({ code: 'ECONNREFUSED' });
    const open = () => new Promise<number>((resolve) => upstream.getConnections((_, n) => resolve(n)));
    for (let i = 0; i < 100 && (await open()) > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(await open()).toBe(0);
  });

  it('latency: delays the reply by at least its latency, and comes off', async () => {
    const p = await proxy();
    const lag = p.add({ type: 'latency', latency: 150, jitter: 20 });
    const started = performance.now();
    expect(await (await fetch(p.url)).text()).toBe('ok');
    expect(performance.now() - started).toBeGreaterThanOrEqual(129);
    lag.remove();
    expect(p.snapshot().toxics).toEqual([]);
    expect(await (await fetch(p.url)).text()).toBe('ok');
  });

  it('bandwidth: 20,000 bytes at 40,000 bytes/s take at least 400 ms', async () => {
    const p = await proxy();
    p.add({ type: 'bandwidth', rate: 40_000 });
    const started = performance.now();
    const body = await (await fetch(`${p.url}/big`)).arrayBuffer();
    expect(body.byteLength).toBe(20_000);
    expect(performance.now() - started).toBeGreaterThanOrEqual(400);
  });

  it('slicer: the reply arrives in pieces, spaced by the delay, and whole', async () => {
    const p = await proxy();
    p.add({ type: 'slicer', size: 1_000, delay: 20 });
    const c = raw(p);
    const started = performance.now();
    c.send('/big');
    const body = 'x'.repeat(20_000);
    while (!Buffer.concat(c.chunks).toString().includes(body)) await new Promise((r) => setTimeout(r, 10));
    // 20,000 body bytes in 1,000-byte pieces 20 ms apart: at least 19 gaps. A busy client may
    // read two pieces at once, so the count of reads is a lower bound, not an exact figure.
    expect(performance.now() - started).toBeGreaterThanOrEqual(19 * 20);
    expect(c.chunks.length).toBeGreaterThanOrEqual(5);
    c.socket.destroy();
  });

  it('limit: closes the connection after N bytes, the reply cut short', async () => {
    const p = await proxy();
    p.add({ type: 'limit', bytes: 5_000 });
    const c = raw(p);
    c.send('/big');
    await c.closed;
    expect(Buffer.concat(c.chunks).length).toBe(5_000);
  });

  it('reset: open connections and new ones are reset (ECONNRESET); removal restores', async () => {
    const p = await proxy();
    const c = raw(p);
    const error = once(c.socket, 'error');
    await once(c.socket, 'connect');
    await new Promise((r) => setTimeout(r, 20));
    const reset = p.add({ type: 'reset' });
    expect((await error)[0]).toMatchObject({ code: 'ECONNRESET' });
    const failed = await fetch(p.url).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(TypeError);
    expect(causeCode(failed)).toMatch(/ECONNRESET|UND_ERR_SOCKET/);
    reset.remove();
    expect(await (await fetch(p.url)).text()).toBe('ok');
  });

  it('blackhole: the request is held, the client times out; once removed, bytes flow again', async () => {
    const p = await proxy();
    const before = seen;
    const hole = p.add({ type: 'blackhole' });
    const failed = await fetch(p.url, { signal: AbortSignal.timeout(300) }).catch((e: unknown) => e);
    expect((failed as Error).name).toBe('TimeoutError');
    expect(seen).toBe(before);
    // A held request on a raw socket is delivered, in order, when the blackhole lifts.
    const c = raw(p);
    c.send('/');
    await new Promise((r) => setTimeout(r, 100));
    expect(c.chunks).toEqual([]);
    hole.remove();
    while (!Buffer.concat(c.chunks).toString().includes('ok')) await new Promise((r) => setTimeout(r, 10));
    // The timed-out request may have been held too (its connection still open): both then arrive.
    expect(seen).toBeGreaterThanOrEqual(before + 1);
    c.socket.destroy();
  });

  it('drop: the reply to one request is lost, the server did serve it, the next reply arrives', async () => {
    const p = await proxy();
    const c = raw(p);
    await once(c.socket, 'connect');
    const before = seen;
    p.add({ type: 'drop', chunks: 1 });
    c.send('/');
    while (seen === before) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 100));
    expect(c.chunks).toEqual([]);
    expect(p.snapshot().toxics).toEqual([]); // spent, so removed
    c.send('/');
    while (!Buffer.concat(c.chunks).toString().includes('ok')) await new Promise((r) => setTimeout(r, 10));
    expect(seen).toBe(before + 2);
    expect(
      Buffer.concat(c.chunks)
        .toString()
        .match(/HTTP\/1.1 200/g),
    ).toHaveLength(1);
    c.socket.destroy();
  });

  it('per direction: latency upstream only delays the request, and a toxic can target one connection', async () => {
    const p = await proxy();
    const a = raw(p);
    const b = raw(p);
    await Promise.all([once(a.socket, 'connect'), once(b.socket, 'connect')]);
    while (p.connections().length < 2) await new Promise((r) => setTimeout(r, 5));
    const [first] = p.connections();
    p.add({ type: 'blackhole', connection: first?.id, direction: 'upstream' });
    const held = first?.clientPort === a.socket.localPort ? a : b;
    const free = held === a ? b : a;
    held.send('/');
    free.send('/');
    while (!Buffer.concat(free.chunks).toString().includes('ok')) await new Promise((r) => setTimeout(r, 10));
    expect(held.chunks).toEqual([]);
    p.clear();
    while (!Buffer.concat(held.chunks).toString().includes('ok')) await new Promise((r) => setTimeout(r, 10));
    a.socket.destroy();
    b.socket.destroy();
  });

  it('kill refuses new connections (ECONNREFUSED) and resets open ones; restore brings it back on the same port', async () => {
    const p = await proxy();
    const c = raw(p);
    await once(c.socket, 'connect');
    const error = once(c.socket, 'error');
    await p.kill();
    expect((await error)[0]).toMatchObject({ code: 'ECONNRESET' });
    expect(causeCode(await fetch(p.url).catch((e: unknown) => e))).toBe('ECONNREFUSED');
    await p.restore();
    expect(await (await fetch(p.url)).text()).toBe('ok');
  });

  it('a freeze holds both ways until restored', async () => {
    const p = await proxy();
    p.freeze();
    const pending = fetch(p.url).then((r) => r.text());
    await new Promise((r) => setTimeout(r, 150));
    await p.restore();
    expect(await pending).toBe('ok');
  });

  it('reports each toxic on the bus, and refuses bad toxics with HoldfastConfigError', async () => {
    const bus = createBus();
    const events: unknown[] = [];
    bus.on('chaos.toxic', (e) => events.push(e));
    const p = await faultProxy({ target: { port }, bus, name: 'payments-proxy' });
    proxies.push(p);
    p.add({ type: 'latency', latency: 10, name: 'lag' }).remove();
    expect(events).toMatchObject([
      { type: 'chaos.toxic', source: 'payments-proxy', toxic: 'latency', name: 'lag', active: true },
      { type: 'chaos.toxic', toxic: 'latency', name: 'lag', active: false, target: `127.0.0.1:${port}` },
    ]);
    expect(() => p.add({ type: 'latency', latency: -1 })).toThrow(HoldfastConfigError);
    expect(() => p.add({ type: 'slicer', size: 0 })).toThrow(/size/);
    expect(() => p.add({ type: 'nope' } as never)).toThrow(HoldfastConfigError);
    await expect(faultProxy({ target: { port: 0 } })).rejects.toThrow(/target.port/);
  });

  it('a refused target resets the client, and the proxy keeps serving', async () => {
    const dead = await faultProxy({ target: { port: 1 } });
    proxies.push(dead);
    const failed = await fetch(dead.url).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(TypeError);
    while (dead.connections().length > 0) await new Promise((r) => setTimeout(r, 5));
    expect(dead.snapshot()).toMatchObject({ listening: true, connections: 0, accepted: 1 });
  });
});
