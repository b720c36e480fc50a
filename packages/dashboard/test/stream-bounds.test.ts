/**
 * The event stream against pages that never read (a stuck tab, a slow proxy, an attacker holding
 * connections open) on a registry of thousands of breakers: what the server keeps for them is
 * bounded, they are dropped and counted, and past `maxClients` more are refused with 503.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { createBus, createPolicyRegistry, HoldfastConfigError, type PolicyRegistry } from '@holdfast/core';
import { afterEach, describe, expect, it } from 'vitest';
import { recordWarnings, tick } from '../../../test/support/warnings.js';
import { type DashboardOptions, type DashboardSnapshot, dashboard } from '../src/index.js';
import { countSnapshots, FakeBreaker, handClock } from './fakes.js';

const warnings = recordWarnings();
const servers: Server[] = [];
const sockets: Socket[] = [];
const cleanups: (() => void)[] = [];
/** What a test registered, held to its end: the registry holds what it lists weakly. */
const held: object[] = [];
afterEach(async () => {
  held.length = 0;
  for (const s of sockets.splice(0)) s.destroy();
  for (const c of cleanups.splice(0)) c();
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const until = async (ok: () => boolean, what: string) => {
  for (let i = 0; i < 1_000 && !ok(); i++) await sleep(10);
  if (!ok()) throw new Error(`timed out waiting for ${what}`);
};

/** A dashboard over `breakers` breakers with long names, on a server that keeps every /events response. */
async function serve(breakers: number, options: DashboardOptions = {}) {
  const bus = createBus();
  const policies: PolicyRegistry = createPolicyRegistry();
  for (let i = 0; i < breakers; i++) held.push(new FakeBreaker(`breaker-${i}-${'n'.repeat(100)}`, bus, policies));
  const dash = dashboard({ bus, policies, ...options });
  cleanups.push(() => dash.close());
  const responses: ServerResponse[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.url?.endsWith('/events')) responses.push(res);
    dash(req, res);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const snapshot = async () =>
    (await (await fetch(`http://127.0.0.1:${port}/holdfast/snapshot`)).json()) as DashboardSnapshot;
  return { dash, port, responses, snapshot };
}

/** A page that asks for the event stream and never reads a byte of it. */
function stuckPage(port: number): Socket {
  const socket = connect({ port, host: '127.0.0.1' });
  sockets.push(socket);
  socket.on('error', () => {});
  socket.pause();
  socket.write('GET /holdfast/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  return socket;
}

/** A page that reads its stream and counts the snapshots in it. */
async function readingPage(port: number): Promise<{ snapshots: number }> {
  const abort = new AbortController();
  cleanups.push(() => abort.abort());
  const res = await fetch(`http://127.0.0.1:${port}/holdfast/events`, { signal: abort.signal });
  const page = { snapshots: 0 };
  countSnapshots(res, (n) => {
    page.snapshots += n;
  });
  return page;
}

const unsent = (responses: ServerResponse[]) => responses.map((r) => (r.destroyed ? 0 : r.writableLength));

describe('dashboard: pages that never read', () => {
  it('40 of them on 2,000 breakers share one copy of the snapshot, and are dropped once they have taken nothing for 30 s', async () => {
    const clock = handClock();
    const { dash, port, responses, snapshot } = await serve(2_000, { clock, interval: 1_000 });
    const snapshotBytes = Buffer.byteLength(JSON.stringify(await snapshot()));
    // Under maxBufferedBytes (1 MiB): a page that does not read is dropped for taking nothing.
    expect(snapshotBytes).toBeGreaterThan(800_000);
    expect(snapshotBytes).toBeLessThan(2 ** 20);
    const reader = await readingPage(port);
    await until(() => reader.snapshots >= 1, 'the reading page');
    const readerResponse = responses[0] as ServerResponse;
    // Time passes by hand, faster than the real one: the page that reads is given the real time it takes.
    const pass = async () => {
      await until(() => readerResponse.writableLength === 0, 'the reading page to catch up');
      clock.pass(1_000);
      await sleep(20);
    };
    const before = process.memoryUsage().arrayBuffers;
    for (let i = 0; i < 40; i++) stuckPage(port);
    await until(() => dash.clients === 41, '41 pages');
    // The kernel's buffers take the first snapshots; then what is unsent stays in the server.
    let passed = 0;
    while (passed < 5 && unsent(responses).filter((n) => n > 0).length < 40) {
      await pass();
      passed++;
    }
    expect(unsent(responses).filter((n) => n > 0)).toHaveLength(40);
    // Each stuck page has a snapshot unsent; the server holds one copy of it, not one per page.
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(8 * snapshotBytes);
    for (; passed < 29; passed++) await pass();
    expect(dash.clients).toBe(41);
    for (; passed < 35; passed++) await pass();
    await until(() => dash.clients <= 1, 'the stuck pages dropped');
    expect(dash.clients).toBe(1);
    expect(unsent(responses)).toEqual(responses.map(() => 0));
    // The page that reads was never dropped, and got a snapshot per interval (but those it was writing).
    expect(reader.snapshots).toBeGreaterThan(10);
    expect((await snapshot()).stream).toEqual({ clients: 1, dropped: 40, refused: 0 });
    await tick();
    const told = warnings.filter((w) => w.code === 'HOLDFAST_DASHBOARD_SLOW_PAGE');
    expect(told).toHaveLength(1);
    expect(told[0]?.message).toMatch(/took nothing for 30 s/);
  }, 30_000);

  it('a page whose unsent bytes pass maxBufferedBytes is dropped at the next event due to it', async () => {
    const clock = handClock();
    const { dash, port, responses, snapshot } = await serve(3_000, {
      clock,
      interval: 1_000,
      maxBufferedBytes: 64 * 1024,
    });
    stuckPage(port);
    await until(() => dash.clients === 1, 'the page');
    // The kernel's buffers take the first snapshots; then the page is dropped at the next one
    // due, not after 30 s.
    let passed = 0;
    while (dash.clients > 0 && passed < 10) {
      clock.pass(1_000);
      passed++;
      await sleep(50);
    }
    expect(dash.clients).toBe(0);
    expect(passed).toBeLessThan(10);
    expect(responses[0]?.destroyed).toBe(true);
    expect((await snapshot()).stream).toEqual({ clients: 0, dropped: 1, refused: 0 });
    await tick();
    expect(warnings.find((w) => w.code === 'HOLDFAST_DASHBOARD_SLOW_PAGE')?.message).toMatch(
      /bytes unsent, past maxBufferedBytes \(65536\)/,
    );
  }, 20_000);

  it('the last page dropped by the interval itself: the next page is fed by one timer, not two', async () => {
    const clock = handClock();
    const { dash, port, responses } = await serve(3_000, { clock, interval: 1_000, maxBufferedBytes: 64 * 1024 });
    stuckPage(port);
    await until(() => dash.clients === 1, 'the page');
    for (let passed = 0; dash.clients > 0 && passed < 10; passed++) {
      clock.pass(1_000);
      await sleep(50);
    }
    expect(dash.clients).toBe(0);
    expect(responses[0]?.destroyed).toBe(true);
    const reader = await readingPage(port);
    await until(() => reader.snapshots >= 1, 'the next page');
    // A second timer left by the interval that dropped the last page ran beside the new one for good.
    expect(clock.pending()).toBe(1);
  }, 20_000);

  it('past maxClients (default 100) a page is refused with 503 and Retry-After, and counted', async () => {
    const { dash, port, snapshot } = await serve(10);
    const pages = Array.from({ length: 100 }, () => stuckPage(port));
    await until(() => dash.clients === 100, '100 pages');
    const refused = await fetch(`http://127.0.0.1:${port}/holdfast/events`);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(await refused.json()).toEqual({ error: 'too many pages follow the dashboard (maxClients 100)' });
    expect(dash.clients).toBe(100);
    expect((await snapshot()).stream).toEqual({ clients: 100, dropped: 0, refused: 1 });
    await tick();
    expect(warnings.filter((w) => w.code === 'HOLDFAST_DASHBOARD_FULL')).toHaveLength(1);
    // One leaves: the next page is taken.
    pages[0]?.destroy();
    await until(() => dash.clients === 99, 'a page gone');
    const taken = stuckPage(port);
    await until(() => dash.clients === 100, 'the next page');
    taken.destroy();
  }, 20_000);

  it('maxClients and maxBufferedBytes are checked: a bad value names the option', () => {
    const bad: [DashboardOptions, RegExp][] = [
      [{ maxClients: 0 }, /^dashboard: maxClients /],
      [{ maxClients: 1.5 }, /^dashboard: maxClients /],
      [{ maxClients: Number.NaN }, /^dashboard: maxClients /],
      [{ maxClients: '5' as never }, /^dashboard: maxClients /],
      [{ maxBufferedBytes: 1_000 }, /^dashboard: maxBufferedBytes /],
      [{ maxBufferedBytes: Number.POSITIVE_INFINITY }, /^dashboard: maxBufferedBytes /],
      [{ maxBufferedBytes: -1 }, /^dashboard: maxBufferedBytes /],
    ];
    expect(
      dashboard({ bus: createBus(), policies: createPolicyRegistry(), maxClients: 1, maxBufferedBytes: 65_536 }).path,
    ).toBe('/holdfast');
    for (const [options, message] of bad) {
      expect(() => dashboard({ bus: createBus(), policies: createPolicyRegistry(), ...options })).toThrow(
        HoldfastConfigError,
      );
      expect(() => dashboard({ bus: createBus(), policies: createPolicyRegistry(), ...options })).toThrow(message);
    }
  });
});
