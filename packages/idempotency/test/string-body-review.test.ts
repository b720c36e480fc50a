/**
 * Hostile review of #19's short ASCII string body handed to a memoryStore as the string itself:
 * a replay sends the very bytes its first response sent, for string bodies at and past the
 * 96-character threshold, non-ASCII, a lone surrogate (sent as U+FFFD), written in Latin-1 or
 * UTF-8, in one write or several, and at maxResponseBytes exactly (stored) or one past (not).
 */
import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency as expressIdempotency } from '../src/express.js';
import { idempotency as fastifyIdempotency } from '../src/fastify.js';
import { memoryStore } from '../src/index.js';

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((close) => close()));
});

type Write = readonly (readonly [string, BufferEncoding | undefined])[];
const a = (n: number) => 'a'.repeat(n);
const cases: [string, Write][] = [
  ['96 ASCII', [[a(96), undefined]]],
  ['97 ASCII', [[a(97), undefined]]],
  ['95 ASCII and é', [[`${a(95)}é`, undefined]]],
  ['a lone surrogate', [['{"x":"\ud800"}', 'utf8']]],
  ['Latin-1 é', [['caf\u00e9', 'latin1']]],
  ['ASCII in Latin-1', [['{"ok":true}', 'latin1']]],
  [
    'ASCII then non-ASCII',
    [
      ['{"a":', undefined],
      ['"€"}', undefined],
    ],
  ],
  [
    'ASCII then ASCII',
    [
      [a(60), undefined],
      [a(60), 'utf-8'],
    ],
  ],
  [
    'empty then ASCII',
    [
      ['', undefined],
      ['ok', undefined],
    ],
  ],
];

async function post(url: string, key: string) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'idempotency-key': key, 'content-type': 'text/plain' },
    body: 'hi',
    signal: AbortSignal.timeout(3_000),
  });
  const bytes = Buffer.from(await response.arrayBuffer()).toString('hex');
  return { status: response.status, replayed: response.headers.get('idempotent-replayed'), bytes };
}

function expected(writes: Write): string {
  return Buffer.concat(writes.map(([s, e]) => Buffer.from(s, e ?? 'utf8'))).toString('hex');
}

describe('a string body replayed byte for byte (hostile review of #19)', () => {
  it('express: writes of strings in their encodings', async () => {
    const app = express();
    app.use(expressIdempotency({ store: memoryStore(), scope: 'global' }));
    let ran = 0;
    app.post('/:n', (req, res) => {
      ran++;
      const writes = (cases[Number(req.params.n)] as [string, Write])[1];
      res.status(201);
      for (let i = 0; i < writes.length; i++) {
        const [text, encoding] = writes[i] as [string, BufferEncoding];
        if (i === writes.length - 1) res.end(text, encoding);
        else res.write(text, encoding);
      }
    });
    const server = app.listen(0, '127.0.0.1');
    closers.push(() => new Promise((r) => server.close(r)));
    await new Promise<void>((resolve) => server.once('listening', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    for (let n = 0; n < cases.length; n++) {
      const [name, writes] = cases[n] as [string, Write];
      const want = expected(writes);
      expect({ name, ...(await post(`${base}/${n}`, `k${n}`)) }).toEqual({
        name,
        status: 201,
        replayed: null,
        bytes: want,
      });
      expect({ name, ...(await post(`${base}/${n}`, `k${n}`)) }).toEqual({
        name,
        status: 201,
        replayed: 'true',
        bytes: want,
      });
    }
    expect(ran).toBe(cases.length);
  });

  it('fastify: a string sent, at maxResponseBytes (stored) and one past it (not)', async () => {
    const app = Fastify();
    closers.push(() => app.close());
    await app.register(fastifyIdempotency, { store: memoryStore(), scope: 'global', maxResponseBytes: 96 });
    let ran = 0;
    const bodies = [a(96), a(97), `${a(94)}é`, `${a(93)}é`, '\ud800'];
    app.post('/:n', async (req, reply) => {
      ran++;
      return reply
        .code(201)
        .type('text/plain')
        .send(bodies[Number((req.params as { n: string }).n)]);
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    const runs: number[] = [];
    for (let n = 0; n < bodies.length; n++) {
      const body = bodies[n] as string;
      const want = Buffer.from(body, 'utf8').toString('hex');
      const stored = Buffer.byteLength(body, 'utf8') <= 96;
      const before = ran;
      expect(await post(`${base}/${n}`, `k${n}`)).toEqual({ status: 201, replayed: null, bytes: want });
      expect({ n, ...(await post(`${base}/${n}`, `k${n}`)) }).toEqual({
        n,
        status: 201,
        replayed: stored ? 'true' : null,
        bytes: want,
      });
      runs.push(ran - before);
    }
    // 96 bytes, 97, 96 (é is two), 95, 3 (U+FFFD): all but the 97 stored.
    expect(runs).toEqual([1, 2, 1, 1, 1]);
  });
});
