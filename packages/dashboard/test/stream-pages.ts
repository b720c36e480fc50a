/**
 * Event-stream pages for tests, on a dashboard over thousands of breakers with long names: pages
 * that never read, pages that read, and what the server has left unsent to each. Call
 * {@link streamPages} at the top level of a test file: it registers the afterEach that lets
 * every page, server and dashboard of a test go.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { type Bus, createBus, createPolicyRegistry, type PolicyRegistry } from '@holdfast/core';
import { afterEach } from 'vitest';
import { type DashboardOptions, type DashboardSnapshot, dashboard } from '../src/index.js';
import { countSnapshots, FakeBreaker } from './fakes.js';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const until = async (ok: () => boolean, what: string) => {
  for (let i = 0; i < 1_000 && !ok(); i++) await sleep(10);
  if (!ok()) throw new Error(`timed out waiting for ${what}`);
};

/** What the server has left unsent to each page (0 once it is gone). */
export const unsent = (responses: ServerResponse[]) => responses.map((r) => (r.destroyed ? 0 : r.writableLength));

export function streamPages() {
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

  /** A dashboard over `breakers` breakers with long names, on a server that keeps every /events response. */
  async function serve(breakers: number, options: DashboardOptions = {}) {
    const bus: Bus = createBus();
    const policies: PolicyRegistry = createPolicyRegistry();
    const made: FakeBreaker[] = [];
    for (let i = 0; i < breakers; i++) made.push(new FakeBreaker(`breaker-${i}-${'n'.repeat(100)}`, bus, policies));
    held.push(made);
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
    return { dash, port, responses, snapshot, breakers: made };
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

  return { serve, stuckPage, readingPage };
}
