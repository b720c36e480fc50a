import { once } from 'node:events';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { type AddressInfo, connect } from 'node:net';
import { createBus } from '@holdfast/core';
import express5 from 'express';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { idempotency as fastifyIdempotency } from '../src/fastify.js';
import { memoryStore } from '../src/index.js';
import { closeAll, closers, listenNode } from './http-support/body-apps.js';
import { tick } from './http-support/leave.js';

const express4 = createRequire(import.meta.url)('express4') as typeof express5;
afterEach(closeAll);

type Start = () => Promise<{ port: number; ran: Map<string, number>; bodies: string[] }>;

const expressStart =
  (express: typeof express5): Start =>
  async () => {
    const app = express();
    app.use(idempotency({ store: memoryStore(), scope: 'global', bus: createBus() }));
    app.use(express.text({ type: '*/*', limit: '1mb' }));
    const ran = new Map<string, number>();
    const bodies: string[] = [];
    app.post('/orders', async (req, res) => {
      const key = String(req.headers['idempotency-key']);
      ran.set(key, (ran.get(key) ?? 0) + 1);
      bodies.push(String(req.body).slice(0, 20));
      if (key === 'slow') await tick(150);
      res.status(201).send(`made ${key}`);
    });
    const port = await listenNode(createServer(app));
    return { port, ran, bodies };
  };

const fastifyStart: Start = async () => {
  const app = Fastify({ bodyLimit: 1 << 20 });
  await app.register(fastifyIdempotency, { store: memoryStore(), scope: 'global', bus: createBus() });
  app.addContentTypeParser('*', { parseAs: 'string' }, (_r, body, done) => done(null, body));
  const ran = new Map<string, number>();
  const bodies: string[] = [];
  app.post('/orders', async (req, reply) => {
    const key = String(req.headers['idempotency-key']);
    ran.set(key, (ran.get(key) ?? 0) + 1);
    bodies.push(String(req.body).slice(0, 20));
    if (key === 'slow') await tick(150);
    return reply.code(201).send(`made ${key}`);
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  closers.push(() => app.close());
  return { port: (app.server.address() as AddressInfo).port, ran, bodies };
};

const starts: [string, Start][] = [
  ['Express 5', expressStart(express5)],
  ['Express 4', expressStart(express4)],
  ['Fastify', fastifyStart],
];

function head(key: string, length: number | 'chunked') {
  const len = length === 'chunked' ? 'Transfer-Encoding: chunked' : `Content-Length: ${length}`;
  return `POST /orders HTTP/1.1\r\nHost: x\r\nIdempotency-Key: ${key}\r\nContent-Type: text/plain\r\n${len}\r\n\r\n`;
}

async function full(port: number, key: string, body: string) {
  const res = await fetch(`http://127.0.0.1:${port}/orders`, {
    method: 'POST',
    headers: { 'idempotency-key': key, 'content-type': 'text/plain' },
    body,
    signal: AbortSignal.timeout(3_000),
  });
  return { status: res.status, body: await res.text() };
}

describe.each(starts)('%s: a body that comes slowly, its client leaving before its end', (_, start) => {
  for (const size of [10, 100_000]) {
    for (const framing of ['length', 'chunked'] as const) {
      it(`${size} bytes, ${framing}: nothing ran, the key is free, the retry runs once`, async () => {
        const { port, ran } = await start();
        const body = 'x'.repeat(size);
        const socket = connect(port, '127.0.0.1');
        socket.on('data', () => {});
        socket.on('error', () => {});
        await once(socket, 'connect');
        const part = body.slice(0, Math.floor(size / 2));
        socket.write(head('k', framing === 'chunked' ? 'chunked' : size));
        socket.write(framing === 'chunked' ? `${part.length.toString(16)}\r\n${part}\r\n` : part);
        await tick(60);
        socket.destroy();
        await tick(60);
        expect(Object.fromEntries(ran)).toEqual({});
        const retry = await full(port, 'k', body);
        expect(retry).toEqual({ status: 201, body: 'made k' });
        expect(Object.fromEntries(ran)).toEqual({ k: 1 });
      });
    }
  }

  it('pipelined behind a slow request: the slow one is stored, the cut one ran not; the retry runs it once', async () => {
    const { port, ran } = await start();
    const socket = connect(port, '127.0.0.1');
    socket.on('data', () => {});
    socket.on('error', () => {});
    await once(socket, 'connect');
    socket.write(`${head('slow', 2)}hi${head('cut', 10)}abcd`);
    await tick(40);
    socket.destroy();
    await tick(250);
    expect(Object.fromEntries(ran)).toEqual({ slow: 1 });
    expect(await full(port, 'cut', 'abcdefghij')).toEqual({ status: 201, body: 'made cut' });
    const slow = await full(port, 'slow', 'hi');
    expect(slow).toEqual({ status: 201, body: 'made slow' });
    expect(Object.fromEntries(ran)).toEqual({ slow: 1, cut: 1 });
  });
});
