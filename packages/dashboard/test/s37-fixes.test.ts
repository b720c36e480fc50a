/**
 * The fixes for review s37, past what its reproductions check: the choices made in fixing them.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBus, createPolicyRegistry, type HoldfastEvent, ManualClock } from '@holdfast/core';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { type DashboardSnapshot, dashboard, fastifyDashboard, healthHandler } from '../src/index.js';
import { FakeBreaker } from './fakes.js';

const servers: Server[] = [];
const cleanups: (() => void | Promise<void>)[] = [];
const held: object[] = [];
afterEach(async () => {
  held.length = 0;
  for (const c of cleanups.splice(0)) await c();
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function listen(server: Server): Promise<string> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Follows an event stream, keeping its text. */
async function follow(url: string): Promise<{ text: () => string }> {
  const abort = new AbortController();
  cleanups.push(() => abort.abort());
  const res = await fetch(url, { signal: abort.signal });
  let text = '';
  const reader = (res.body as ReadableStream<Uint8Array>).pipeThrough(new TextDecoderStream()).getReader();
  void (async () => {
    for (;;) {
      const next = await reader.read().catch(() => ({ done: true, value: undefined }));
      if (next.done) return;
      text += next.value;
    }
  })();
  return { text: () => text };
}

const count = (text: string, pattern: RegExp) => text.match(pattern)?.length ?? 0;

describe('the event stream: a heartbeat every 15 s from the one timer', () => {
  it.each([
    [1_000, 30, 2, 30],
    [7_000, 30, 2, 4],
    [60_000, 60, 4, 1],
  ])('interval %i ms, %i s on: %i heartbeats, %i snapshots past the first', async (interval, seconds, beats, snaps) => {
    const clock = new ManualClock(Date.now());
    const dash = dashboard({ bus: createBus(), policies: createPolicyRegistry(), interval, clock });
    cleanups.push(() => dash.close());
    const url = await listen(createServer(dash));
    const page = await follow(`${url}/holdfast/events`);
    while (!page.text().includes('event: snapshot')) await sleep(10);
    expect(clock.pending).toBe(1);
    for (let s = 0; s < seconds; s++) await clock.advance(1_000);
    await sleep(100);
    expect(count(page.text(), /^: heartbeat$/gm)).toBe(beats);
    expect(count(page.text(), /^event: snapshot$/gm)).toBe(1 + snaps);
    expect(clock.pending).toBe(1);
  });
});

