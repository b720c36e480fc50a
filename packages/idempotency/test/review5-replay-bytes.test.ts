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

afterEach(closeAll);

// Bodies on both sides of the 96 bytes memoryStore keeps as a string: every byte value, UTF-8.
const bodies: Record<string, Buffer> = {
  empty: Buffer.alloc(0),
  one: Buffer.from([0xff]),
  ...Object.fromEntries(
    [95, 96, 97, 256].map((n) => [`b${n}`, Buffer.from(Array.from({ length: n }, (_, i) => (255 - i) % 256))]),
  ),
  utf8: Buffer.from('€'.repeat(32), 'utf8'), // 96 bytes
  utf8More: Buffer.from(`x${'😀'.repeat(24)}`, 'utf8'), // 97 bytes
};

async function post(port: number, path: string, key: string) {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, {
    method: 'POST',
    headers: { 'idempotency-key': key },
    signal: AbortSignal.timeout(3_000),
  });
  return {
    status: response.status,
    replayed: response.headers.get('idempotent-replayed'),
    body: Buffer.from(await response.arrayBuffer()),
  };
}

describe('review5: replays byte for byte through memoryStore, bodies written in pieces', () => {
  it('Express: bytes written in 1-byte Buffers, 3-byte Uint8Arrays, and UTF-8 strings split mid-character', async () => {
    const app = express();
    app.use(idempotency({ store: memoryStore(), scope: 'global', bus: createBus() }));
    let ran = 0;
    app.post('/:name/:how', (req, res) => {
      ran++;
      const body = bodies[req.params.name as string] as Buffer;
      res.status(201).type('application/octet-stream');
      if (req.params.how === 'bytes') for (const b of body) res.write(Buffer.from([b]));
      else if (req.params.how === 'arrays')
        for (let i = 0; i < body.length; i += 3) res.write(new Uint8Array(body.subarray(i, i + 3)));
      // As strings: latin1 for raw bytes, a string per 5 bytes (one encoding a call).
      else for (let i = 0; i < body.length; i += 5) res.write(body.subarray(i, i + 5).toString('latin1'), 'latin1');
      res.end();
    });
    const port = await listenNode(createServer(app));
    for (const name of Object.keys(bodies)) {
      for (const how of ['bytes', 'arrays', 'strings']) {
        const first = await post(port, `/${name}/${how}`, `${name}-${how}`);
        const again = await post(port, `/${name}/${how}`, `${name}-${how}`);
        expect([name, how, first.status, first.body.equals(bodies[name] as Buffer)]).toEqual([name, how, 201, true]);
        expect([name, how, again.status, again.replayed, again.body.equals(bodies[name] as Buffer)]).toEqual([
          name,
          how,
          201,
          'true',
          true,
        ]);
      }
    }
    expect(ran).toBe(Object.keys(bodies).length * 3);
  });

  it('Fastify: a Buffer sent whole, replayed as sent', async () => {
    const app = Fastify();
    await app.register(fastifyIdempotency, { store: memoryStore(), scope: 'global', bus: createBus() });
    let ran = 0;
    app.post('/:name', async (req, reply) => {
      ran++;
      return reply
        .code(201)
        .type('application/octet-stream')
        .send(bodies[(req.params as { name: string }).name]);
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    closers.push(() => app.close());
    const port = (app.server.address() as AddressInfo).port;
    for (const name of Object.keys(bodies)) {
      const first = await post(port, `/${name}`, name);
      const again = await post(port, `/${name}`, name);
      expect([name, first.status, first.body.equals(bodies[name] as Buffer)]).toEqual([name, 201, true]);
      expect([name, again.status, again.replayed, again.body.equals(bodies[name] as Buffer)]).toEqual([
        name,
        201,
        'true',
        true,
      ]);
    }
    expect(ran).toBe(Object.keys(bodies).length);
  });
});
