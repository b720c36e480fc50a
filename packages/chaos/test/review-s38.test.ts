/**
 * Outside review, session 38: bugs a user would hit in @holdfast/chaos, each proven by a test
 * that fails on the code as reviewed (one passing test pins a large limit with a slow reader).
 * Loopback only; every server, socket and proxy is closed (proxies and sockets by support/review).
 */
import { getEventListeners, once } from 'node:events';
import { createServer as createHttpServer, type Server } from 'node:http';
import { type AddressInfo, connect, createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { createBus, type HoldfastEvent } from '@holdfast/core';
import { describe, expect, it, vi } from 'vitest';
import { chaosSwitch, drill, faultProxy, faultProxyOptionsSchema, faultyFetch, injectFault } from '../src/index.js';
import { client, listen, proxies, proxyTo, sha, tick } from './support/review.js';

// Found while fixing: the proxy's net.Server is private; every TCP server made in this file is
// recorded (and made as before) so a test can emit an accept error on the proxy's.
const tcp = vi.hoisted(() => ({ servers: [] as TcpServer[] }));
vi.mock('node:net', async (importOriginal) => {
  const net = await importOriginal<typeof import('node:net')>();
  const createServer = ((...args: Parameters<typeof net.createServer>) => {
    const server = net.createServer(...args);
    tcp.servers.push(server);
    return server;
  }) as typeof net.createServer;
  return { ...net, createServer, default: { ...net, createServer } };
});

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + seed + (i >> 9)) & 0xff;
  return b;
}

