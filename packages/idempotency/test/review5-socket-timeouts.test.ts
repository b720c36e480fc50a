import { once } from 'node:events';
import { createServer } from 'node:http';
import type { Socket } from 'node:net';
import { createBus } from '@holdfast/core';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { memoryStore } from '../src/index.js';
import { closeAll, listenNode } from './http-support/body-apps.js';
import { gate, keyedPost, rawClient, sendKeyed, settledRetry, tick } from './http-support/leave.js';

afterEach(closeAll);

const settled = async (port: number, path: string, key: string) => {
  const { status, replayed } = await settledRetry(port, key, path);
  return [status, replayed];
};

describe('review5: socket timeouts set on the response, or that do not close the connection', () => {
  it('res.setTimeout() once the response began: the handler that still runs is not run again by the retry', async () => {
    const app = express();
    app.use(idempotency({ store: memoryStore(), scope: 'global', bus: createBus(), leaseMs: 2_000 }));
    let ran = 0;
    const finished = gate();
    // Held until the retry has been answered: slower than its socket timeout, however loaded the machine.
    const slow = gate();
    app.post('/orders', async (_req, res) => {
      ran++;
      res.setTimeout(100); // no callback: Node destroys the socket when it fires
      res.status(201).write('part 1;');
      await slow.opened;
      res.end('part 2');
      finished.open();
    });
    const port = await listenNode(createServer(app));
    const { socket } = await rawClient(port);
    socket.write(keyedPost('/orders', 'k'));
    await once(socket, 'close'); // the server timed the socket out
    const retry = await sendKeyed(`http://127.0.0.1:${port}/orders`, 'k').then(
      (answer) => answer.status,
      () => 'no answer',
    );
    slow.open();
    await finished.opened;
    const after = await settled(port, '/orders', 'k').catch(() => 'no answer');
    expect({ ran, retry, after }).toEqual({
      ran: 1,
      retry: 409,
      after: [201, 'true'],
    });
  });

  it("a timeout answered by the response's own callback (the connection kept): a later handler that throws after its headers on that connection gets the response-lost problem, as the README says", async () => {
    const app = express();
    app.use(idempotency({ store: memoryStore(), scope: 'global', bus: createBus(), leaseMs: 1_000 }));
    const ran = { slow: 0, fails: 0 };
    app.post('/slow', (_req, res) => {
      ran.slow++;
      // A per-response deadline that answers itself: Node keeps the connection.
      res.setTimeout(50, () => res.status(503).send('too slow'));
    });
    app.post('/fails', (_req, res, next) => {
      ran.fails++;
      res.status(200).write('started;');
      // After its headers: Express's final handler destroys the socket.
      next(new Error('failed half way'));
    });
    const server = createServer(app);
    server.setTimeout(5_000);
    const port = await listenNode(server);
    const { socket, read } = await rawClient(port);
    socket.write(keyedPost('/slow', 'a'));
    for (let turn = 0; turn < 100 && !read().includes('too slow'); turn++) await tick(10);
    expect(read()).toContain('HTTP/1.1 503');
    socket.write(keyedPost('/fails', 'b'));
    await once(socket, 'close');
    // Closed by the server once its 200 went, not by a timeout: the response-lost problem, and
    // the retry does not run it again.
    const retry = await settled(port, '/fails', 'b').catch(() => 'cut off');
    expect({ retry, ran }).toEqual({ retry: [500, 'true'], ran: { slow: 1, fails: 1 } });
  });

  it('a keep-alive connection with a socket timeout keeps one timeout listener, and no close listener per request, after 1,000 keyed requests', async () => {
    const app = express();
    app.use(idempotency({ store: memoryStore(), scope: 'global', bus: createBus() }));
    app.post('/orders', (_req, res) => {
      res.status(201).send('made');
    });
    const server = createServer(app);
    server.setTimeout(10_000);
    let connection: Socket | undefined;
    server.on('connection', (s) => {
      connection = s;
    });
    const port = await listenNode(server);
    const { socket, read } = await rawClient(port);
    const counts: number[][] = [];
    for (let i = 0; i < 1_000; i++) {
      const before = read().length;
      socket.write(keyedPost('/orders', `k${i}`));
      while (read().length === before || !read().endsWith('made')) await once(socket, 'data');
      if (i === 0 || i === 999) {
        const c = connection as Socket;
        counts.push([c.listenerCount('timeout'), c.listenerCount('close'), c.listenerCount('end')]);
      }
    }
    expect(counts[1]).toEqual(counts[0]);
    expect((counts[0] as number[])[0]).toBeLessThanOrEqual(2); // Node's own and ours
    socket.destroy();
    // 1,000 sequential requests: 3 s on a quiet machine, past the 5 s default at load 20.
  }, 30_000);
});
