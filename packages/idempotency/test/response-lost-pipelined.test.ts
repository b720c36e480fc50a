import { once } from 'node:events';
import { createServer } from 'node:http';
import { connect } from 'node:net';
import { createBus } from '@holdfast/core';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { memoryStore } from '../src/index.js';
import { closeAll, listenNode } from './http-support/body-apps.js';
import { gate, keyedPost, sendKeyed } from './http-support/leave.js';

/**
 * HTTP/1.1 pipelining: a second keyed request on a connection whose first response is not done
 * has no socket of its own yet (Node queues its response). Its client leaves while both
 * handlers run: the second handler's effect happened as much as the first's, and its retry must
 * not run it again.
 */
afterEach(closeAll);

const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('a pipelined keyed request whose client left', () => {
  it('is stored when its handler ends it: the retry gets the replay, and the handler ran once', async () => {
    const app = express();
    app.use(idempotency({ store: memoryStore(), scope: 'global', bus: createBus() }));
    const ran = new Map<string, number>();
    const both = gate();
    const release = gate();
    app.post('/orders', async (req, res) => {
      const key = String(req.headers['idempotency-key']);
      ran.set(key, (ran.get(key) ?? 0) + 1);
      if (ran.size === 2 && [...ran.values()].every((n) => n === 1)) both.open();
      await release.opened;
      res.status(201).send(`made ${key}`);
    });
    const port = await listenNode(createServer(app));
    const socket = connect(port, '127.0.0.1');
    socket.on('data', () => {});
    await once(socket, 'connect');
    socket.write(keyedPost('/orders', 'a') + keyedPost('/orders', 'b'));
    await both.opened;
    const closed = once(socket, 'close');
    socket.destroy();
    await closed;
    await tick(50);
    release.open();
    const retries: Record<string, { status: number; body: string }> = {};
    for (const key of ['a', 'b']) {
      let answer = await sendKeyed(`http://127.0.0.1:${port}/orders`, key);
      for (let turn = 0; turn < 100 && answer.status === 409; turn++) {
        await tick(20);
        answer = await sendKeyed(`http://127.0.0.1:${port}/orders`, key);
      }
      retries[key] = { status: answer.status, body: answer.body };
    }
    expect(Object.fromEntries(ran)).toEqual({ a: 1, b: 1 });
    expect(retries).toEqual({ a: { status: 201, body: 'made a' }, b: { status: 201, body: 'made b' } });
  });

  it('that its handler never ends gets the response-lost problem, never a second run', async () => {
    const app = express();
    app.use(idempotency({ store: memoryStore(), scope: 'global', bus: createBus(), leaseMs: 2_000, maxRunMs: 2_000 }));
    const ran = new Map<string, number>();
    const both = gate();
    const release = gate();
    app.post('/orders', async (req, res) => {
      const key = String(req.headers['idempotency-key']);
      ran.set(key, (ran.get(key) ?? 0) + 1);
      if (ran.size === 2 && [...ran.values()].every((n) => n === 1)) both.open();
      await release.opened;
      // A handler that stops when its client has left: it never ends the response.
      if (req.socket.destroyed) return;
      res.status(201).send(`made ${key}`);
    });
    const port = await listenNode(createServer(app));
    const socket = connect(port, '127.0.0.1');
    socket.on('data', () => {});
    await once(socket, 'connect');
    socket.write(keyedPost('/orders', 'a') + keyedPost('/orders', 'b'));
    await both.opened;
    const closed = once(socket, 'close');
    socket.destroy();
    await closed;
    await tick(50);
    release.open();
    const retries: Record<string, { status: number; type: string | null }> = {};
    for (const key of ['a', 'b']) {
      let answer = await sendKeyed(`http://127.0.0.1:${port}/orders`, key);
      for (let turn = 0; turn < 150 && answer.status === 409; turn++) {
        await tick(20);
        answer = await sendKeyed(`http://127.0.0.1:${port}/orders`, key);
      }
      retries[key] = { status: answer.status, type: answer.type };
    }
    expect(Object.fromEntries(ran)).toEqual({ a: 1, b: 1 });
    const lost = { status: 500, type: 'application/problem+json' };
    expect(retries).toEqual({ a: lost, b: lost });
  });

  it('that got its socket after the first and was cut off there: the response-lost problem, never a second run', async () => {
    const app = express();
    app.use(idempotency({ store: memoryStore(), scope: 'global', bus: createBus(), leaseMs: 2_000, maxRunMs: 2_000 }));
    const ran = new Map<string, number>();
    const started = gate();
    const release = gate();
    const bRuns = gate();
    app.post('/orders', async (req, res) => {
      const key = String(req.headers['idempotency-key']);
      ran.set(key, (ran.get(key) ?? 0) + 1);
      // a answers once b's handler runs, so b's response was queued behind a's when claimed.
      if (key === 'a') return void bRuns.opened.then(() => res.status(201).send('made a'));
      expect(res.socket).toBeNull();
      bRuns.open();
      // a is done by now, so this one has the socket.
      await tick(50);
      expect(res.socket).not.toBeNull();
      res.status(201).write('part one');
      started.open();
      await release.opened;
      // A handler that stops when its client has left: it never ends the response.
      if (req.socket.destroyed) return;
      res.end('part two');
    });
    const port = await listenNode(createServer(app));
    const socket = connect(port, '127.0.0.1');
    let read = '';
    socket.on('data', (chunk: Buffer) => {
      read += chunk.toString('latin1');
    });
    await once(socket, 'connect');
    socket.write(keyedPost('/orders', 'a') + keyedPost('/orders', 'b'));
    await started.opened;
    for (let turn = 0; turn < 100 && !read.includes('part one'); turn++) await tick(10);
    expect(read).toContain('part one');
    const closed = once(socket, 'close');
    socket.destroy();
    await closed;
    await tick(50);
    release.open();
    let answer = await sendKeyed(`http://127.0.0.1:${port}/orders`, 'b');
    for (let turn = 0; turn < 150 && answer.status === 409; turn++) {
      await tick(20);
      answer = await sendKeyed(`http://127.0.0.1:${port}/orders`, 'b');
    }
    expect(Object.fromEntries(ran)).toEqual({ a: 1, b: 1 });
    expect({ status: answer.status, type: answer.type }).toEqual({ status: 500, type: 'application/problem+json' });
  });
});
