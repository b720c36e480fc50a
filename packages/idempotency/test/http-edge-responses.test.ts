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
import { exchange } from './http-support/raw.js';

/**
 * Responses beyond a status, headers and a body, on a real server: what the first request gets
 * and what its replay gets. Pinned: 1xx and trailers are not part of a record (a replay has
 * neither), and a HEAD replay's Content-Length is the one its first response sent.
 */
afterEach(closeAll);

const request = (method: string, path: string, key: string) =>
  `${method} ${path} HTTP/1.1\r\nHost: x\r\nIdempotency-Key: ${key}\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi`;

async function expressApp() {
  const app = express();
  app.use(idempotency({ store: memoryStore(), scope: 'global', bus: createBus(), methods: ['POST', 'HEAD'] }));
  const ran = { count: 0 };
  app.post('/hinted', (_req, res) => {
    ran.count++;
    res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
    res.status(201).type('text/plain').end('made');
  });
  app.post('/trailed', (_req, res) => {
    ran.count++;
    res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
    res.write('report');
    res.addTrailers({ 'x-checksum': 'c0ffee' });
    res.end();
  });
  app.head('/thing', (_req, res) => {
    ran.count++;
    res.type('text/plain').set('content-length', '10').end();
  });
  return { port: await listenNode(createServer(app)), ran };
}

describe('express: 1xx, trailers and HEAD', () => {
  it('103 Early Hints: the first request gets them and its response; the replay gets the response alone; one run', async () => {
    const { port, ran } = await expressApp();
    const first = await exchange(port, [request('POST', '/hinted', 'h')], { count: 1 });
    expect(first.map((r) => r.status)).toEqual([103, 201]);
    expect(first[0]?.headers.toLowerCase()).toContain('link: </style.css>');
    const replay = await exchange(port, [request('POST', '/hinted', 'h')], { count: 1 });
    expect(replay.map((r) => [r.status, r.body])).toEqual([[201, 'made']]);
    expect(replay[0]?.headers.toLowerCase()).toContain('idempotent-replayed: true');
    expect(ran.count).toBe(1);
  });

  it('trailers: the replay carries the body, not the trailers nor the Trailer header (a checksum there is not replayed)', async () => {
    const { port, ran } = await expressApp();
    const first = await exchange(port, [request('POST', '/trailed', 't')], { count: 1 });
    expect(first[0]?.headers.toLowerCase()).toContain('trailer: x-checksum');
    const replay = await exchange(port, [request('POST', '/trailed', 't')], { count: 1 });
    expect(replay[0]?.body).toBe('report');
    expect(replay[0]?.headers.toLowerCase()).not.toContain('trailer');
    expect(replay[0]?.headers.toLowerCase()).not.toContain('x-checksum');
    expect(ran.count).toBe(1);
  });

  it("HEAD guarded by choice (methods): replayed once run, with the Content-Length the first said (10), not its empty body's", async () => {
    const { port, ran } = await expressApp();
    const head = () =>
      fetch(`http://127.0.0.1:${port}/thing`, { method: 'HEAD', headers: { 'idempotency-key': 'head' } });
    const first = await head();
    expect(first.headers.get('content-length')).toBe('10');
    const replay = await head();
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.headers.get('content-length')).toBe('10');
    expect(ran.count).toBe(1);
  });
});

describe('fastify: trailers', () => {
  it('reply.trailer(): the replay carries the body without the trailer', async () => {
    const app = Fastify();
    closers.push(() => app.close());
    await app.register(fastifyIdempotency, { store: memoryStore(), scope: 'global', bus: createBus() });
    let ran = 0;
    app.post('/trailed', async (_request, reply) => {
      ran++;
      reply.trailer('x-checksum', async () => 'c0ffee');
      return reply.type('text/plain').send('report');
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as AddressInfo).port;
    const first = await exchange(port, [request('POST', '/trailed', 'ft')], { count: 1 });
    expect(first[0]?.body).toBe('report');
    const replay = await exchange(port, [request('POST', '/trailed', 'ft')], { count: 1 });
    expect(replay[0]?.body).toBe('report');
    expect(replay[0]?.headers.toLowerCase()).toContain('idempotent-replayed: true');
    expect(replay[0]?.headers.toLowerCase()).not.toContain('x-checksum');
    expect(ran).toBe(1);
  });
});
