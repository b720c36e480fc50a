import { spawnSync } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { createBus } from '@holdfast/core';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/fastify.js';
import { memoryStore } from '../src/index.js';
import { sendKeyed } from './http-support/leave.js';

// Review of aa27a3c7's watchHijack: the reply whose `hijack` was seen to is now known by its
// constructor (Fastify's per-context Reply) instead of its prototype. A hijacked response must
// still be stored wherever the reply comes from: its retry replays it, the handler ran once.

const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

const hijacking = (ran: Map<string, number>, where: string) => async (_request: unknown, reply: FastifyReply) => {
  ran.set(where, (ran.get(where) ?? 0) + 1);
  reply.hijack();
  reply.raw.writeHead(201, { 'content-type': 'text/plain' });
  reply.raw.end(`made by ${where}`);
};

async function listen(app: FastifyInstance): Promise<string> {
  apps.push(app);
  await app.listen({ port: 0, host: '127.0.0.1' });
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
}

describe('watchHijack keyed by the reply constructor', () => {
  it("a reply given a prototype of its own (an own hijack, inheriting the context's constructor) is still watched", async () => {
    const ran = new Map<string, number>();
    const app = Fastify();
    await app.register(idempotency, { store: memoryStore(), scope: 'global', bus: createBus() });
    app.post('/plain', hijacking(ran, 'plain'));
    // A library that gives the reply a prototype with its own `hijack` (doing what Fastify's does),
    // without a constructor of its own: reply.constructor is still the context's Reply.
    let odd: object | undefined;
    app.post(
      '/odd',
      {
        onRequest: (_request, reply, done) => {
          if (odd === undefined) {
            const base = Object.getPrototypeOf(reply) as object;
            const hijacked = Object.getOwnPropertySymbols(reply).find(
              (key) => key.description === 'fastify.reply.hijacked',
            ) as symbol;
            odd = Object.create(base, {
              hijack: {
                value: function (this: Record<symbol, unknown>) {
                  this[hijacked] = true;
                  return this;
                },
                writable: true,
                configurable: true,
              },
            });
          }
          Object.setPrototypeOf(reply, odd as object);
          done();
        },
      },
      hijacking(ran, 'odd'),
    );
    const url = await listen(app);
    // The context's Reply is seen first, then the odd prototype, then each again.
    const order = ['plain', 'odd', 'plain', 'odd'];
    for (let i = 0; i < order.length; i++) {
      expect({ i, ...(await sendKeyed(`${url}/${order[i]}`, `k${i}`)) }).toMatchObject({
        i,
        status: 201,
        replayed: null,
      });
    }
    for (let i = 0; i < order.length; i++) {
      expect({ i, ...(await sendKeyed(`${url}/${order[i]}`, `k${i}`)) }).toEqual({
        i,
        status: 201,
        type: 'text/plain',
        replayed: 'true',
        body: `made by ${order[i]}`,
      });
    }
    expect(Object.fromEntries(ran)).toEqual({ plain: 2, odd: 2 });
  });

  it('the ESM and CommonJS builds both registered (nested), hijacking handlers in two contexts: each stored once, run once', () => {
    // Both builds as a user loads them (a child process: no source condition).
    const script = `
      import { createRequire } from 'node:module';
      import Fastify from 'fastify';
      import { idempotency as esm } from './dist/fastify.js';
      import { memoryStore } from './dist/index.js';
      const cjs = createRequire(import.meta.url)('./dist/fastify.cjs').idempotency;
      const ran = {};
      const hijacking = (where) => async (_request, reply) => {
        ran[where] = (ran[where] ?? 0) + 1;
        reply.hijack();
        reply.raw.writeHead(201, { 'content-type': 'text/plain' });
        reply.raw.end('made by ' + where);
      };
      const app = Fastify();
      await app.register(esm, { store: memoryStore(), scope: 'global' });
      app.post('/r', hijacking('root'));
      await app.register(async (child) => {
        child.decorateReply('childOnly', null);
        await child.register(cjs, { store: memoryStore(), scope: 'global' });
        child.post('/c', hijacking('child'));
      });
      await app.register(async (other) => {
        other.decorateReply('otherOnly', null);
        other.post('/o', hijacking('other'));
      });
      const url = await app.listen({ port: 0, host: '127.0.0.1' });
      const order = ['r', 'c', 'o', 'c', 'r', 'o', 'c'];
      const answers = [];
      for (const pass of [0, 1]) {
        for (let i = 0; i < order.length; i++) {
          const res = await fetch(url + '/' + order[i], {
            method: 'POST',
            headers: { 'content-type': 'text/plain', 'idempotency-key': 'k' + i },
            body: 'hi',
          });
          answers.push([pass, i, res.status, res.headers.get('idempotent-replayed'), await res.text()]);
        }
      }
      await app.close();
      console.log(JSON.stringify({ answers, ran }));
    `;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: resolve(import.meta.dirname, '..'),
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(child.stderr).toBe('');
    const { answers, ran } = JSON.parse(child.stdout) as { answers: unknown[][]; ran: Record<string, number> };
    const order = ['r', 'c', 'o', 'c', 'r', 'o', 'c'];
    const name = { r: 'root', c: 'child', o: 'other' } as Record<string, string>;
    expect(answers).toEqual(
      [0, 1].flatMap((pass) =>
        order.map((route, i) => [pass, i, 201, pass === 1 ? 'true' : null, `made by ${name[route]}`]),
      ),
    );
    expect(ran).toEqual({ root: 2, child: 3, other: 2 });
  });
});
