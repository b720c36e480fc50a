import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency as expressIdempotency } from '../src/express.js';
import { idempotency as fastifyIdempotency } from '../src/fastify.js';
import { memoryStore } from '../src/index.js';
import { closeAll, listenNode } from './http-support/body-apps.js';

afterEach(closeAll);

// The adapters read only the headers a record may keep off the response (and `Connection`,
// whose list names more hop-by-hop headers): what a replay carries, through a real server.
const options = { scope: 'global' as const, replayHeaders: ['x-trace', 'x-hop'] };
const set = {
  'content-type': 'application/json',
  'x-trace': 'abc',
  'x-hop': 'dropped',
  'x-other': 'not listed',
  connection: 'x-hop',
};

async function twice(url: string) {
  const send = () =>
    fetch(`${url}/orders`, {
      method: 'POST',
      headers: { 'idempotency-key': 'k', 'content-type': 'application/json' },
      body: '{"a":1}',
    });
  const first = await send();
  await first.text();
  const replay = await send();
  const body = await replay.text();
  const picked = (r: Response) => ({
    replayed: r.headers.get('idempotent-replayed'),
    trace: r.headers.get('x-trace'),
    hop: r.headers.get('x-hop'),
    other: r.headers.get('x-other'),
  });
  const type = replay.headers.get('content-type');
  return { first: picked(first), replay: picked(replay), body, sameType: type === first.headers.get('content-type') };
}

const expected = {
  first: { replayed: null, trace: 'abc', hop: 'dropped', other: 'not listed' },
  replay: { replayed: 'true', trace: 'abc', hop: null, other: null },
  body: '{"id":1}',
  sameType: true,
};

describe('response headers kept for a replay, through a real server', () => {
  for (const how of ['setHeader', 'writeHead'] as const) {
    it(`Express, headers given by ${how}: the listed ones, not those Connection names, nor unlisted ones`, async () => {
      const app = express();
      app.use(expressIdempotency({ store: memoryStore(), ...options }));
      app.post('/orders', (_req, res) => {
        if (how === 'writeHead') {
          res.writeHead(201, set);
        } else {
          for (const [name, value] of Object.entries(set)) res.setHeader(name, value);
          res.statusCode = 201;
        }
        res.end('{"id":1}');
      });
      expect(await twice(`http://127.0.0.1:${await listenNode(createServer(app))}`)).toEqual(expected);
    });
  }

  it('Fastify: the listed ones, not those Connection names, nor unlisted ones', async () => {
    const app = Fastify();
    await app.register(fastifyIdempotency, { store: memoryStore(), ...options });
    app.post('/orders', async (_request, reply) => reply.code(201).headers(set).send('{"id":1}'));
    await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      expect(await twice(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}`)).toEqual(expected);
    } finally {
      await app.close();
    }
  });

  it('Express, a header given twice in a flat writeHead list: the replay carries what was sent', async () => {
    // Once a header is set (Express sets X-Powered-By), Node applies writeHead's list with
    // setHeader: on Node 20 the last value of a name wins, on Node 22 both are sent. The record
    // took both values from the list, whatever Node sent: a replay unlike the response.
    const app = express();
    app.use(expressIdempotency({ store: memoryStore(), scope: 'global', replayHeaders: ['link'] }));
    app.post('/orders', (_req, res) => {
      res.writeHead(201, ['Content-Type', 'application/json', 'Link', '</a>', 'Link', '</b>']);
      res.end('{"id":1}');
    });
    const url = `http://127.0.0.1:${await listenNode(createServer(app))}/orders`;
    const send = () => fetch(url, { method: 'POST', headers: { 'idempotency-key': 'k' }, body: '{}' });
    const first = await send();
    await first.text();
    const replay = await send();
    await replay.text();
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.headers.get('link')).toBe(first.headers.get('link'));
    expect(replay.headers.get('content-type')).toBe('application/json');
  });
});
