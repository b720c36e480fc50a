/**
 * Hostile review (#19): a replay sends exactly the headers its first response sent. A header set
 * as a list (`res.setHeader('link', links)`) is sent when the response's head is written; the
 * app may change that list afterwards (it is its own array: Node keeps it, not a copy), before
 * the response ends and is stored.
 */
import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { memoryStore } from '../src/index.js';
import { slowStore } from './http-support/slow-store.js';

const servers: import('node:http').Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});

/** What a keyed POST to `url` gets: its status, body and the two headers that matter here. */
async function post(url: string) {
  const init = { method: 'POST', body: 'hi', signal: AbortSignal.timeout(3_000) };
  const response = await fetch(url, { ...init, headers: { 'idempotency-key': 'k', 'content-type': 'text/plain' } });
  const [link, replayed] = ['link', 'idempotent-replayed'].map((name) => response.headers.get(name));
  return { status: response.status, link, replayed, body: await response.text() };
}

describe('express middleware: a header list changed by the app after the head went (hostile review of #19)', () => {
  it.each([
    ['memoryStore(), setHeader()', () => memoryStore(), false],
    ['a store in another process, setHeader()', () => slowStore({ completeMs: 5 }), false],
    ['memoryStore(), writeHead()', () => memoryStore(), true],
    ['a store in another process, writeHead()', () => slowStore({ completeMs: 5 }), true],
  ])('is replayed as it was sent (%s)', async (_, store, explicit) => {
    const app = express();
    app.use(idempotency({ store: store(), scope: 'global', replayHeaders: ['link'] }));
    let ran = 0;
    app.post('/orders', (_req, res) => {
      ran++;
      const links = ['</orders/1>; rel="self"'];
      // A header set before writeHead(): Node then applies its headers to the response's own.
      res.setHeader('content-type', 'text/plain');
      if (explicit) res.writeHead(201, { link: links });
      else res.status(201).setHeader('link', links);
      res.write('made,'); // the head goes now (if not yet), with one link
      links.push('</orders/2>; rel="next"'); // the app's own list, changed after
      res.end('done');
    });
    const server = app.listen(0, '127.0.0.1');
    servers.push(server);
    await new Promise<void>((resolve) => server.once('listening', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/orders`;
    const first = await post(url);
    expect(first).toEqual({ status: 201, link: '</orders/1>; rel="self"', replayed: null, body: 'made,done' });
    expect(await post(url)).toEqual({ ...first, replayed: 'true' });
    expect(ran).toBe(1);
  });
});
