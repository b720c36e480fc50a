import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { createBus } from '@holdfast/core';
import express5 from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { memoryStore } from '../src/index.js';
import { closeAll, listenNode } from './http-support/body-apps.js';
import { gate, keyedPost, pipelinedAndLeft, rawClient, settledRetry, tick } from './http-support/leave.js';

const express4 = createRequire(import.meta.url)('express4') as typeof express5;
const versions: [string, typeof express5][] = [
  ['Express 5', express5],
  ['Express 4', express4],
];
afterEach(closeAll);

const _settled = async (port: number, key: string) => {
  const { status, body, type } = await settledRetry(port, key);
  return { status, body, type };
};

describe.each(versions)('%s pipelined', (_, express) => {
  async function serve(
    handler: (req: express5.Request, res: express5.Response) => unknown,
    options: {
      leaseMs?: number;
      wait?: { timeout: number; interval?: number };
      setup?: (s: import('node:http').Server) => void;
    } = {},
  ) {
    const app = express();
    app.use(
      idempotency({
        store: memoryStore(),
        scope: 'global',
        bus: createBus(),
        leaseMs: options.leaseMs ?? 2_000,
        maxRunMs: options.leaseMs ?? 2_000,
        ...(options.wait ? { wait: options.wait } : {}),
      }),
    );
    app.use(express.text());
    const ran = new Map<string, number>();
    app.post('/orders', (req, res) => {
      const key = String(req.headers['idempotency-key']);
      ran.set(key, (ran.get(key) ?? 0) + 1);
      return handler(req, res);
    });
    const server = createServer(app);
    options.setup?.(server);
    const port = await listenNode(server);
    return { port, ran };
  }

  it('same key three times on one socket: 201 then 409 409, ran once', async () => {
    const { port, ran } = await serve(async (_req, res) => {
      await tick(30);
      res.status(201).send('made');
    });
    const { socket, read } = await rawClient(port);
    socket.write(keyedPost('/orders', 'k').repeat(3));
    for (let i = 0; i < 100 && (read().match(/HTTP\/1\.1 /g) ?? []).length < 3; i++) await tick(10);
    socket.destroy();
    expect([...read().matchAll(/HTTP\/1\.1 (\d+)/g)].map((m) => m[1])).toEqual(['201', '409', '409']);
    expect(Object.fromEntries(ran)).toEqual({ k: 1 });
  });

  it('same key three times on one socket, with wait: 201 then two replays, ran once', async () => {
    const { port, ran } = await serve(
      async (_req, res) => {
        await tick(30);
        res.status(201).send('made');
      },
      { wait: { timeout: 2_000, interval: 10 } },
    );
    const { socket, read } = await rawClient(port);
    socket.write(keyedPost('/orders', 'k').repeat(3));
    for (let i = 0; i < 200 && (read().match(/HTTP\/1\.1 /g) ?? []).length < 3; i++) await tick(10);
    socket.destroy();
    expect([...read().matchAll(/HTTP\/1\.1 (\d+)/g)].map((m) => m[1])).toEqual(['201', '201', '201']);
    expect((read().match(/idempotent-replayed: true/gi) ?? []).length).toBe(2);
    expect(Object.fromEntries(ran)).toEqual({ k: 1 });
  });

  it('client leaves while both run, handlers stop: response-lost for both, ran once', async () => {
    const both = gate();
    const release = gate();
    let started = 0;
    const { port, ran } = await serve(async (req, res) => {
      if (++started === 2) both.open();
      await release.opened;
      if (req.socket.destroyed) return;
      res.status(201).send('made');
    });
    const [a, b] = await pipelinedAndLeft(port, both.opened, release.open);
    expect(Object.fromEntries(ran)).toEqual({ a: 1, b: 1 });
    expect([a.status, b.status]).toEqual([500, 500]);
  }, 10_000);
});
