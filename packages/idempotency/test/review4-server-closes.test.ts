import { once } from 'node:events';
import { createServer } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { createBus } from '@holdfast/core';
import express from 'express';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { idempotency as fastifyIdempotency } from '../src/fastify.js';
import { memoryStore } from '../src/index.js';
import { closeAll, closers, listenNode } from './http-support/body-apps.js';
import { gate, keyedPost, sendKeyed, settledRetry, tick } from './http-support/leave.js';

afterEach(closeAll);

const settled = async (port: number, key: string) => {
  const { status, body } = await settledRetry(port, key);
  return { status, body };
};

describe('the server closes the connection while a handler still runs', () => {
  it('Express, server.setTimeout: the handler that still runs is not run again by the retry', async () => {
    const app = express();
    app.use(idempotency({ store: memoryStore(), scope: 'global', bus: createBus(), leaseMs: 2_000 }));
    let ran = 0;
    const finished = gate();
    // Released once the retry has its answer: slower than the server's socket timeout, and still
    // running when the retry comes however loaded the machine (after a fixed 300 ms, a loaded
    // machine's retry came once it had ended, and got the replay).
    const release = gate();
    app.post('/orders', async (_req, res) => {
      ran++;
      await release.opened;
      res.status(201).send('made');
      finished.open();
    });
    const server = createServer(app);
    server.setTimeout(100);
    const port = await listenNode(server);
    const socket = connect(port, '127.0.0.1');
    socket.on('data', () => {});
    socket.on('error', () => {});
    await once(socket, 'connect');
    socket.write(keyedPost('/orders', 'k'));
    await once(socket, 'close'); // the server timed the socket out
    // The retry's own socket is not timed out: a loaded machine may take 100 ms to answer it. A
    // retry that ran the handler again is seen in \`ran\` (and would answer 201, not 409).
    server.setTimeout(0);
    const retry = await sendKeyed(`http://127.0.0.1:${port}/orders`, 'k').then(
      (answer) => answer.status,
      () => 'closed',
    );
    release.open();
    await finished.opened;
    await tick(20);
    const after = await sendKeyed(`http://127.0.0.1:${port}/orders`, 'k').then(
      (answer) => [answer.status, answer.replayed, answer.body],
      () => 'closed',
    );
    expect({ ran, retry, after }).toEqual({
      ran: 1,
      retry: 409,
      after: [201, 'true', 'made'],
    });
  });

  it('Fastify, connectionTimeout: the same', async () => {
    const app = Fastify({ connectionTimeout: 100 });
    await app.register(fastifyIdempotency, { store: memoryStore(), scope: 'global', bus: createBus(), leaseMs: 2_000 });
    let ran = 0;
    const finished = gate();
    const release = gate(); // as above: still running when the retry comes
    app.post('/orders', async (_req, reply) => {
      ran++;
      await release.opened;
      finished.open();
      return reply.code(201).send('made');
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    closers.push(() => app.close());
    const port = (app.server.address() as AddressInfo).port;
    const socket = connect(port, '127.0.0.1');
    socket.on('data', () => {});
    socket.on('error', () => {});
    await once(socket, 'connect');
    socket.write(keyedPost('/orders', 'k'));
    await once(socket, 'close');
    app.server.setTimeout(0); // as above: the retry's socket is not timed out
    const retry = await sendKeyed(`http://127.0.0.1:${port}/orders`, 'k');
    release.open();
    await finished.opened;
    await tick(20);
    expect({ ran, retry: retry.status }).toEqual({ ran: 1, retry: 409 });
  });

  it('Express, pipelined: b (queued) throws after its headers, Express destroys the shared socket; a still runs: a is not run again', async () => {
    const app = express();
    app.use(idempotency({ store: memoryStore(), scope: 'global', bus: createBus(), leaseMs: 2_000 }));
    const ran = new Map<string, number>();
    const aDone = gate();
    app.post('/orders', async (req, res, next) => {
      const key = String(req.headers['idempotency-key']);
      ran.set(key, (ran.get(key) ?? 0) + 1);
      if (key === 'a') {
        await tick(200);
        res.status(201).send('made a');
        aDone.open();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('partial');
      next(new Error('b fails after its headers'));
    });
    app.use((err: Error, _req: express.Request, res: express.Response, next: express.NextFunction) => {
      if (res.headersSent) return next(err); // finalhandler destroys the socket
      res.status(500).send('x');
    });
    const port = await listenNode(createServer(app));
    const socket = connect(port, '127.0.0.1');
    socket.on('data', () => {});
    socket.on('error', () => {});
    await once(socket, 'connect');
    socket.write(keyedPost('/orders', 'a') + keyedPost('/orders', 'b'));
    await once(socket, 'close');
    const retry = await sendKeyed(`http://127.0.0.1:${port}/orders`, 'a');
    await aDone.opened;
    await tick(20);
    const after = await settled(port, 'a');
    expect({ ran: Object.fromEntries(ran), retry: retry.status, after: after.status }).toEqual({
      ran: { a: 1, b: 1 },
      retry: 409,
      after: 201,
    });
  });
  it('Express, server.setTimeout once the response began (headers and a first chunk sent): the same', async () => {
    const app = express();
    app.use(idempotency({ store: memoryStore(), scope: 'global', bus: createBus(), leaseMs: 2_000 }));
    let ran = 0;
    const finished = gate();
    app.post('/orders', async (_req, res) => {
      ran++;
      res.status(201).write('started ');
      await tick(300); // idle longer than the server's socket timeout
      res.end('done');
      finished.open();
    });
    const server = createServer(app);
    server.setTimeout(100);
    const port = await listenNode(server);
    const socket = connect(port, '127.0.0.1');
    socket.on('data', () => {});
    socket.on('error', () => {});
    await once(socket, 'connect');
    socket.write(keyedPost('/orders', 'k'));
    await once(socket, 'close');
    const retry = connect(port, '127.0.0.1');
    let read = '';
    retry.on('data', (c: Buffer) => {
      read += c.toString('latin1');
    });
    retry.on('error', () => {});
    await once(retry, 'connect');
    retry.write(keyedPost('/orders', 'k'));
    await finished.opened;
    await tick(50);
    retry.destroy();
    expect({ ran, retry: read.slice(0, 12) }).toEqual({ ran: 1, retry: 'HTTP/1.1 409' });
  });
});
