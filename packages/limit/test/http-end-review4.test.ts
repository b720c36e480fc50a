import type { ServerResponse } from 'node:http';
import { type ClientHttp2Session, connect, constants } from 'node:http2';
import { connect as tcp } from 'node:net';
import express from 'express';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { loadShedding as expressShedding } from '../src/express.js';
import { loadShedding } from '../src/fastify.js';
import { bulkhead } from '../src/index.js';

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

/** The part of a Fastify http2 instance the tests declare routes with. */
type Routes = { get(path: string, handler: (req: unknown, reply: { raw: unknown }) => Promise<string>): unknown };

async function serve(policy: ReturnType<typeof bulkhead>, routes: (app: Routes) => void, initialWindowSize = 65_535) {
  const app = Fastify({ http2: true });
  closers.push(() => app.close());
  await app.register(loadShedding, { policy, holdAfterHangUp: 30_000 });
  routes(app as unknown as Routes);
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  const client: ClientHttp2Session = connect(url, { settings: { initialWindowSize } });
  closers.unshift(async () => void client.destroy());
  const status = (path: string) =>
    new Promise<number>((resolve, reject) => {
      const req = client.request({ ':path': path });
      req.on('response', (h) => resolve(Number(h[':status'])));
      req.on('data', () => {});
      req.on('error', reject);
    });
  return { client, status };
}

describe('load shedding over HTTP/2 (Fastify http2)', () => {
  it('a stream the client resets while its handler runs keeps its place until the handler ends', async () => {
    const b = bulkhead({ maxConcurrent: 1, policies: false });
    let open = () => {};
    const gate = new Promise<void>((r) => (open = r));
    let raw: ServerResponse | undefined;
    let closed = false;
    const { client, status } = await serve(b, (app) => {
      app.get('/slow', async (_req, reply) => {
        raw = reply.raw as unknown as ServerResponse;
        raw.once('close', () => (closed = true));
        await gate;
        return 'ok';
      });
      app.get('/other', async () => 'ok');
    });
    const first = client.request({ ':path': '/slow' });
    first.on('error', () => {});
    await expect.poll(() => raw).toBeDefined();
    first.close(constants.NGHTTP2_CANCEL);
    await expect.poll(() => closed).toBe(true);
    // Before: the reset's 'finish' read as the handler ending its response: running 0, and the
    // next request ran a second handler beside the first.
    expect(b.running).toBe(1);
    expect(await status('/other')).toBe(503);
    open();
    await expect.poll(() => b.running).toBe(0);
    expect(await status('/other')).toBe(200);
  });

  it('a client that never reads (its window at 0) keeps no place once the handler ended the response', async () => {
    const b = bulkhead({ maxConcurrent: 1, policies: false });
    let raw: ServerResponse | undefined;
    const { client } = await serve(
      b,
      (app) =>
        app.get('/page', async (_req, reply) => {
          raw = reply.raw as unknown as ServerResponse;
          return 'a page';
        }),
      0,
    );
    client.request({ ':path': '/page' }).on('error', () => {});
    await expect.poll(() => raw?.writableEnded).toBe(true);
    // Before: held until the stream closed (its 'finish' comes then), which such a client puts off
    // for as long as its session lives: 100 streams of one connection held 100 places.
    await expect.poll(() => b.running, { timeout: 2_000 }).toBe(0);
  });
});

describe('load shedding over HTTP/1.1 pipelining (Express)', () => {
  it('requests pipelined behind a response their client never reads keep no place once their handlers ended', async () => {
    const b = bulkhead({ maxConcurrent: 10, policies: false });
    const app = express();
    app.use(expressShedding({ policy: b }));
    let ended = 0;
    app.get('/big', (_req, res) => {
      res.end('x'.repeat(20_000_000));
      ended++;
    });
    app.get('/small', (_req, res) => {
      res.end('ok');
      ended++;
    });
    const server = app.listen(0, '127.0.0.1');
    closers.push(
      () =>
        new Promise<void>((r) => {
          server.close(() => r());
          server.closeAllConnections();
        }),
    );
    await new Promise((r) => server.once('listening', r));
    const socket = tcp((server.address() as { port: number }).port, '127.0.0.1');
    closers.unshift(async () => void socket.destroy());
    await new Promise((r) => socket.once('connect', r));
    socket.pause();
    socket.write(`GET /big HTTP/1.1\r\nHost: x\r\n\r\n${'GET /small HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(5)}`);
    await expect.poll(() => ended).toBe(6);
    // Before: each small response waited behind the unread one for its 'prefinish': 5 places held
    // for as long as the connection stayed open.
    await expect.poll(() => b.running, { timeout: 2_000 }).toBe(0);
  });
});
