/**
 * The dashboard's HTTP edge under hostile clients: odd methods, paths and query strings get a
 * 4xx (never a 500, never a hang); a page that never reads its event stream holds at most one
 * snapshot in the server's buffer; many pages cost one snapshot per interval; pages that come
 * and go leave no stream or listener behind.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { createBus, createPolicyRegistry, stateChangeEvents } from '@holdfast/core';
import express from 'express';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { dashboard } from '../src/index.js';
import { countingBus, countSnapshots, FakeBreaker, handClock } from './fakes.js';

const servers: Server[] = [];
const sockets: Socket[] = [];
const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const c of cleanups.splice(0)) await c();
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function listen(server: Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as { port: number }).port;
}

/** Sends `raw` as it is on a new connection; resolves with the status line's code and the head. */
function rawRequest(port: number, raw: string | Buffer): Promise<{ status: number; head: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    sockets.push(socket);
    let text = '';
    const timer = setTimeout(
      () => reject(new Error(`no answer to ${JSON.stringify(String(raw).slice(0, 80))}`)),
      5_000,
    );
    socket.on('data', (chunk) => {
      text += chunk.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end === -1) return;
      clearTimeout(timer);
      socket.destroy();
      resolve({ status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0), head: text.slice(0, end) });
    });
    socket.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    socket.write(raw);
  });
}

const get = (path: string, method = 'GET', extra = '') =>
  `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${extra}\r\n`;

/** Every hostile request and the one status it must get. */
const attacks: [string, string, number][] = [
  ['POST', get('/holdfast', 'POST', 'Content-Length: 0\r\n'), 405],
  ['PUT on the snapshot', get('/holdfast/snapshot', 'PUT', 'Content-Length: 0\r\n'), 405],
  ['DELETE on the events', get('/holdfast/events', 'DELETE'), 405],
  ['OPTIONS', get('/holdfast', 'OPTIONS'), 405],
  ['PATCH', get('/holdfast/', 'PATCH', 'Content-Length: 0\r\n'), 405],
  ['TRACE', get('/holdfast', 'TRACE'), 405],
  ['an unknown method', get('/holdfast', 'BREW'), 400],
  ['.. out of the path', get('/holdfast/../../etc/passwd'), 404],
  ['.. back into it', get('/holdfast/x/../snapshot'), 404],
  ['encoded ..', get('/holdfast/%2e%2e/%2e%2e/etc/passwd'), 404],
  ['an encoded slash', get('/holdfast%2Fsnapshot'), 404],
  ['a double slash', get('/holdfast//snapshot'), 404],
  ['a NUL', get('/holdfast/snapshot%00.json'), 404],
  ['another case', get('/HOLDFAST'), 404],
  ['a malformed query', get('/holdfast/snapshot?%zz=%&&==?#'), 200],
  ['a 7 kB query', get(`/holdfast/snapshot?${'a=1&'.repeat(1_800)}`), 200],
  ['a 100 kB query', get(`/holdfast/snapshot?${'q'.repeat(100_000)}`), 431],
  ['an absolute URL', get('http://evil.example/holdfast/snapshot'), 404],
  ['an asterisk', get('*', 'OPTIONS'), 404],
  ['no path at all', 'GET  HTTP/1.1\r\nHost: x\r\n\r\n', 400],
  ['a bare LF request', 'GET /holdfast HTTP/1.1\nHost: x\n\n', 400],
];

