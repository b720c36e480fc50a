/**
 * Hostile review of @holdfast/limit at its edges, against real HTTP servers: what a user's
 * predicate, a client's key or a request's shape does to the load-shedding middleware.
 */
import type { AddressInfo } from 'node:net';
import { adaptiveConcurrency } from '@holdfast/limit';
import { loadShedding as expressShedding } from '@holdfast/limit/express';
import { loadShedding as fastifyShedding } from '@holdfast/limit/fastify';
import express from 'express';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((close) => close()));
});

/** An app behind the middleware: GET /boom answers 500, GET /ok 200. Resolves to its base URL. */
const apps = {
  async express(options: object): Promise<string> {
    const app = express();
    app.use(expressShedding(options as never));
    app.get('/boom', (_req, res) => void res.status(500).json({ error: 'boom' }));
    app.get('/ok', (_req, res) => void res.json({ ok: true }));
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    closers.push(
      () =>
        new Promise((r) => {
          server.close(() => r());
          server.closeAllConnections();
        }),
    );
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  },
  async fastify(options: object): Promise<string> {
    const app = Fastify({ forceCloseConnections: true });
    await app.register(fastifyShedding, options as never);
    app.get('/boom', async (_req, reply) => reply.code(500).send({ error: 'boom' }));
    app.get('/ok', async () => ({ ok: true }));
    await app.listen({ port: 0, host: '127.0.0.1' });
    closers.push(() => app.close());
    return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  },
};

describe.each(['express', 'fastify'] as const)('load shedding on %s, hostile review', (framework) => {
  it('an isDrop that throws on a 5xx (written for an HTTP client: err.response.status) keeps no place', async () => {
    const limiter = adaptiveConcurrency({
      algorithm: 'aimd',
      initialLimit: 4,
      minLimit: 4,
      policies: false,
      isDrop: (e) => (e as { response: { status: number } }).response.status >= 500,
    });
    const url = await apps[framework]({ policy: limiter });
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) statuses.push((await fetch(`${url}/boom`)).status);
    const after: number[] = [];
    for (let i = 0; i < 10; i++) after.push((await fetch(`${url}/ok`)).status);
    // Before: each 500 kept its place (isDrop's TypeError was lost in the middleware): after 4,
    // every request, /ok too, got 503 for good.
    expect(statuses).toEqual(Array(10).fill(500));
    expect(after).toEqual(Array(10).fill(200));
    expect(limiter.snapshot()).toMatchObject({ inFlight: 0, samples: 20, rejected: 0 });
  });
});
