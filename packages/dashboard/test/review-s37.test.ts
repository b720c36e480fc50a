/**
 * Outside review (s37): the dashboard and /health attacked as a hostile client and a production
 * process would. Each test reproduces a bug and fails on the code as reviewed, unless it says it
 * is a guard to keep.
 */
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBus, createPolicyRegistry, type HoldfastEvent, ManualClock } from '@holdfast/core';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { type DashboardSnapshot, dashboard, fastifyDashboard, healthHandler } from '../src/index.js';
import { FakeBreaker } from './fakes.js';

const servers: Server[] = [];
const cleanups: (() => void | Promise<void>)[] = [];
/** What a test registered, held to its end: the registry holds what it lists weakly. */
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

/** Reads an event stream's raw text for up to `ms`, or until `enough(text)`. */
async function readStream(res: Response, ms: number, enough: (text: string) => boolean): Promise<string> {
  const reader = (res.body as ReadableStream<Uint8Array>).pipeThrough(new TextDecoderStream()).getReader();
  let text = '';
  const deadline = Date.now() + ms;
  while (Date.now() < deadline && !enough(text)) {
    const next = await Promise.race([reader.read(), sleep(deadline - Date.now()).then(() => undefined)]);
    if (next === undefined || next.done) break;
    text += next.value;
  }
  void reader.cancel().catch(() => {});
  return text;
}

describe('review s37: HTTP answers', () => {
  it('404, 405 and 503 answers say nosniff and no-referrer too ("every response says" them)', async () => {
    const dash = dashboard({ bus: createBus(), policies: createPolicyRegistry(), maxClients: 1 });
    cleanups.push(() => dash.close());
    const url = await listen(createServer(dash));
    const abort = new AbortController();
    cleanups.push(() => abort.abort());
    const first = await fetch(`${url}/holdfast/events`, { signal: abort.signal });
    expect(first.status).toBe(200);
    const answers = [
      await fetch(`${url}/holdfast/nope`), // 404
      await fetch(`${url}/holdfast`, { method: 'POST' }), // 405
      await fetch(`${url}/holdfast/events`), // 503, maxClients
    ];
    dash.close();
    answers.push(await fetch(`${url}/holdfast/snapshot`)); // 503, closed
    expect(answers.map((r) => r.status)).toEqual([404, 405, 503, 503]);
    for (const r of answers) {
      expect.soft(r.headers.get('x-content-type-options'), `${r.status}`).toBe('nosniff');
      expect.soft(r.headers.get('referrer-policy'), `${r.status}`).toBe('no-referrer');
    }
  });

  it('healthHandler() answers POST, PUT and DELETE with 405 and Allow: GET, HEAD, not with the report', async () => {
    const policies = createPolicyRegistry();
    const url = await listen(createServer(healthHandler({ policies })));
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      const res = await fetch(`${url}/health`, { method, body: method === 'DELETE' ? undefined : 'x' });
      expect.soft(res.status, method).toBe(405);
      expect.soft(res.headers.get('allow'), method).toBe('GET, HEAD');
    }
  });

  it('a path option the server can never match (non-ASCII, a quote, a dot segment, a NUL) is refused, naming path', async () => {
    // The browser sends /%C3%A9, /a%22b, /b: the page answers 404 for good, with no word why.
    for (const path of ['/tableau-de-bord-é', '/ops"dash', '/ops/../holdfast', '/ops\u0000x']) {
      let made: ReturnType<typeof dashboard> | undefined;
      let error: unknown;
      try {
        made = dashboard({ bus: createBus(), policies: createPolicyRegistry(), path });
      } catch (e) {
        error = e;
      }
      if (made === undefined) {
        expect(String(error)).toMatch(/path/);
        continue;
      }
      const dash = made;
      cleanups.push(() => dash.close());
      const url = await listen(createServer(dash));
      // What a browser asks when told to open that path.
      const asked = new URL(path, url);
      const res = await fetch(asked);
      expect.soft(res.status, `path ${JSON.stringify(path)} asked as ${asked.pathname}`).toBe(200);
    }
  });

  it('fastifyDashboard() registered with a prefix serves the page, or refuses to register (it 404s every route)', async () => {
    const dash = dashboard({ bus: createBus(), policies: createPolicyRegistry(), path: '/holdfast' });
    cleanups.push(() => dash.close());
    const app = Fastify();
    cleanups.push(() => app.close());
    let refused = false;
    try {
      await app.register(fastifyDashboard(dash), { prefix: '/ops' });
      await app.ready();
    } catch {
      refused = true;
    }
    if (refused) return;
    const statuses = [
      (await app.inject({ url: '/ops/holdfast' })).statusCode,
      (await app.inject({ url: '/holdfast' })).statusCode,
    ];
    // Either mount would do; neither answers.
    expect(statuses).toContain(200);
  });
});

