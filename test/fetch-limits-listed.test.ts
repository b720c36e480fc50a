import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBus, healthReport } from '@holdfast/core';
import { type DashboardSnapshot, dashboard } from '@holdfast/dashboard';
import { resilientFetch } from '@holdfast/fetch';
import { afterEach, describe, expect, it } from 'vitest';

// Issue 17: the hedge and the per-host limiters resilientFetch makes are listed like every other
// policy (healthReport(), the dashboard), named after the client and the host, and unlisted
// when evicted or disposed.

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function serve(handler: Parameters<typeof createServer>[1]): Promise<{ url: string; host: string }> {
  const server: Server = createServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, host: `127.0.0.1:${port}` };
}

const kinds = new Set(['hedge', 'bulkhead', 'concurrency']);
/** This client's hedge and limiters in healthReport() (its breakers and budget are listed too). */
const ours = (name: string) => healthReport().checks.filter((c) => kinds.has(c.kind) && c.name.startsWith(`${name}.`));

describe('resilientFetch: its hedge and per-host limiters are listed', () => {
  it('in healthReport() and the dashboard, by client and host; at most maxHosts; gone after dispose()', async () => {
    const hosts = await Promise.all(['a', 'b', 'c'].map((body) => serve((_req, res) => res.end(body))));
    const bus = createBus();
    const name = `orders-client-${process.pid}`;
    const http = resilientFetch({
      name,
      bus,
      hedge: { delay: 1_000 },
      concurrency: { bulkhead: { maxConcurrent: 4 }, maxHosts: 2 },
    });
    const dash = dashboard({ bus, path: '/ops' });
    cleanups.push(() => dash.close());
    const page = await serve(dash);
    const limits = async () => ((await (await fetch(`${page.url}/ops/snapshot`)).json()) as DashboardSnapshot).limits;
    const [a, b, c] = hosts as [(typeof hosts)[number], (typeof hosts)[number], (typeof hosts)[number]];

    expect(await (await http(`${a.url}/x`)).text()).toBe('a');
    expect(await (await http(`${b.url}/x`)).text()).toBe('b');
    expect(ours(name).map((c) => [c.kind, c.name, c.status])).toEqual([
      ['hedge', `${name}.hedge`, 'pass'],
      ['bulkhead', `${name}.concurrency.${a.host}`, 'pass'],
      ['bulkhead', `${name}.concurrency.${b.host}`, 'pass'],
    ]);
    let shown = await limits();
    expect(shown.hedges.filter((h) => h.name === `${name}.hedge`)).toEqual([
      expect.objectContaining({ calls: 2, hedges: 0 }),
    ]);
    expect(shown.bulkheads.filter((r) => r.name.startsWith(name)).map((r) => [r.name, r.maxConcurrent])).toEqual([
      [`${name}.concurrency.${a.host}`, 4],
      [`${name}.concurrency.${b.host}`, 4],
    ]);

    // A third host evicts the least recently used idle limiter, which leaves the lists too.
    expect(await (await http(`${c.url}/x`)).text()).toBe('c');
    expect(ours(name).map((check) => check.name)).toEqual([
      `${name}.hedge`,
      `${name}.concurrency.${b.host}`,
      `${name}.concurrency.${c.host}`,
    ]);

    http.dispose();
    expect(ours(name)).toEqual([]);
    shown = await limits();
    expect(shown.hedges.filter((h) => h.name.startsWith(name))).toEqual([]);
    expect(shown.bulkheads.filter((r) => r.name.startsWith(name))).toEqual([]);
  });

  it('an adaptive limiter per host is listed as a concurrency limiter, and many hosts leave at most maxHosts', async () => {
    const hosts = await Promise.all(Array.from({ length: 6 }, () => serve((_req, res) => res.end('ok'))));
    const name = `adaptive-client-${process.pid}`;
    const http = resilientFetch({
      name,
      bus: createBus(),
      concurrency: { adaptive: { algorithm: 'aimd', initialLimit: 5 }, maxHosts: 3 },
    });
    for (const h of hosts) expect(await (await http(`${h.url}/`)).text()).toBe('ok');
    const listed = ours(name);
    expect(listed.map((c) => [c.kind, c.name])).toEqual(
      hosts.slice(3).map((h) => ['concurrency', `${name}.concurrency.${h.host}`]),
    );
    http.dispose();
    expect(ours(name)).toEqual([]);
  });
});
