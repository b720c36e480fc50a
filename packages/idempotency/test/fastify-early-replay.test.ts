import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { createBus } from '@holdfast/core';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/fastify.js';
import { memoryStore } from '../src/index.js';

// A replay on the in-process store with the global scope is answered before Fastify parses its
// body, when nothing else would run before the handler. What must hold: it is the same replay
// (status, headers, bytes), every hook of the app that would run before the handler still runs
// (an authentication is never skipped), and a request that does not match takes its usual way.

const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

interface Counts {
  parsed: number;
  handled: number;
}

async function start(
  before?: (app: FastifyInstance) => void,
  send: (counts: Counts) => unknown = (counts) => ({ id: counts.handled, note: 'ok' }),
  options: Record<string, unknown> = {},
): Promise<{ port: number; counts: Counts; app: FastifyInstance }> {
  const app = Fastify();
  apps.push(app);
  const counts: Counts = { parsed: 0, handled: 0 };
  // Requests whose body Fastify parsed (its own JSON parser: an app's own turns the early
  // answer off), counted once answered.
  app.addHook('onResponse', async (request) => {
    if (request.body !== undefined) counts.parsed++;
  });
  // The documented order: authentication first, then the plugin.
  before?.(app);
  await app.register(idempotency, { store: memoryStore(), scope: 'global', ...options });
  app.post('/orders', async (_request, reply) => {
    counts.handled++;
    return reply.code(201).send(send(counts));
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  return { port: (app.server.address() as AddressInfo).port, counts, app };
}

interface Answer {
  status: number;
  headers: string;
  body: string;
}

/**
 * One request over its own socket, written in `parts` (a pause between each); the raw response,
 * its Date header taken out. `leave`: the socket is destroyed after the parts, no answer awaited.
 */
function raw(
  port: number,
  key: string,
  body: string,
  parts = 1,
  extra = '',
  leave = false,
  path = '/orders',
): Promise<Answer | undefined> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const bytes = Buffer.from(body);
    const head =
      `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nIdempotency-Key: ${key}\r\n` +
      `Content-Length: ${bytes.length}\r\nConnection: close\r\n${extra}\r\n`;
    let got = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
    });
    socket.on('error', reject);
    socket.on('close', () => {
      if (leave) return resolve(undefined);
      const text = got.toString('latin1');
      const at = text.indexOf('\r\n\r\n');
      const headLines = text.slice(0, at).split('\r\n');
      const status = Number(headLines[0]?.split(' ')[1]);
      // In order of name: a replay's order is its own.
      const headers = headLines
        .slice(1)
        .filter((line) => !/^(date|connection):/i.test(line))
        .sort()
        .join('\n');
      resolve({ status, headers, body: text.slice(at + 4) });
    });
    socket.write(head);
    const size = Math.ceil(bytes.length / parts);
    let i = 0;
    const next = () => {
      // Leaving: gone after the first piece, the body not all sent.
      if (leave && i === 1) return void socket.destroy();
      if (i * size >= bytes.length) return;
      socket.write(bytes.subarray(i * size, (i + 1) * size));
      i++;
      setTimeout(next, 20);
    };
    next();
  });
}

/** A response's sorted header lines with the replay's own added. */
function withReplayed(headers: string | undefined): string {
  return [...(headers ?? '').split('\n'), 'idempotent-replayed: true'].sort().join('\n');
}