describe('review s37: secrets', () => {
  it('/health does not show an endpoint password through a split-brain reason', async () => {
    const policies = createPolicyRegistry();
    const set = {
      snapshot: () => ({
        mode: 'active-passive',
        active: null,
        panic: false,
        splitBrain: {
          endpoints: ['postgres://app:hunter2@db-a/orders', 'postgres://app:hunter2@db-b/orders'],
          since: 1,
        },
        endpoints: [
          { name: 'postgres://app:hunter2@db-a/orders', available: true },
          { name: 'postgres://app:hunter2@db-b/orders', available: true },
        ],
      }),
    };
    held.push(set);
    policies.register('failover', 'orders-db', set);
    const url = await listen(createServer(healthHandler({ policies })));
    const body = await (await fetch(url)).text();
    expect(body).toContain('split brain');
    expect(body).not.toContain('hunter2');
  });

  it('others: a key that is a DSN, a scheme-less URL with a token, or a keyword connection string shows no secret', async () => {
    const policies = createPolicyRegistry();
    const pool = {
      snapshot: () => ({
        // Per target, as pools and clients key their stats: a value would be hidden, a key is not.
        byTarget: {
          'app:hunter2@db.internal:5432/orders': { open: 3 },
          '/callback?access_token=tok-hunter2': { open: 1 },
          'host=db user=app password=hunter2': { open: 2 },
        },
      }),
    };
    held.push(pool);
    policies.register('pool', 'db', pool);
    const dash = dashboard({ bus: createBus(), policies });
    cleanups.push(() => dash.close());
    const url = await listen(createServer(dash));
    const text = await (await fetch(`${url}/holdfast/snapshot`)).text();
    expect(text).toContain('db.internal');
    expect(text).not.toContain('hunter2');
  });

  it('others: a Basic authorization value (as in rawHeaders) is hidden like a Bearer one', async () => {
    const policies = createPolicyRegistry();
    const client = {
      snapshot: () => ({
        lastRequest: {
          rawHeaders: ['Host', 'api.internal', 'Authorization', 'Basic YXBwOmh1bnRlcjI='],
          other: ['Authorization', 'Bearer tok-hunter2'],
        },
      }),
    };
    held.push(client);
    policies.register('http-client', 'api', client);
    const dash = dashboard({ bus: createBus(), policies });
    cleanups.push(() => dash.close());
    const url = await listen(createServer(dash));
    const text = await (await fetch(`${url}/holdfast/snapshot`)).text();
    expect(text).toContain('api.internal');
    expect(text).not.toContain('tok-hunter2'); // holds: Bearer is hidden
    expect(text).not.toContain('YXBwOmh1bnRlcjI='); // base64 of app:hunter2
  });
});

describe('review s37: what registered snapshots and events hold', () => {
  it('an async snapshot() that rejects does not crash the process serving /health (unhandled rejection)', async () => {
    const core = new URL('../../core/dist/index.js', import.meta.url).href;
    const dash = new URL('../dist/index.js', import.meta.url).href;
    const script = `
      import { createServer } from 'node:http';
      import { registerSnapshot } from ${JSON.stringify(core)};
      import { healthHandler } from ${JSON.stringify(dash)};
      const pool = { snapshot: async () => { const e = new Error('connect postgres://app:hunter2@db'); e.code = 'ECONNREFUSED'; throw e; } };
      registerSnapshot('pool', 'db', pool);
      const server = createServer(healthHandler()).listen(0, '127.0.0.1', async () => {
        const url = 'http://127.0.0.1:' + server.address().port + '/health';
        for (let i = 0; i < 3; i++) { const r = await fetch(url); await r.text(); console.log('status ' + r.status); await new Promise((r) => setTimeout(r, 30)); }
        console.log('survived');
        server.close();
      });`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve(null);
      }, 8_000);
      child.on('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    expect.soft(err, 'its message, password included, went to stderr').not.toContain('hunter2');
    expect(out).toContain('survived');
    expect(code).toBe(0);
  }, 10_000);

  it('an async snapshot() whose promise says healthy: false is not read as a pass', async () => {
    const policies = createPolicyRegistry();
    // A never-settling one, and one that resolves unhealthy: both are listed as "pass, ok".
    const queue = { snapshot: async () => ({ healthy: false }) };
    const stuck = { snapshot: () => new Promise(() => {}) };
    held.push(queue, stuck);
    policies.register('queue', 'jobs', queue as never);
    policies.register('queue', 'stuck', stuck as never);
    const url = await listen(createServer(healthHandler({ policies })));
    const report = (await (await fetch(url)).json()) as { checks: { name: string; status: string }[] };
    for (const c of report.checks) expect.soft(c.status, c.name).not.toBe('pass');
  });

  it('one breaker event with a BigInt latency (process.hrtime.bigint()) does not blank the whole snapshot', async () => {
    const bus = createBus({ onListenerError: () => {} });
    const policies = createPolicyRegistry();
    const breaker = new FakeBreaker('payments', bus, policies);
    held.push(breaker);
    const dash = dashboard({ bus, policies });
    cleanups.push(() => dash.close());
    const url = await listen(createServer(dash));
    const before = (await (await fetch(`${url}/holdfast/snapshot`)).json()) as DashboardSnapshot;
    expect(before.breakers).toHaveLength(1);
    // A user's own policy timing its calls with hrtime.bigint().
    bus.emit({
      type: 'breaker.success',
      source: 'payments',
      time: Date.now(),
      latency: 12n,
    } as unknown as HoldfastEvent);
    const after = (await (await fetch(`${url}/holdfast/snapshot`)).json()) as Partial<DashboardSnapshot>;
    // Actual: { time, error: 'snapshot failed (TypeError)' } -- no health, no breakers; the page's render() throws on it.
    expect(after.health?.ready).toBe(true);
    expect(after.breakers?.map((b) => b.name)).toContain('payments');
  });
});

