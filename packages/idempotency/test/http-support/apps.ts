import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import express from 'express';
import Fastify, { type FastifyInstance } from 'fastify';
import { captureRawBody, idempotency as expressIdempotency } from '../../src/express.js';
import { idempotency as fastifyIdempotency } from '../../src/fastify.js';
import type { HttpIdempotencyOptions } from '../../src/http/index.js';
import { newKey, type Sent, send } from './support.js';

/** Options the test apps pass to the middleware; `scope` reads the caller set by the fake auth. */
export type TestOptions = Omit<HttpIdempotencyOptions<unknown>, 'scope'> & { scoped?: boolean };

/** A gate a handler waits on, opened by the test. */
export class Gate {
  #open!: () => void;
  readonly opened = new Promise<void>((resolve) => {
    this.#open = resolve;
  });
  entered = 0;
  open(): void {
    this.#open();
  }
}

/** A running app: its URL, how often each route's handler ran, and the gate `/slow` waits on. */
export interface TestApp {
  readonly url: string;
  readonly calls: Map<string, number>;
  gate: Gate;
  close(): Promise<void>;
}

/** The binary body `/stream` sends, in chunks: bytes that are not valid UTF-8 included. */
export const streamChunks = [
  Buffer.from('chunk one\n'),
  Buffer.from([0x00, 0xff, 0xfe, 0x80, 0x0a]),
  Buffer.from('chunk three, the last\n'),
];

export const bigBody = 'x'.repeat(4096);

/** What every route's handler does, whatever the framework. */
function count(app: { calls: Map<string, number> }, route: string): number {
  const n = (app.calls.get(route) ?? 0) + 1;
  app.calls.set(route, n);
  return n;
}

function orderHeaders(n: number): Record<string, string> {
  return {
    location: `/orders/${n}`,
    etag: `"order-${n}"`,
    'cache-control': 'private, max-age=60',
    link: '</orders>; rel="collection"',
    'set-cookie': `session=secret-${n}; HttpOnly`,
    'www-authenticate': 'Bearer realm="orders"',
    'x-request-n': String(n),
  };
}

/** The account the fake authentication found (the `x-account` header), for `scope`. */
const accountOf = (req: { headers: Record<string, unknown> }) => req.headers['x-account'] as string | undefined;

export interface Framework {
  readonly name: 'express' | 'fastify';
  start(options: TestOptions): Promise<TestApp>;
}