describe('Fastify: a replay answered before its body is parsed', () => {
  it('parses a key sent four times once, and replays the same status, headers and bytes', async () => {
    const { port, counts } = await start();
    const body = '{"amount":4200,"currency":"eur"}';
    const first = await raw(port, 'k-1', body);
    expect(first?.status).toBe(201);
    const replays = [await raw(port, 'k-1', body), await raw(port, 'k-1', body), await raw(port, 'k-1', body)];
    expect(counts).toEqual({ parsed: 1, handled: 1 });
    for (const replay of replays) {
      expect(replay?.status).toBe(201);
      expect(replay?.body).toBe(first?.body);
      expect(replay?.headers).toBe(withReplayed(first?.headers));
    }
  });

  it('still runs every preValidation and preHandler hook of the app on a replay: an authentication there is never skipped', async () => {
    for (const hook of ['preValidation', 'preHandler'] as const) {
      let checked = 0;
      const { port, counts } = await start((app) => {
        app.addHook(hook, async (request, reply) => {
          checked++;
          if (request.headers.authorization !== 'Bearer ok') return reply.code(401).send({ error: 'who?' });
        });
      });
      const body = '{"amount":1}';
      expect((await raw(port, 'k-2', body, 1, 'Authorization: Bearer ok\r\n'))?.status).toBe(201);
      expect((await raw(port, 'k-2', body, 1, 'Authorization: Bearer ok\r\n'))?.status).toBe(201);
      // The same key and bytes without the credentials: refused, never the stored response.
      const stranger = await raw(port, 'k-2', body);
      expect(stranger?.status).toBe(401);
      expect(stranger?.body).toBe('{"error":"who?"}');
      expect(checked).toBe(3);
      expect(counts).toEqual({ parsed: 3, handled: 1 });
    }
  });

  it("never skips a body parser of the app's own on a replay: a webhook's signature check still refuses", async () => {
    const app = Fastify();
    apps.push(app);
    app.removeContentTypeParser('application/json');
    app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
      if (request.headers['x-signature'] !== `sig:${(body as string).length}`) {
        return done(Object.assign(new Error('bad signature'), { statusCode: 401 }), undefined);
      }
      done(null, JSON.parse(body as string));
    });
    await app.register(idempotency, { store: memoryStore(), scope: 'global' });
    app.post('/hooks', async (_request, reply) => reply.code(201).send({ secret: 's3cr3t' }));
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as AddressInfo).port;
    const body = '{"event":"paid"}';
    const signed = `X-Signature: sig:${body.length}\r\n`;
    expect((await raw(port, 'k-8', body, 1, signed, false, '/hooks'))?.status).toBe(201);
    expect((await raw(port, 'k-8', body, 1, signed, false, '/hooks'))?.headers).toContain('idempotent-replayed: true');
    const unsigned = await raw(port, 'k-8', body, 1, '', false, '/hooks');
    expect(unsigned?.status).toBe(401);
    expect(unsigned?.body).not.toContain('s3cr3t');
  });

  it('runs a route-level preValidation hook on a replay too', async () => {
    let checked = 0;
    const app = Fastify();
    apps.push(app);
    await app.register(idempotency, { store: memoryStore(), scope: 'global' });
    app.post('/orders', { preValidation: async () => void checked++ }, async (_request, reply) =>
      reply.code(201).send({ ok: true }),
    );
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as AddressInfo).port;
    await raw(port, 'k-3', '{"a":1}');
    expect((await raw(port, 'k-3', '{"a":1}'))?.headers).toContain('idempotent-replayed: true');
    expect(checked).toBe(2);
  });

  it('waits for a body that comes in pieces, and a body that differs takes the usual way (422)', async () => {
    const { port, counts } = await start();
    const body = '{"amount":4200,"currency":"eur","customer":"cus_1"}';
    const first = await raw(port, 'k-4', body, 3);
    const slow = await raw(port, 'k-4', body, 5);
    expect(slow?.body).toBe(first?.body);
    expect(slow?.headers).toContain('idempotent-replayed: true');
    // Same length, one byte changed.
    const other = await raw(port, 'k-4', body.replace('cus_1', 'cus_2'), 2);
    expect(other?.status).toBe(422);
    expect(counts).toEqual({ parsed: 2, handled: 1 });
  });

  it('leaves a client that goes before its body ends to Fastify, emits no replay, and serves the next request', async () => {
    const bus = createBus();
    const replays: string[] = [];
    bus.on('idempotency.replay', (event) => replays.push(event.key));
    const { port, counts } = await start(undefined, undefined, { bus });
    const body = '{"amount":4200,"currency":"eur","customer":"cus_1"}';
    await raw(port, 'k-5', body);
    expect(await raw(port, 'k-5', body, 3, '', true)).toBeUndefined();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(replays).toEqual([]);
    const again = await raw(port, 'k-5', body);
    expect(again?.headers).toContain('idempotent-replayed: true');
    expect(replays).toEqual(['k-5']);
    expect(counts.handled).toBe(1);
  });

  it('replays a body that is not ASCII, and one sent through a serializer of the reply, byte for byte', async () => {
    const { port } = await start(undefined, () => ({ name: 'Zoë', city: 'Kraków' }));
    const body = '{"a":1}';
    const first = await raw(port, 'k-6', body);
    const replay = await raw(port, 'k-6', body);
    expect(Buffer.from(replay?.body ?? '', 'latin1').toString('utf8')).toBe('{"name":"Zoë","city":"Kraków"}');
    expect(replay?.body).toBe(first?.body);

    // A serializer set on each reply (in onRequest, which runs before the replay) would run on
    // a string sent again: the replay is sent as its bytes. With Fastify's JSON type set, and
    // with no type at all (none on the replay either: Fastify gives a Buffer sent without one
    // application/octet-stream).
    for (const type of ['application/json; charset=utf-8', undefined]) {
      const { port: other } = await start((app) => {
        app.addHook('onRequest', async (_request, reply) => {
          reply.serializer((payload: unknown) => `[${JSON.stringify(payload)}]`);
          if (type) reply.type(type);
        });
      });
      const once = await raw(other, 'k-7', body);
      const twice = await raw(other, 'k-7', body);
      expect(once?.body).toBe('[{"id":1,"note":"ok"}]');
      expect(twice?.body).toBe(once?.body);
      if (type) expect(once?.headers).toContain(`content-type: ${type}`);
      else expect(once?.headers).not.toContain('content-type');
      expect(twice?.headers).toBe(withReplayed(once?.headers));
    }
  });
});