describe('dashboard: hostile requests', () => {
  it.each(attacks)('%s: its 4xx (or 200 where the request is a fair GET), never 5xx', async (_name, raw, status) => {
    const dash = dashboard({ bus: createBus(), policies: createPolicyRegistry(), interval: 100 });
    cleanups.push(() => dash.close());
    const port = await listen(createServer(dash));
    const answer = await rawRequest(port, raw);
    expect(answer.status).toBe(status);
    if (status === 405) expect(answer.head).toMatch(/\r\nallow: GET, HEAD/i);
    expect(dash.clients).toBe(0);
  });

  it('HEAD answers each route with its headers and no body; the event stream is not followed', async () => {
    const dash = dashboard({ bus: createBus(), policies: createPolicyRegistry(), interval: 100 });
    cleanups.push(() => dash.close());
    const port = await listen(createServer(dash));
    for (const [path, type] of [
      ['/holdfast', 'text/html'],
      ['/holdfast/snapshot', 'application/json'],
      ['/holdfast/events', 'text/event-stream'],
    ] as const) {
      const res = await fetch(`http://127.0.0.1:${port}${path}`, { method: 'HEAD' });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain(type);
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      expect(await res.text()).toBe('');
    }
    expect(dash.clients).toBe(0);
  });

  it('Express and Fastify mounts answer the same attacks with a 4xx', async () => {
    const dash = dashboard({ bus: createBus(), policies: createPolicyRegistry(), interval: 100 });
    cleanups.push(() => dash.close());
    const app = express();
    app.use(dash);
    const expressPort = await listen(createServer(app));
    const fastify = Fastify();
    const { fastifyDashboard } = await import('../src/index.js');
    await fastify.register(fastifyDashboard(dash));
    await fastify.listen({ port: 0, host: '127.0.0.1' });
    cleanups.push(() => fastify.close());
    const fastifyPort = (fastify.server.address() as { port: number }).port;
    for (const port of [expressPort, fastifyPort]) {
      for (const [name, raw] of attacks) {
        const { status } = await rawRequest(port, raw);
        expect(status, `${name} on ${port === expressPort ? 'Express' : 'Fastify'}`).toBeGreaterThanOrEqual(200);
        expect(status, `${name} on ${port === expressPort ? 'Express' : 'Fastify'}`).toBeLessThan(500);
      }
    }
  }, 30_000);
});