export const expressFramework: Framework = {
  name: 'express',
  async start(options) {
    const { scoped, ...rest } = options;
    const state = { calls: new Map<string, number>(), gate: new Gate() };
    const app = express();
    app.use(express.json({ verify: captureRawBody }), express.text({ verify: captureRawBody }));
    app.use(expressIdempotency({ ...rest, scope: scoped ? accountOf : 'global' }));
    const orders = (req: express.Request, res: express.Response) => {
      const n = count(state, 'orders');
      res.status(201).set(orderHeaders(n)).json({ n, method: req.method, body: req.body });
    };
    app.post('/orders', orders);
    app.patch('/orders', orders);
    app.put('/orders', orders);
    app.get('/orders', orders);
    app.delete('/orders', orders);
    app.post('/text', (req, res) => {
      res.type('text/plain').send(`${count(state, 'text')}:${req.body}`);
    });
    app.post('/slow', async (_req, res) => {
      const n = count(state, 'slow');
      state.gate.entered++;
      await state.gate.opened;
      res.json({ n });
    });
    app.post('/stream', (_req, res) => {
      count(state, 'stream');
      res.status(200).type('application/octet-stream');
      const [a, b, c] = streamChunks;
      res.write(a);
      setTimeout(() => {
        res.write(b);
        setTimeout(() => res.end(c), 5);
      }, 5);
    });
    app.post('/gated-stream', async (_req, res) => {
      count(state, 'gated-stream');
      res.status(200).type('application/octet-stream');
      const [a, b, c] = streamChunks;
      res.write(a);
      state.gate.entered++;
      await state.gate.opened;
      res.write(b);
      res.end(c);
    });
    app.post('/flaky', (_req, res) => {
      if (count(state, 'flaky') === 1) throw new Error('first call fails');
      res.status(201).json({ ok: true });
    });
    app.post('/unavailable', (_req, res) => {
      const n = count(state, 'unavailable');
      res.status(503).json({ n });
    });
    app.post('/invalid', (_req, res) => {
      const n = count(state, 'invalid');
      res.status(400).json({ error: 'amount must be positive', n });
    });
    app.post('/big', (_req, res) => {
      count(state, 'big');
      res.type('text/plain').send(bigBody);
    });
    // Quiet the default error logging of the deliberate failure.
    app.use((err: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      if (process.env.DEBUG_HTTP) console.error(err);
      res.status(500).json({ error: 'internal' });
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise<void>((resolve) => server.once('listening', resolve));
    const { port } = server.address() as AddressInfo;
    return {
      url: `http://127.0.0.1:${port}`,
      calls: state.calls,
      get gate() {
        return state.gate;
      },
      set gate(g) {
        state.gate = g;
      },
      close: () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    };
  },
};

/** Builds the Fastify test app without listening (for `inject`). */
export async function buildFastify(options: TestOptions) {
  const { scoped, ...rest } = options;
  const state = { calls: new Map<string, number>(), gate: new Gate() };
  const app: FastifyInstance = Fastify();
  await app.register(fastifyIdempotency, { ...rest, scope: scoped ? accountOf : 'global' });
  const orders = async (req: { method: string; body: unknown }, reply: import('fastify').FastifyReply) => {
    const n = count(state, 'orders');
    return reply
      .code(201)
      .headers(orderHeaders(n))
      .send({ n, method: req.method, body: req.body ?? {} });
  };
  app.route({ method: ['POST', 'PATCH', 'PUT', 'GET', 'DELETE'], url: '/orders', handler: orders });
  app.post('/text', async (req, reply) => reply.type('text/plain').send(`${count(state, 'text')}:${req.body}`));
  app.post('/slow', async () => {
    const n = count(state, 'slow');
    state.gate.entered++;
    await state.gate.opened;
    return { n };
  });
  app.post('/stream', async (_req, reply) => {
    count(state, 'stream');
    async function* chunks() {
      for (const chunk of streamChunks) {
        await new Promise((r) => setTimeout(r, 5));
        yield chunk;
      }
    }
    return reply.type('application/octet-stream').send(Readable.from(chunks()));
  });
  app.post('/gated-stream', async (_req, reply) => {
    count(state, 'gated-stream');
    async function* chunks() {
      const [a, b, c] = streamChunks;
      yield a;
      state.gate.entered++;
      await state.gate.opened;
      yield b;
      yield c;
    }
    return reply.type('application/octet-stream').send(Readable.from(chunks()));
  });
  app.post('/flaky', async (_req, reply) => {
    if (count(state, 'flaky') === 1) throw new Error('first call fails');
    return reply.code(201).send({ ok: true });
  });
  app.post('/unavailable', async (_req, reply) => reply.code(503).send({ n: count(state, 'unavailable') }));
  app.post('/invalid', async (_req, reply) =>
    reply.code(400).send({ error: 'amount must be positive', n: count(state, 'invalid') }),
  );
  app.post('/big', async (_req, reply) => {
    count(state, 'big');
    return reply.type('text/plain').send(bigBody);
  });
  return { app, state };
}

export const fastifyFramework: Framework = {
  name: 'fastify',
  async start(options) {
    const { app, state } = await buildFastify(options);
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    return {
      url: `http://127.0.0.1:${port}`,
      calls: state.calls,
      get gate() {
        return state.gate;
      },
      set gate(g) {
        state.gate = g;
      },
      close: async () => {
        app.server.closeAllConnections();
        await app.close();
      },
    };
  },
};

/**
 * A first request held in `/slow`'s handler, a retry after each of `steps` (a clock moved, say):
 * its status, or 'ran' if it ran the handler again (held at the gate in turn); then the handler
 * let go, and one more retry. What a run capped at maxRunMs answers. The app is closed after.
 */
export async function heldRetries(
  app: TestApp,
  steps: readonly (() => unknown)[],
): Promise<{ statuses: (number | 'ran')[]; replay: Sent; calls: number | undefined }> {
  try {
    const key = newKey();
    const retry = () => send(`${app.url}/slow`, { key, body: { a: 1 } });
    const first = retry();
    while (app.gate.entered === 0) await sleep(5);
    const statuses: (number | 'ran')[] = [];
    for (const step of steps) {
      await step();
      statuses.push(await Promise.race([retry().then((r) => r.status), sleep(1_000).then(() => 'ran' as const)]));
    }
    app.gate.open();
    await first;
    return { statuses, replay: await retry(), calls: app.calls.get('slow') };
  } finally {
    app.gate.open();
    await app.close();
  }
}
