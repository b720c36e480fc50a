import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBus } from '@holdfast/core';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/fastify.js';
import { requestFingerprint } from '../src/http/fingerprint.js';
import { memoryStore } from '../src/index.js';

/**
 * A Fastify replay's headers are written straight into the reply's own headers object when
 * their names are in lower case, and its Content-Length is left to Fastify: the header lines on
 * the wire (names, case, order, values) must be what `reply.headers()` sent.
 */
const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

const BODY = '{"amount":4200}';

/** POSTs BODY (or HEADs) with `key`; the response's raw header lines (Date's value blanked) and body. */
function send(port: number, key: string, method = 'POST') {
  return new Promise<{ status: number; lines: string[]; body: string }>((resolve, reject) => {
    const req = request(
      {
        port,
        host: '127.0.0.1',
        path: '/orders',
        method,
        headers: { 'content-type': 'application/json', 'idempotency-key': key },
      },
      (res) => {
        const lines: string[] = [];
        for (let i = 0; i < res.rawHeaders.length; i += 2) {
          const name = res.rawHeaders[i] as string;
          lines.push(`${name}: ${name.toLowerCase() === 'date' ? '-' : res.rawHeaders[i + 1]}`);
        }
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode as number, lines, body }));
      },
    );
    req.on('error', reject);
    req.end(method === 'HEAD' ? undefined : BODY);
  });
}

/** A replay's header lines: the stored ones, then the marker, the length and Node's own. */
function replayed(length: number, stored: string[]): string[] {
  return [
    ...stored,
    'idempotent-replayed: true',
    `content-length: ${length}`,
    'Date: -',
    'Connection: keep-alive',
    'Keep-Alive: timeout=72',
  ];
}

async function listen(app: FastifyInstance): Promise<number> {
  apps.push(app);
  await app.listen({ port: 0, host: '127.0.0.1' });
  return (app.server.address() as AddressInfo).port;
}

/** An app with the plugin and one route answered by `handle`; how many times it ran. */
async function guarded(handle: (reply: FastifyReply) => FastifyReply) {
  const app = Fastify();
  await app.register(idempotency, { store: memoryStore(), scope: 'global', bus: createBus() });
  let ran = 0;
  app.post('/orders', async (_request, reply) => {
    ran++;
    return handle(reply);
  });
  return { port: await listen(app), calls: () => ran };
}

describe("fastify plugin: a replay's header lines", () => {
  it('the stored headers, idempotent-replayed, then the body length Fastify sets: in that order, lower case', async () => {
    const { port, calls } = await guarded((reply) =>
      reply
        .code(201)
        .header('Location', '/orders/1')
        .header('ETag', '"v1"')
        .header('Cache-Control', 'no-store')
        .header('X-Not-Kept', 'a')
        .header('link', ['</a>; rel="a"', '</b>; rel="b"'])
        .send({ id: 1 }),
    );
    const first = await send(port, 'k1');
    const again = await send(port, 'k1');
    expect(calls()).toBe(1);
    expect(first.status).toBe(201);
    expect(again).toEqual({
      status: 201,
      lines: replayed(8, [
        'location: /orders/1',
        'etag: "v1"',
        'cache-control: no-store',
        'link: </a>; rel="a"',
        'link: </b>; rel="b"',
        'content-type: application/json; charset=utf-8',
      ]),
      body: '{"id":1}',
    });
  });

  it("an onSend hook that changes a replay's header list in place changes that reply only, never the stored record", async () => {
    const app = Fastify();
    await app.register(idempotency, { store: memoryStore(), scope: 'global', bus: createBus() });
    let replays = 0;
    app.addHook('onSend', async (_request, reply, payload) => {
      if (reply.getHeader('idempotent-replayed') !== 'true') return payload;
      replays++;
      (reply.getHeader('link') as string[]).push(`</hook${replays}>; rel="h"`);
      return payload;
    });
    let ran = 0;
    app.post('/orders', async (_request, reply) => {
      ran++;
      return reply.code(201).header('link', ['</a>; rel="a"', '</b>; rel="b"']).send({ id: 1 });
    });
    const port = await listen(app);
    await send(port, 'k-list');
    const one = await send(port, 'k-list');
    const two = await send(port, 'k-list');
    expect(ran).toBe(1);
    // Each replay carries the stored two and its own hook's line: the first hook's push is not kept.
    for (const [i, replay] of [one, two].entries()) {
      expect(replay.lines.filter((line) => line.startsWith('link:'))).toEqual([
        'link: </a>; rel="a"',
        'link: </b>; rel="b"',
        `link: </hook${i + 1}>; rel="h"`,
      ]);
      expect(replay.body).toBe('{"id":1}');
    }
  });

  it('a record whose names are not in lower case (completed through the store): each name sent lower-cased, once; a set-cookie merged with one a hook set', async () => {
    const store = memoryStore();
    const app = Fastify();
    await app.register(idempotency, { store, scope: 'global', bus: createBus() });
    app.addHook('onRequest', async (_request, reply) => {
      reply.header('set-cookie', 'a=1');
    });
    let ran = 0;
    app.post('/orders', async () => {
      ran++;
      return { id: 1 };
    });
    const port = await listen(app);
    const fingerprint = requestFingerprint({
      method: 'POST',
      url: '/orders',
      contentType: 'application/json',
      body: Buffer.from(BODY),
      headers: [],
    });
    const claim = await store.claim('http:*:k2', fingerprint, 10_000);
    if (claim.status !== 'claimed') throw new Error(`claim: ${claim.status}`);
    await store.complete(
      'http:*:k2',
      claim.token,
      {
        kind: 'response',
        status: 202,
        headers: { 'Content-Type': 'text/plain', 'X-Upper': 'u', 'set-cookie': ['b=2'] },
        body: Buffer.from('stored'),
      },
      60_000,
    );
    const replay = await send(port, 'k2');
    expect(ran).toBe(0);
    expect(replay).toEqual({
      status: 202,
      lines: replayed(6, ['set-cookie: a=1', 'set-cookie: b=2', 'content-type: text/plain', 'x-upper: u']),
      body: 'stored',
    });
  });

  it("headers set on the raw response are stored beside the reply's own, which win where both set one", async () => {
    const { port, calls } = await guarded((reply) => {
      reply.raw.setHeader('ETag', '"raw"');
      reply.raw.setHeader('Location', '/raw');
      return reply.code(201).header('location', '/own').send({ id: 2 });
    });
    const first = await send(port, 'k3');
    const again = await send(port, 'k3');
    expect(calls()).toBe(1);
    expect(first.lines.filter((line) => /^(etag|location)/i.test(line))).toEqual(['ETag: "raw"', 'location: /own']);
    expect(again).toEqual({
      status: 201,
      lines: replayed(8, ['etag: "raw"', 'location: /own', 'content-type: application/json; charset=utf-8']),
      body: '{"id":2}',
    });
  });
});
