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
 * options: Express's app.use() each, Fastify's register() each); GET /x answers 'ok', GET /boom
 * 500, GET /slow 'ok' after 50 ms. Its base URL.
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
    app.get('/boom', (_req, res) => void res.status(500).send('boom'));
    app.get('/slow', (_req, res) => void setTimeout(() => res.send('ok'), 50));
    return listen(app);
  }
  const app = Fastify({ forceCloseConnections: true });
  for (const m of mounts) await app.register(fastifyShedding, m as never);
  app.get('/x', async () => 'ok');
  app.get('/boom', async (_req, reply) => reply.code(500).send('boom'));
  app.get('/slow', async () => {
    await new Promise((r) => setTimeout(r, 50));
    return 'ok';
  });
  closers.push(() => app.close());
  return app.listen({ port: 0, host: '127.0.0.1' });
}

/** Listens with an Express app on a free loopback port, closed by {@link closeServers}: its base URL. */
export async function listen(app: express.Express): Promise<string> {
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

/** Has `close` run by {@link closeServers}, with the servers. */
export function closeLater(close: () => Promise<unknown>): void {
  closers.push(close);
}

/** Closes every server {@link serve} started (for afterEach). */
export async function closeServers(): Promise<void> {
  for (const close of closers.splice(0)) await close();
}
