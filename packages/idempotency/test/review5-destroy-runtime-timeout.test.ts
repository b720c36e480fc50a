import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBus } from '@holdfast/core';
import express from 'express';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { idempotency as fastifyIdempotency } from '../src/fastify.js';
import { memoryStore } from '../src/index.js';
import { closeAll, closers, listenNode } from './http-support/body-apps.js';
import { expectLost, gate, keyedPost, rawClient, sendKeyed, settledRetry, tick } from './http-support/leave.js';

afterEach(closeAll);

const settled = async (port: number, key: string) => {
  const { conflicts, ...answer } = await settledRetry(port, key);
  return { answer, conflicts };
};

describe('review5: a handler that destroys its response before any header (README: as its client leaving)', () => {
  it('Express: the retry gets 409 while the lease runs, then the response-lost problem; the handler ran once', async () => {
    const app = express();
    app.use(idempotency({ store: memoryStore(), scope: 'global', bus: createBus(), leaseMs: 600, maxRunMs: 600 }));
    let ran = 0;
    app.post('/orders', (_req, res) => {
      ran++;
      res.destroy(); // refuses the request
    });
    const port = await listenNode(createServer(app));
    await expect(sendKeyed(`http://127.0.0.1:${port}/orders`, 'k')).rejects.toThrow();
    const { answer, conflicts } = await settled(port, 'k');
    expectLost(answer);
    expect({ ran, waited: conflicts > 0 }).toEqual({ ran: 1, waited: true });
  });

  it('Fastify: the same', async () => {
    const app = Fastify();
    await app.register(fastifyIdempotency, {
      store: memoryStore(),
      scope: 'global',
      bus: createBus(),
      leaseMs: 600,
      maxRunMs: 600,
    });
    let ran = 0;
    app.post('/orders', async (_req, reply) => {
      ran++;
      reply.raw.destroy();
      return reply;
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    closers.push(() => app.close());
    const port = (app.server.address() as AddressInfo).port;
    await expect(sendKeyed(`http://127.0.0.1:${port}/orders`, 'k')).rejects.toThrow();
    const { answer, conflicts } = await settled(port, 'k');
    expectLost(answer);
    expect({ ran, waited: conflicts > 0 }).toEqual({ ran: 1, waited: true });
  });
});

describe('review5: server.setTimeout() set at runtime, on a connection already kept alive', () => {
  it('Express: its second request, timed out once its response began, is not run again by the retry', async () => {
    const app = express();
    app.use(idempotency({ store: memoryStore(), scope: 'global', bus: createBus(), leaseMs: 2_000, maxRunMs: 2_000 }));
    let ran = 0;
    const finished = gate();
    app.post('/orders', async (req, res) => {
      ran++;
      if (req.get('idempotency-key') === 'first') {
        res.status(201).send('first');
        return;
      }
      res.status(201).write('part 1;');
      await tick(400);
      res.end('part 2');
      finished.open();
    });
    const server = createServer(app);
    const port = await listenNode(server);
    const { socket, read } = await rawClient(port);
    socket.write(keyedPost('/orders', 'first'));
    for (let turn = 0; turn < 100 && !read().endsWith('first'); turn++) await tick(10);
    server.setTimeout(100); // changed while the connection is open
    socket.write(keyedPost('/orders', 'k'));
    await once(socket, 'close');
    const retry = await sendKeyed(`http://127.0.0.1:${port}/orders`, 'k').then(
      (answer) => answer.status,
      () => 'no answer',
    );
    await finished.opened;
    const after = await settled(port, 'k').then(
      ({ answer }) => [answer.status, answer.replayed],
      () => 'no answer',
    );
    expect({ ran, retry, after }).toEqual({ ran: 2, retry: 409, after: [201, 'true'] });
  });
});
