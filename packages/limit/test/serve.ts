import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify from 'fastify';
import { loadShedding as expressShedding } from '../src/express.js';
import { loadShedding as fastifyShedding } from '../src/fastify.js';
import type { LoadSheddingOptions } from '../src/index.js';

/** The request as the tests' key and cost functions read it, on Express and Fastify alike. */
export type Req = { ip?: string; headers: Record<string, string | string[] | undefined> };

const closers: (() => Promise<unknown>)[] = [];

/**
 * Express or Fastify behind the load-shedding middleware (several, in turn, for an array of
 * options: Express's app.use() each, Fastify's register() each); GET /x answers 'ok'. Its base URL.
 */
export async function serve(
  kind: 'express' | 'fastify',
  options: LoadSheddingOptions<Req> | LoadSheddingOptions<Req>[],
): Promise<string> {
  const mounts = Array.isArray(options) ? options : [options];
  if (kind === 'express') {
    const app = express();
    for (const m of mounts) app.use(expressShedding(m as never));
    app.get('/x', (_req, res) => void res.send('ok'));
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    closers.push(
      () =>
        new Promise((r) => {
          server.close(r);
          server.closeAllConnections();
        }),
    );
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }
  const app = Fastify({ forceCloseConnections: true });
  for (const m of mounts) await app.register(fastifyShedding, m as never);
  app.get('/x', async () => 'ok');
  closers.push(() => app.close());
  return app.listen({ port: 0, host: '127.0.0.1' });
}

/** Has `close` run by {@link closeServers}, with the servers. */
export function closeLater(close: () => Promise<unknown>): void {
  closers.push(close);
}

/** Closes every server {@link serve} started (for afterEach). */
export async function closeServers(): Promise<void> {
  for (const close of closers.splice(0)) await close();
}