describe('dashboard: event stream clients that misbehave', () => {
  it('a page that never reads holds at most one snapshot in the server, however long it lags', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    // Snapshots of ~300 kB: 300 breakers with 1,000-character names.
    const breakers = Array.from({ length: 300 }, (_, i) => new FakeBreaker(`${i}-${'n'.repeat(1_000)}`, bus, policies));
    const dash = dashboard({ bus, policies, interval: 50 });
    cleanups.push(() => dash.close());
    const responses: ServerResponse[] = [];
    const port = await listen(
      createServer((req: IncomingMessage, res: ServerResponse) => {
        if (req.url?.endsWith('/events')) responses.push(res);
        dash(req, res);
      }),
    );
    const snapshotBytes = Buffer.byteLength(await (await fetch(`http://127.0.0.1:${port}/holdfast/snapshot`)).text());
    expect(snapshotBytes).toBeGreaterThan(300_000);
    // A client that sends the request and never reads a byte of the answer.
    const socket = connect({ port, host: '127.0.0.1' });
    sockets.push(socket);
    socket.pause();
    socket.write(get('/holdfast/events'));
    // 2 s of snapshots every 50 ms (12 MB sent, if it were all kept), state changes in between.
    let peak = 0;
    const deadline = Date.now() + 2_000;
    let n = 0;
    while (Date.now() < deadline) {
      const b = breakers[n++ % breakers.length] as FakeBreaker;
      if (b.state === 'open') b.close();
      else b.open();
      await sleep(10);
      for (const r of responses) peak = Math.max(peak, r.writableLength);
    }
    expect(responses).toHaveLength(1);
    expect(dash.clients).toBe(1);
    // The kernel's socket buffers take what they take; in the process, one snapshot and what
    // was being written with it at most.
    expect(peak).toBeLessThan(2 * snapshotBytes);
    socket.destroy();
    for (let i = 0; i < 100 && dash.clients > 0; i++) await sleep(10);
    expect(dash.clients).toBe(0);
  }, 20_000);

  it('100 pages open cost one snapshot per interval, not one per page', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    let built = 0;
    // Held to the end: the registry holds what it lists weakly, and a collected source leaves it.
    const counter = {
      snapshot: () => {
        built++;
        return { status: 'pass' };
      },
    };
    policies.register('counter', 'snapshots-built', counter);
    // The intervals are run by hand, so a loaded machine changes how long this takes, not what it counts.
    const clock = handClock();
    const interval = () => clock.pass(100);
    const dash = dashboard({ bus, policies, interval: 100, clock });
    cleanups.push(() => dash.close());
    const port = await listen(createServer(dash));
    const aborts = Array.from({ length: 100 }, () => new AbortController());
    cleanups.push(() => {
      for (const a of aborts) a.abort();
    });
    // Each page reads its whole stream and counts the snapshots it is sent.
    const received = aborts.map(() => 0);
    await Promise.all(
      aborts.map(async (a, i) => {
        const res = await fetch(`http://127.0.0.1:${port}/holdfast/events`, { signal: a.signal });
        countSnapshots(res, (n) => {
          received[i] = (received[i] ?? 0) + n;
        });
      }),
    );
    const everyPageHas = async (n: number) => {
      for (let i = 0; i < 1_000 && Math.min(...received) < n; i++) await sleep(10);
      expect(received).toEqual(aborts.map(() => n));
    };
    expect(dash.clients).toBe(100);
    // 100 pages opened within one interval: one snapshot built, and every page got it.
    await everyPageHas(1);
    expect(built).toBe(1);
    for (let round = 1; round <= 10; round++) {
      interval();
      await everyPageHas(1 + round);
    }
    // One snapshot per interval, written to all 100 pages.
    expect(built).toBe(11);
    expect(policies.snapshots()).toEqual([{ kind: 'counter', name: 'snapshots-built', snapshot: counter.snapshot() }]);
  }, 20_000);

  it('300 clients that hang up as they ask (destroy, half-close, reset) leave no stream behind', async () => {
    const dash = dashboard({ bus: createBus(), policies: createPolicyRegistry(), interval: 50 });
    cleanups.push(() => dash.close());
    const port = await listen(createServer(dash));
    for (let i = 0; i < 300; i++) {
      const socket = connect(port, '127.0.0.1');
      sockets.push(socket);
      socket.on('error', () => {});
      socket.write(get('/holdfast/events'));
      if (i % 3 === 0) socket.destroy();
      else if (i % 3 === 1) socket.end();
      else setTimeout(() => socket.resetAndDestroy(), 1);
    }
    await sleep(200);
    for (let i = 0; i < 200 && dash.clients > 0; i++) await sleep(10);
    expect(dash.clients).toBe(0);
  }, 20_000);

  it('a page that hangs up before an async middleware hands its request over leaves no stream behind', async () => {
    const bus = countingBus();
    const dash = dashboard({ bus, policies: createPolicyRegistry(), interval: 50 });
    cleanups.push(() => dash.close());
    const before = stateChangeEvents.map((t) => bus.listeners(t));
    // An auth check in front of the dashboard: the request reaches it only once the client has gone.
    let arrived = () => {};
    let handedOver = () => {};
    const asked = new Promise<void>((r) => {
      arrived = r;
    });
    const handled = new Promise<void>((r) => {
      handedOver = r;
    });
    const port = await listen(
      createServer((req, res) => {
        arrived();
        req.socket.once('close', () => {
          dash(req, res);
          handedOver();
        });
      }),
    );
    const socket = connect(port, '127.0.0.1');
    sockets.push(socket);
    socket.write(get('/holdfast/events'));
    await asked;
    socket.destroy();
    await handled;
    expect(dash.clients).toBe(0);
    expect(stateChangeEvents.map((t) => bus.listeners(t))).toEqual(before);
  });

  it('1,000 pages that connect and drop at once leave no stream and no bus listener behind', async () => {
    const bus = countingBus();
    const dash = dashboard({ bus, policies: createPolicyRegistry(), interval: 50 });
    cleanups.push(() => dash.close());
    const port = await listen(createServer(dash));
    const before = stateChangeEvents.map((t) => bus.listeners(t));
    for (let round = 0; round < 10; round++) {
      await Promise.all(
        Array.from({ length: 100 }, async (_, i) => {
          const abort = new AbortController();
          const res = await fetch(`http://127.0.0.1:${port}/holdfast/events`, { signal: abort.signal });
          // Half read their first snapshot, half hang up at once.
          if (i % 2 === 0) await res.body?.getReader().read();
          abort.abort();
        }),
      );
    }
    for (let i = 0; i < 200 && dash.clients > 0; i++) await sleep(10);
    expect(dash.clients).toBe(0);
    expect(stateChangeEvents.map((t) => bus.listeners(t))).toEqual(before);
  }, 30_000);
});