describe('review s37: what the page shows', () => {
  it('two breakers registered under one name (the registry allows it) are both listed: the open one is not hidden', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const a = new FakeBreaker('payments', bus, policies);
    const b = new FakeBreaker('payments', bus, policies);
    held.push(a, b);
    a.state = 'open';
    const dash = dashboard({ bus, policies });
    cleanups.push(() => dash.close());
    const url = await listen(createServer(dash));
    const s = (await (await fetch(`${url}/holdfast/snapshot`)).json()) as DashboardSnapshot;
    expect(s.health.ready).toBe(false); // health sees the open one
    expect(s.breakers.map((r) => r.state)).toContain('open'); // the page lists only the closed one
  });

  it('a disposed breaker that shares its name with a failover set leaves the page (it stays "open" forever)', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const dash = dashboard({ bus, policies });
    cleanups.push(() => dash.close());
    const breaker = new FakeBreaker('orders-db', bus, policies);
    const set = { snapshot: () => ({ endpoints: [{ name: 'primary', available: true }] }) };
    held.push(breaker, set);
    policies.register('failover', 'orders-db', set);
    breaker.open();
    breaker.dispose();
    const url = await listen(createServer(dash));
    const s = (await (await fetch(`${url}/holdfast/snapshot`)).json()) as DashboardSnapshot;
    expect(s.health.ready).toBe(true); // health: no breaker
    expect(s.breakers).toEqual([]); // page: breaker orders-db, Open
  });

  it('the page says ready when /health does: a healthHandler({ critical }) and the dashboard agree', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const shared = new FakeBreaker('shared-downstream', bus, policies);
    held.push(shared);
    shared.state = 'open';
    // As the README advises: a shared downstream's breaker is not critical.
    const critical = (c: { kind: string }) => c.kind !== 'breaker';
    const health = healthHandler({ policies, critical });
    let dash: ReturnType<typeof dashboard>;
    try {
      dash = dashboard({ bus, policies, critical } as never);
    } catch {
      // No way to tell the page: it says "Not ready" while the load balancer is told ready.
      dash = dashboard({ bus, policies });
    }
    cleanups.push(() => dash.close());
    const url = await listen(createServer((req, res) => (req.url === '/health' ? health(req, res) : dash(req, res))));
    const ready = (await fetch(`${url}/health`)).status === 200;
    const page = (await (await fetch(`${url}/holdfast/snapshot`)).json()) as DashboardSnapshot;
    expect(ready).toBe(true);
    expect(page.health.ready).toBe(ready);
  });
});

describe('review s37: the event stream', () => {
  it('sends a comment line every 15 s, as documented, also with interval 60000 (proxies cut idle streams at 30-60 s)', async () => {
    const clock = new ManualClock(Date.now());
    const dash = dashboard({ bus: createBus(), policies: createPolicyRegistry(), interval: 60_000, clock });
    cleanups.push(() => dash.close());
    const url = await listen(createServer(dash));
    const abort = new AbortController();
    cleanups.push(() => abort.abort());
    const res = await fetch(`${url}/holdfast/events`, { signal: abort.signal });
    const first = readStream(res, 3_000, (t) => /^:/m.test(t));
    await sleep(100);
    await clock.advance(15_000);
    await sleep(100);
    await clock.advance(15_000);
    const text = await first;
    expect(text).toContain('event: snapshot');
    // 30 s of silence: nothing but the first snapshot.
    expect(text).toMatch(/^:/m);
  });
});