/** An HTTP server answering every request with `body`; closed by `stop`. */
async function httpServer(body: string): Promise<{ url: string; stop: () => Promise<void> }> {
  const server: Server = createHttpServer((_req, res) => res.end(body));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    stop: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

describe('faultyFetch slowBody, review s38', () => {
  it('the caller aborts mid-body: the slow body keeps trickling in for seconds instead of failing with the abort', async () => {
    const http = await httpServer('x'.repeat(1_000));
    try {
      const f = faultyFetch({ enabled: true, faults: [{ type: 'slowBody', chunkSize: 10, delay: 20 }] });
      const ac = new AbortController();
      const res = await f(http.url, { signal: ac.signal });
      setTimeout(() => ac.abort(new Error('caller gave up')), 100);
      const started = performance.now();
      const outcome = await res.text().then(
        (t) => `resolved with ${t.length} bytes`,
        (e: Error) => `rejected: ${e.message}`,
      );
      // fetch's own body fails with the abort's reason as soon as the signal aborts; here the
      // 100 pieces already read from the server are still handed out, 20 ms apart (~2 s).
      expect({ outcome, late: performance.now() - started > 600 }).toEqual({
        outcome: 'rejected: caller gave up',
        late: false,
      });
    } finally {
      await http.stop();
    }
  });

  it('the body is cancelled: its piece delay still holds a timer (the process open) for the whole delay', async () => {
    const http = await httpServer('y'.repeat(100));
    // The slow body's piece delay is a global setTimeout of `delay` ms: watch that one.
    const made: unknown[] = [];
    const cleared = new Set<unknown>();
    const realSet = globalThis.setTimeout;
    const realClear = globalThis.clearTimeout;
    const setSpy = vi.spyOn(globalThis, 'setTimeout').mockImplementation(((fn: () => void, ms?: number) => {
      const t = realSet(fn, ms);
      if (ms === 30_000) made.push(t);
      return t;
    }) as typeof setTimeout);
    const clearSpy = vi.spyOn(globalThis, 'clearTimeout').mockImplementation(((t: NodeJS.Timeout) => {
      cleared.add(t);
      realClear(t);
    }) as typeof clearTimeout);
    try {
      const f = faultyFetch({ enabled: true, faults: [{ type: 'slowBody', chunkSize: 10, delay: 30_000 }] });
      const res = await f(http.url);
      const reader = (res.body as ReadableStream<Uint8Array>).getReader();
      await reader.read(); // the first piece comes at once; the stream then pulls the next one, 30 s on
      await tick(20);
      expect(made.length).toBe(1);
      await reader.cancel('not interested');
      await tick(20);
      // Nothing reads this body any more, yet its 30 s timer runs on, ref'd: the process stays up.
      expect(made.filter((t) => !cleared.has(t))).toEqual([]);
    } finally {
      setSpy.mockRestore();
      clearSpy.mockRestore();
      // Ends the wait left behind (the kill switch ends every injected wait), for the next tests.
      chaosSwitch.off();
      chaosSwitch.on();
      await http.stop();
    }
  });
});

describe('faultyFetch init, review s38', () => {
  it("enabled, with no fault picking the request: the caller's fetch options beyond Request's (an undici dispatcher) never reach the fetch underneath", async () => {
    const dispatcher = { dispatch: () => true }; // an undici Agent, say: a proxy, a pool, mTLS
    const seen: unknown[] = [];
    const under = (async (_input: unknown, init?: RequestInit & { dispatcher?: unknown }) => {
      seen.push(init?.dispatcher);
      return new Response('ok');
    }) as typeof fetch;
    const off = faultyFetch({ fetch: under, faults: [{ type: 'status', status: 503 }] });
    const on = faultyFetch({ fetch: under, enabled: true, faults: [{ type: 'status', status: 503, rate: 0 }] });
    const init = { dispatcher } as unknown as RequestInit;
    await off('http://127.0.0.1:9/a', init);
    await on('http://127.0.0.1:9/a', init);
    // Disabled, it hands `init` on; enabled, it rebuilds a Request and drops the rest of `init`.
    expect(seen).toEqual([dispatcher, dispatcher]);
  });
});

describe('faultProxy, review s38', () => {
  it('a connection toxic that replaced a proxy-wide one of its name: once that connection closes, the proxy-wide one is gone for good', async () => {
    const port = await listen((s) => s.pipe(s));
    const p = await proxyTo(port);
    p.add({ type: 'latency', latency: 50, name: 'lag' }); // every connection: the user's baseline
    const c = client(p);
    await once(c, 'connect');
    await tick(30);
    const id = (p.connections()[0] as { id: number }).id;
    // One connection slower for a while; its handle's remove() is to put the baseline back.
    const slower = p.add({ type: 'latency', latency: 300, name: 'lag', connection: id });
    c.destroy();
    await tick(100);
    slower.remove();
    // Neither the connection's end (as a spent drop does) nor the handle puts the baseline back.
    expect(p.snapshot().toxics).toEqual([{ name: 'lag', type: 'latency', direction: 'downstream' }]);
  });

  it('a handle put back a toxic for a connection already closed: it shows (and is announced) on though it can never act', async () => {
    const port = await listen((s) => s.pipe(s));
    const p = await proxyTo(port);
    const c = client(p);
    await once(c, 'connect');
    await tick(30);
    const id = (p.connections()[0] as { id: number }).id;
    p.add({ type: 'latency', latency: 300, name: 'lag', connection: id });
    const everyone = p.add({ type: 'latency', latency: 50, name: 'lag' });
    c.destroy();
    await tick(100);
    expect(p.connections()).toEqual([]);
    everyone.remove();
    // add() refuses a toxic for a connection that is not open; remove() puts one back anyway.
    expect(p.snapshot().toxics).toEqual([]);
  });

  it('a hung step that calls proxy.remove(name) after its drill settled takes off the user’s own toxic', async () => {
    const port = await listen((s) => s.pipe(s));
    const p = await proxyTo(port);
    p.add({ type: 'latency', latency: 1, name: 'baseline' }); // put on outside the drill: to be left on
    let late: Promise<unknown> | undefined;
    const result = await drill({
      print: false,
      load: { request: () => true, rate: 20, duration: 200, timeout: 100 },
      steps: [
        {
          at: 20,
          name: 'lift the baseline, late',
          run: () =>
            (late = (async () => {
              await tick(400);
              return p.remove('baseline');
            })()),
        },
      ],
    });
    expect(result.steps[0]?.hung).toBe(true);
    const removed = await late;
    // README: a hung step that goes on after the drill "puts no fault on and takes none off".
    expect({ removed, toxics: p.snapshot().toxics.map((t) => t.name) }).toEqual({
      removed: false,
      toxics: ['baseline'],
    });
  });

  it('(holds) a 16 MB limit with a reader paused meanwhile: exactly `bytes` bytes arrive, in order, then the close', async () => {
    const data = pattern(24 * 1024 * 1024, 1);
    const port = await listen((s) => s.write(data));
    const p = await proxyTo(port);
    const limit = 16 * 1024 * 1024 + 100;
    p.add({ type: 'limit', bytes: limit });
    const c = client(p);
    await once(c, 'connect');
    c.pause();
    await tick(400);
    const parts: Buffer[] = [];
    c.on('data', (b: Buffer) => parts.push(b));
    const closed = once(c, 'close');
    c.resume();
    await Promise.race([closed, tick(3_000)]);
    const got = Buffer.concat(parts);
    expect(got.length).toBe(limit);
    expect(sha(got)).toBe(sha(data.subarray(0, limit)));
  });

  it('a proxy whose target is its own address is accepted: one client makes it connect to itself without end', async () => {
    // A port free now, given as both `port` and `target.port` (a typo, or the server not up yet).
    const probe = createTcpServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const port = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const made = await faultProxy({ port, target: { port } }).then(
      (p) => p,
      (e: Error) => e,
    );
    let accepted = 0;
    if (!(made instanceof Error)) {
      const c = connect(port, '127.0.0.1');
      c.on('error', () => {});
      await tick(100);
      accepted = made.snapshot().accepted; // each connection it makes to its target is one more it accepts
      c.destroy();
      await made.close();
    }
    expect({
      refused: made instanceof Error ? /target/.test(made.message) : 'accepted',
      accepted: accepted <= 1,
    }).toEqual({ refused: true, accepted: true });
  });
});

describe('found while fixing', () => {
  it("an accept error on the proxy's server (EMFILE) is told once as a process warning, not an uncaught exception", async () => {
    const port = await listen((s) => s.pipe(s));
    const p = await proxyTo(port);
    const server = tcp.servers.find((s) => (s.address() as AddressInfo | null)?.port === p.port);
    expect(server).toBeDefined();
    const warnings: (Error & { code?: string })[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      const emfile = Object.assign(new Error('accept EMFILE'), { code: 'EMFILE', syscall: 'accept' });
      // With no 'error' listener, emit() throws it: in Node's accept path, an uncaught exception.
      server?.emit('error', emfile);
      server?.emit('error', emfile);
      await tick(20);
      expect(warnings.filter((w) => w.code === 'HOLDFAST_PROXY_ERROR').map((w) => w.message)).toEqual([
        'faultProxy: could not accept a connection: accept EMFILE',
      ]);
      // It goes on: listening, and forwarding.
      const c = client(p);
      c.write('still there');
      const [data] = await once(c, 'data');
      expect({ listening: p.snapshot().listening, echoed: String(data) }).toEqual({
        listening: true,
        echoed: 'still there',
      });
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('injectFault with a null-prototype fault: execute() rejects with it (String() of it threw synchronously)', async () => {
    const fault = Object.create(null) as object;
    const bus = createBus();
    const details: unknown[] = [];
    bus.on('chaos.inject', (e: HoldfastEvent) => details.push((e as { detail?: unknown }).detail));
    const policy = injectFault({ enabled: true, fault, bus });
    let outcome: Promise<unknown> | undefined;
    expect(() => {
      outcome = policy.execute(() => 'ran');
    }).not.toThrow();
    await expect(outcome).rejects.toBe(fault);
    expect(details).toEqual(['an error that cannot be read']);
  });

  it("a hung step that calls a toxic handle's remove() after its drill settled leaves the user's toxic on", async () => {
    const port = await listen((s) => s.pipe(s));
    const p = await proxyTo(port);
    const baseline = p.add({ type: 'latency', latency: 1, name: 'baseline' });
    let late: Promise<unknown> | undefined;
    const result = await drill({
      print: false,
      load: { request: () => true, rate: 20, duration: 200, timeout: 100 },
      steps: [
        {
          at: 20,
          name: 'lift the baseline by its handle, late',
          run: () =>
            (late = (async () => {
              await tick(400);
              baseline.remove();
            })()),
        },
      ],
    });
    expect(result.steps[0]?.hung).toBe(true);
    await late;
    expect(p.snapshot().toxics.map((t) => t.name)).toEqual(['baseline']);
    // Outside the drill, the handle still takes it off.
    baseline.remove();
    expect(p.snapshot().toxics).toEqual([]);
  });

  it("the schema refuses a target that is the proxy's own address, loopback or wildcard, and takes a remote one on the same port", () => {
    const refused = (o: object) => !faultProxyOptionsSchema.safeParse(o).success;
    expect({
      same: refused({ port: 7000, target: { port: 7000 } }),
      localhost: refused({ port: 7000, target: { host: 'localhost', port: 7000 } }),
      wildcard: refused({ host: '0.0.0.0', port: 7000, target: { port: 7000 } }),
      otherPort: refused({ port: 7000, target: { port: 7001 } }),
      remote: refused({ host: '0.0.0.0', port: 6379, target: { host: 'redis.internal', port: 6379 } }),
      remoteFromLoopback: refused({ port: 6379, target: { host: '10.0.0.5', port: 6379 } }),
    }).toEqual({
      same: true,
      localhost: true,
      wildcard: true,
      otherPort: false,
      remote: false,
      remoteFromLoopback: false,
    });
  });

  it("without a port, a free port that is the target's own (the target not up yet) is passed over", async () => {
    // The first port it would try below the ephemeral range is 10,000 (Linux): the target's.
    const random = vi.spyOn(Math, 'random').mockReturnValueOnce(0);
    try {
      const p = await faultProxy({ target: { port: 10_000 } });
      proxies.push(p);
      expect(p.port).not.toBe(10_000);
    } finally {
      random.mockRestore();
    }
  });

  it('slowBody: once the body is read, no listener of it is left on a long-lived signal', async () => {
    const under = (async () => new Response('z'.repeat(50))) as typeof fetch;
    const f = faultyFetch({ fetch: under, enabled: true, faults: [{ type: 'slowBody', chunkSize: 10, delay: 1 }] });
    const ac = new AbortController();
    const res = await f('http://127.0.0.1:9/a', { signal: ac.signal });
    const during = getEventListeners(ac.signal, 'abort').length;
    expect(await res.text()).toBe('z'.repeat(50));
    expect(getEventListeners(ac.signal, 'abort').length).toBe(during - 1);
  });

  it('enabled, a streamed request body (duplex: half) still goes out through the real fetch', async () => {
    const http = await httpServer('done');
    try {
      const f = faultyFetch({ enabled: true, faults: [{ type: 'status', status: 503, rate: 0 }] });
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(new TextEncoder().encode('payload'));
          c.close();
        },
      });
      const res = await f(http.url, { method: 'POST', body, duplex: 'half' } as RequestInit);
      expect({ status: res.status, text: await res.text() }).toEqual({ status: 200, text: 'done' });
    } finally {
      await http.stop();
    }
  });
});
