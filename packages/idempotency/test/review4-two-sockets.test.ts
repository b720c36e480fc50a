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
import { keyedPost, sendKeyed, tick } from './http-support/leave.js';

afterEach(closeAll);

type Start = (wait: boolean) => Promise<{ port: number; ran: Map<string, number> }>;
const handle = async (key: string, ran: Map<string, number>) => {
  ran.set(key, (ran.get(key) ?? 0) + 1);
  await tick(key === 'slow' ? 200 : 40);
  return `made ${key}`;
};
const opts = (wait: boolean) => ({
  store: memoryStore(),
  scope: 'global' as const,
  bus: createBus(),
  leaseMs: 3_000,
  ...(wait ? { wait: { timeout: 2_000, interval: 10 } } : {}),
});
const starts: [string, Start][] = [
  [
    'Express',
    async (wait) => {
      const app = express();
      app.use(idempotency(opts(wait)));
      const ran = new Map<string, number>();
      app.post('/orders', async (req, res) => {
        res.status(201).send(await handle(String(req.headers['idempotency-key']), ran));
      });
      return { port: await listenNode(createServer(app)), ran };
    },
  ],
  [
    'Fastify',
    async (wait) => {
      const app = Fastify();
      await app.register(fastifyIdempotency, opts(wait));
      app.addContentTypeParser('text/plain', { parseAs: 'string' }, (_r, body, done) => done(null, body));
      const ran = new Map<string, number>();
      app.post('/orders', async (req, reply) =>
        reply.code(201).send(await handle(String(req.headers['idempotency-key']), ran)),
      );
      await app.listen({ port: 0, host: '127.0.0.1' });
      closers.push(() => app.close());
      return { port: (app.server.address() as AddressInfo).port, ran };
    },
  ],
];

async function open(port: number) {
  const socket = connect(port, '127.0.0.1');
  const got = { read: '' };
  socket.on('data', (c: Buffer) => {
    got.read += c.toString('latin1');
  });
  socket.on('error', () => {});
  await once(socket, 'connect');
  return { socket, got };
}
const statuses = (read: string) => [...read.matchAll(/HTTP\/1\.1 (\d+)/g)].map((m) => m[1]);

describe.each(starts)('%s: one key from two sockets, one of them pipelined behind a slow request', (_, start) => {
  for (const wait of [false, true]) {
    it(`wait ${wait}: the handler runs once, each socket gets its answers in order`, async () => {
      const { port, ran } = await start(wait);
      const A = await open(port);
      const B = await open(port);
      A.socket.write(keyedPost('/orders', 'slow') + keyedPost('/orders', 'k'));
      B.socket.write(keyedPost('/orders', 'k'));
      for (let i = 0; i < 200 && (statuses(A.got.read).length < 2 || statuses(B.got.read).length < 1); i++)
        await tick(10);
      A.socket.destroy();
      B.socket.destroy();
      expect(Object.fromEntries(ran)).toEqual({ slow: 1, k: 1 });
      const all = [...statuses(A.got.read).slice(1), ...statuses(B.got.read)].sort();
      expect(statuses(A.got.read)[0]).toBe('201');
      expect(all).toEqual(wait ? ['201', '201'] : ['201', '409']);
    });
  }

  it('the pipelined socket leaves while its k is queued: k stored, the other socket replays it, ran once', async () => {
    const { port, ran } = await start(false);
    const A = await open(port);
    A.socket.write(keyedPost('/orders', 'slow') + keyedPost('/orders', 'k'));
    await tick(20);
    A.socket.destroy();
    await tick(300);
    let answer = await sendKeyed(`http://127.0.0.1:${port}/orders`, 'k');
    for (let turn = 0; turn < 100 && answer.status === 409; turn++) {
      await tick(20);
      answer = await sendKeyed(`http://127.0.0.1:${port}/orders`, 'k');
    }
    expect(Object.fromEntries(ran)).toEqual({ slow: 1, k: 1 });
    expect([answer.status, answer.replayed, answer.body]).toEqual([201, 'true', 'made k']);
  });
});
