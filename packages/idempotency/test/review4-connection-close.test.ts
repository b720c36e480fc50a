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
import { rawClient, sendKeyed, tick } from './http-support/leave.js';

afterEach(closeAll);
const opts = () => ({ store: memoryStore(), scope: 'global' as const, bus: createBus(), leaseMs: 2_000 });
type Start = (answer: 'send' | 'nothing') => Promise<{ port: number; ran: Map<string, number> }>;

const starts: [string, Start][] = [
  [
    'Express',
    async (answer) => {
      const app = express();
      app.use(idempotency(opts()));
      const ran = new Map<string, number>();
      app.post('/orders', async (req, res) => {
        const key = String(req.headers['idempotency-key']);
        ran.set(key, (ran.get(key) ?? 0) + 1);
        await tick(key === 'a' ? 50 : 100);
        if (answer === 'nothing' && key === 'b' && req.socket.destroyed) return;
        res.status(201).send(`made ${key}`);
      });
      return { port: await listenNode(createServer(app)), ran };
    },
  ],
  [
    'Fastify',
    async (answer) => {
      const app = Fastify();
      await app.register(fastifyIdempotency, opts());
      app.addContentTypeParser('text/plain', { parseAs: 'string' }, (_r, body, done) => done(null, body));
      const ran = new Map<string, number>();
      app.post('/orders', async (req, reply) => {
        const key = String(req.headers['idempotency-key']);
        ran.set(key, (ran.get(key) ?? 0) + 1);
        await tick(key === 'a' ? 50 : 100);
        if (answer === 'nothing' && key === 'b') return;
        return reply.code(201).send(`made ${key}`);
      });
      await app.listen({ port: 0, host: '127.0.0.1' });
      closers.push(() => app.close());
      return { port: (app.server.address() as AddressInfo).port, ran };
    },
  ],
];

const post = (key: string, close = false) =>
  `POST /orders HTTP/1.1\r\nHost: x\r\n${close ? 'Connection: close\r\n' : ''}Idempotency-Key: ${key}\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi`;

/**
 * Node's parser refuses bytes after a request that asked `Connection: close` (HPE_CLOSED_CONNECTION):
 * the server answers 400 and destroys the socket at once, while the first request's handler runs.
 * That handler's effect happens all the same: its key must not be freed for a retry to run it again.
 */
describe.each(starts)('%s: bytes pipelined behind a request that asked Connection: close', (_, start) => {
  it('the server answers 400 and closes the connection under the first handler: it is stored when it ends, the retry replays it, it ran once', async () => {
    const { port, ran } = await start('send');
    const { socket, read } = await rawClient(port);
    socket.write(post('a', true) + post('b'));
    await once(socket, 'close');
    expect(read()).toMatch(/^HTTP\/1\.1 400 /);
    let retry = await sendKeyed(`http://127.0.0.1:${port}/orders`, 'a');
    for (let turn = 0; turn < 150 && retry.status === 409; turn++) {
      await tick(20);
      retry = await sendKeyed(`http://127.0.0.1:${port}/orders`, 'a');
    }
    expect(Object.fromEntries(ran)).toEqual({ a: 1 });
    expect([retry.status, retry.replayed, retry.body]).toEqual([201, 'true', 'made a']);
  });
});