describe('healthHandler(): methods', () => {
  it('answers HEAD with the status and headers alone, and 405s say nosniff', async () => {
    const url = await listen(createServer(healthHandler({ policies: createPolicyRegistry() })));
    const head = await fetch(url, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
    expect(head.headers.get('x-content-type-options')).toBe('nosniff');
    const post = await fetch(url, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(await post.text()).toBe('');
    expect(post.headers.get('referrer-policy')).toBe('no-referrer');
  });
});

describe('dashboard({ path }): a path no browser asks for as written', () => {
  it.each([
    ['/tableau-de-bord-é', '/tableau-de-bord-%C3%A9'],
    ['/ops"dash', '/ops%22dash'],
    ['/ops/../holdfast', '/holdfast'],
    ['/ops/./x', '/ops/x'],
    ['/ops\u0000x', '/ops%00x'],
    ['/ops{x}', '/ops%7Bx%7D'],
    ['/ops/%2E', '/ops/'],
  ])('refuses %j, naming path and what the browser asks instead', (path, asked) => {
    const make = () => dashboard({ bus: createBus(), policies: createPolicyRegistry(), path });
    expect(make).toThrow(/^dashboard: path would never match/);
    expect(make).toThrow(`asks for "${asked}" instead`);
  });

  it('serves a path written as a browser sends it (percent-encoded)', async () => {
    const dash = dashboard({ bus: createBus(), policies: createPolicyRegistry(), path: '/tableau-de-bord-%C3%A9' });
    cleanups.push(() => dash.close());
    const url = await listen(createServer(dash));
    expect((await fetch(new URL('/tableau-de-bord-é', url))).status).toBe(200);
    expect((await fetch(new URL('/tableau-de-bord-é/snapshot', url))).status).toBe(200);
  });
});

describe('fastifyDashboard() and a prefix', () => {
  it('serves a path under the prefix, as written in full (as with Express)', async () => {
    const dash = dashboard({ bus: createBus(), policies: createPolicyRegistry(), path: '/ops/holdfast' });
    cleanups.push(() => dash.close());
    const app = Fastify();
    cleanups.push(() => app.close());
    await app.register(fastifyDashboard(dash), { prefix: '/ops' });
    expect((await app.inject({ url: '/ops/holdfast' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/ops/holdfast/snapshot' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/ops/holdfast', method: 'POST' })).statusCode).toBe(405);
  });

  it('refuses a path not under the prefix, naming prefix and the path to give', async () => {
    const dash = dashboard({ bus: createBus(), policies: createPolicyRegistry(), path: '/holdfast' });
    cleanups.push(() => dash.close());
    const app = Fastify();
    cleanups.push(() => app.close());
    await expect(async () => {
      await app.register(fastifyDashboard(dash), { prefix: '/ops' });
      await app.ready();
    }).rejects.toThrow(
      /^fastifyDashboard: prefix does not hold the dashboard's path "\/holdfast".*dashboard\(\{ path: "\/ops\/holdfast" \}\)/,
    );
  });
});

describe('dashboard({ critical })', () => {
  it('must be a function, named in the error', () => {
    expect(() => dashboard({ bus: createBus(), policies: createPolicyRegistry(), critical: true as never })).toThrow(
      /^dashboard: critical /,
    );
  });
});

describe('a snapshot JSON cannot write whole', () => {
  it('is served in the parts it can write, with a check that says so: the page still renders it', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const breaker = new FakeBreaker('payments', bus, policies);
    held.push(breaker);
    breaker.state = 'open';
    const dash = dashboard({ bus, policies });
    cleanups.push(() => dash.close());
    const url = await listen(createServer(dash));
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    bus.emit({ type: 'chaos.inject', source: 'drill', time: Date.now(), kind: 'fault', detail: cyclic } as never);
    const s = (await (await fetch(`${url}/holdfast/snapshot`)).json()) as DashboardSnapshot & { error: string };
    expect(s.error).toBe('snapshot failed (TypeError)');
    expect(s.health.ready).toBe(false); // the open breaker, still seen
    expect(s.health.checks.map((c) => `${c.kind} ${c.name} ${c.status}`)).toEqual([
      'breaker payments fail',
      'dashboard snapshot warn',
    ]);
    expect(s.breakers.map((b) => b.state)).toEqual(['open']);
    expect(s.chaos).toEqual({ active: false, injected: [], toxics: [], drill: null });
    expect(s.limits.events).toEqual([]);
  });

  it('a bigint anywhere an event put it is written as a number, and not drawn as a latency', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const dash = dashboard({ bus, policies });
    cleanups.push(() => dash.close());
    const url = await listen(createServer(dash));
    bus.emit({ type: 'breaker.success', source: 'p', time: Date.now(), latency: 12n } as unknown as HoldfastEvent);
    bus.emit({ type: 'breaker.success', source: 'p', time: Date.now(), latency: 5 });
    bus.emit({ type: 'breaker.open', source: 'p', time: 7n } as unknown as HoldfastEvent);
    bus.emit({ type: 'chaos.inject', source: 'd', time: 9n, kind: 'fault', detail: 'x' } as unknown as HoldfastEvent);
    const s = (await (await fetch(`${url}/holdfast/snapshot`)).json()) as DashboardSnapshot & { error?: string };
    expect(s.error).toBeUndefined();
    expect(s.breakers).toMatchObject([{ name: 'p', state: 'open', recent: [5] }]);
    expect(s.chaos.injected).toMatchObject([{ source: 'd', last: 9 }]);
  });
});

describe('others: a header list as Node gives it', () => {
  it('hides the value after a credential header, and leaves the rest', async () => {
    const policies = createPolicyRegistry();
    const client = {
      snapshot: () => ({
        rawHeaders: ['Host', 'api.internal', 'X-Api-Key', 'k-hunter2', 'Cookie', 'sid=s-hunter2', 'Accept', '*/*'],
        // Not a header list: a URL that names a token is no header name.
        replicas: ['https://a.example/?token=t-hunter2', 'https://b.example/'],
      }),
    };
    held.push(client);
    policies.register('http-client', 'api', client);
    const dash = dashboard({ bus: createBus(), policies });
    cleanups.push(() => dash.close());
    const url = await listen(createServer(dash));
    const s = (await (await fetch(`${url}/holdfast/snapshot`)).json()) as DashboardSnapshot;
    expect(s.others[0]?.snapshot).toEqual({
      rawHeaders: ['Host', 'api.internal', 'X-Api-Key', '***', 'Cookie', '***', 'Accept', '*/*'],
      replicas: ['https://a.example/?token=***', 'https://b.example/'],
    });
  });
});
