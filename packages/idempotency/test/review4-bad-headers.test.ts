import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { createBus } from '@holdfast/core';
import express5 from 'express';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { idempotency as fastifyIdempotency } from '../src/fastify.js';
import { memoryStore } from '../src/index.js';
import { closeAll, closers, listenNode } from './http-support/body-apps.js';
import { exchange } from './http-support/raw.js';

afterEach(closeAll);
const express4 = createRequire(import.meta.url)('express4') as typeof express5;

type Start = () => Promise<{ port: number; ran: () => number }>;
const opts = () => ({
  store: memoryStore(),
  scope: 'global' as const,
  bus: createBus(),
  fingerprint: ['x-tenant', 'cookie'],
});
const expressStart =
  (express: typeof express5): Start =>
  async () => {
    const app = express();
    app.use(idempotency(opts()));
    app.use(express.json(), express.text());
    let ran = 0;
    app.post('/orders', (_req, res) => {
      ran++;
      res.status(201).json({ ok: true });
    });
    return { port: await listenNode(createServer(app)), ran: () => ran };
  };
const fastifyStart: Start = async () => {
  const app = Fastify();
  await app.register(fastifyIdempotency, opts());
  app.addContentTypeParser('text/plain', { parseAs: 'string' }, (_r, body, done) => done(null, body));
  let ran = 0;
  app.post('/orders', async (_req, reply) => {
    ran++;
    return reply.code(201).send({ ok: true });
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  closers.push(() => app.close());
  return { port: (app.server.address() as AddressInfo).port, ran: () => ran };
};

const bad: [string, string[], string][] = [
  ['obs-text key', ['Idempotency-Key: caf\xe9'], 'hi'],
  ['key with a tab inside', ['Idempotency-Key: a\tb'], 'hi'],
  ['quoted key with an escape', ['Idempotency-Key: "a\\"b"'], 'hi'],
  ['quoted key, unterminated', ['Idempotency-Key: "abc'], 'hi'],
  ['key twice, second empty', ['Idempotency-Key: abc', 'Idempotency-Key:'], 'hi'],
  ['key of 256 characters', [`Idempotency-Key: ${'k'.repeat(256)}`], 'hi'],
  ['key as a structured-field list', ['Idempotency-Key: "a", "b"'], 'hi'],
  ['key as a byte sequence', ['Idempotency-Key: :YWJj:'], 'hi'],
  ['key with parameters', ['Idempotency-Key: "abc";x=1'], 'hi'],
  ['content-type twice', ['Idempotency-Key: ct2', 'Content-Type: application/json', 'Content-Type: text/plain'], '{}'],
  ['fingerprint header twice', ['Idempotency-Key: fp2', 'X-Tenant: a', 'X-Tenant: b'], 'hi'],
  ['fingerprint cookie twice', ['Idempotency-Key: ck2', 'Cookie: a=1', 'Cookie: b=2'], 'hi'],
  [
    'content-encoding twice',
    ['Idempotency-Key: ce2', 'Content-Encoding: identity', 'Content-Encoding: identity'],
    'hi',
  ],
  ['invalid JSON body', ['Idempotency-Key: js', 'Content-Type: application/json'], '{"a":'],
];

describe.each([
  ['Express 5', expressStart(express5)],
  ['Express 4', expressStart(express4)],
  ['Fastify', fastifyStart],
] as [string, Start][])('%s: bad headers and bodies are never a 500', (_, start) => {
  it.each(bad)('%s', async (_name, headers, body) => {
    const { port } = await start();
    const hasType = headers.some((h) => h.toLowerCase().startsWith('content-type'));
    const lines = ['POST /orders HTTP/1.1', 'Host: x', ...(hasType ? [] : ['Content-Type: text/plain']), ...headers];
    const request = Buffer.from(`${lines.join('\r\n')}\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 'latin1');
    const [first] = await exchange(port, [request], { count: 1 });
    expect(first?.status).toBeLessThan(500);
    const [second] = await exchange(port, [request], { count: 1 });
    expect(second?.status).toBeLessThan(500);
  });
});
