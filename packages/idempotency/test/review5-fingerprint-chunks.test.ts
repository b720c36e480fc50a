import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { createBus } from '@holdfast/core';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/fastify.js';
import { requestFingerprint } from '../src/http/fingerprint.js';
import { memoryStore } from '../src/index.js';
import { closeAll, closers } from './http-support/body-apps.js';
import { rawClient, tick } from './http-support/leave.js';

afterEach(closeAll);

/** Sends a keyed text/plain POST whose body goes in `parts` (chunked, a pause between), or whole with a length. */
async function send(port: number, key: string, parts: Buffer[] | Buffer): Promise<string> {
  const { socket, read } = await rawClient(port);
  const head = `POST /orders HTTP/1.1\r\nHost: x\r\nIdempotency-Key: ${key}\r\nContent-Type: text/plain\r\nConnection: close\r\n`;
  if (Buffer.isBuffer(parts)) {
    socket.write(Buffer.concat([Buffer.from(`${head}Content-Length: ${parts.length}\r\n\r\n`), parts]));
  } else {
    socket.write(`${head}Transfer-Encoding: chunked\r\n\r\n`);
    for (const part of parts) {
      await tick(3); // each its own read on the server
      socket.write(Buffer.concat([Buffer.from(`${part.length.toString(16)}\r\n`), part, Buffer.from('\r\n')]));
    }
    socket.write('0\r\n\r\n');
  }
  await once(socket, 'close');
  return read().split('\r\n')[0] as string;
}

describe('review5: Fastify fingerprints of bodies teed in 0, 1 and many chunks (Chunks)', () => {
  const text = Buffer.from('a€😀é\u0000\u00ff-', 'utf8');
  const cases: [string, Buffer[]][] = [
    ['no chunk', []],
    ['one byte', [Buffer.from('x')]],
    ['one chunk', [text]],
    [
      'UTF-8 split inside characters',
      [text.subarray(0, 2), text.subarray(2, 5), text.subarray(5, 9), text.subarray(9)],
    ],
    ['one byte a chunk', [...text].map((b) => Buffer.from([b]))],
  ];

  for (const [name, parts] of cases) {
    it(`${name}: fingerprinted as requestFingerprint() of all its bytes; the same bytes whole replay, one byte other is a mismatch`, async () => {
      const store = memoryStore();
      const app = Fastify();
      await app.register(idempotency, { store, scope: 'global', bus: createBus() });
      let ran = 0;
      app.post('/orders', async (_req, reply) => {
        ran++;
        return reply.code(201).send('made');
      });
      await app.listen({ port: 0, host: '127.0.0.1' });
      closers.push(() => app.close());
      const port = (app.server.address() as AddressInfo).port;
      const all = Buffer.concat(parts);
      expect(await send(port, 'k', parts)).toBe('HTTP/1.1 201 Created');
      const fingerprint = requestFingerprint({
        method: 'POST',
        url: '/orders',
        contentType: 'text/plain',
        body: all,
        headers: [],
      });
      const claim = await store.claim('http:*:k', fingerprint, 1_000);
      expect(claim.status).toBe('completed');
      expect(await send(port, 'k', all)).toBe('HTTP/1.1 201 Created');
      const other = Buffer.concat([all, Buffer.from('!')]);
      expect(await send(port, 'k', [other])).toBe('HTTP/1.1 422 Unprocessable Entity');
      expect(ran).toBe(1);
    });
  }
});
