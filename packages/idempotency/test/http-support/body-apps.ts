import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify, { type FastifyInstance } from 'fastify';
import { idempotency } from '../../src/express.js';
import { idempotency as fastifyIdempotency } from '../../src/fastify.js';
import { memoryStore } from '../../src/index.js';

// Apps for the body tests: the middleware on POST /orders with a handler that counts its runs
// and keeps the bodies it got. Each file closes what it opened with closeAll() after each test.

/** What to close after the test: servers, apps, clients. */
export const closers: (() => Promise<unknown>)[] = [];

/** Closes everything in `closers`, in order. */
export async function closeAll(): Promise<void> {
  for (const close of closers.splice(0)) await close();
}

/** Listens on a free loopback port; closed by closeAll(). */
export async function listenNode(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', resolve));
  closers.push(
    () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(resolve);
      }),
  );
  return (server.address() as AddressInfo).port;
}

/** An Express app: `before` middleware, then ours, then express.json, then a counting handler. */
export async function expressApp(
  before: express.RequestHandler[] = [],
  options: { maxRequestBytes?: number; header?: string; after?: express.RequestHandler[] } = {},
): Promise<{ port: number; calls: () => number; bodies: unknown[]; app: express.Express }> {
  const app = express();
  let calls = 0;
  const bodies: unknown[] = [];
  for (const mw of before) app.use(mw);
  app.use(
    idempotency({
      store: memoryStore(),
      scope: 'global',
      ...(options.maxRequestBytes === undefined ? {} : { maxRequestBytes: options.maxRequestBytes }),
      ...(options.header === undefined ? {} : { header: options.header }),
    }),
  );
  for (const mw of options.after ?? [express.json({ limit: '1mb' })]) app.use(mw);
  app.post('/orders', (req, res) => {
    bodies.push(req.body);
    res.status(201).json({ n: ++calls });
  });
  const port = await listenNode(createServer(app));
  return { port, calls: () => calls, bodies, app };
}

/** A Fastify app: `setup` first, then the plugin (`register` times), then a counting handler. */
export async function fastifyApp(
  setup?: (app: FastifyInstance) => unknown,
  options: { http2?: boolean; register?: number; header?: string } = {},
): Promise<{ port: number; calls: () => number; bodies: unknown[]; app: FastifyInstance }> {
  const app = (options.http2 ? Fastify({ http2: true }) : Fastify()) as FastifyInstance;
  await setup?.(app);
  for (let i = 0; i < (options.register ?? 1); i++) {
    await app.register(fastifyIdempotency, {
      store: memoryStore(),
      scope: 'global',
      ...(options.header === undefined ? {} : { header: options.header }),
    });
  }
  let calls = 0;
  const bodies: unknown[] = [];
  app.post('/orders', async (req, reply) => {
    bodies.push(req.body);
    return reply.code(201).send({ n: ++calls });
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  closers.push(() => app.close());
  return { port: (app.server.address() as AddressInfo).port, calls: () => calls, bodies, app };
}
