/**
 * Hostile review of #19's "a reply of the last context's prototype skips the hijack walk": the
 * plugin patches `hijack` on the chain of a reply's prototype once, and skips the walk for a reply
 * of the same prototype as the last one. Replies of many prototypes in turn (encapsulated contexts
 * of one app, two apps, and two copies of Fastify, each with a reply prototype of its own) each
 * have their hijacked answer stored: the retry replays it, the handler ran once.
 */
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { createBus } from '@holdfast/core';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/fastify.js';
import { memoryStore } from '../src/index.js';
import { sendKeyed } from './http-support/leave.js';

const require = createRequire(import.meta.url);

/** Fastify, loaded again: a second copy (as two versions in one tree), its own reply prototype. */
function anotherFastify(): (options?: object) => FastifyInstance {
  const first = require('fastify');
  const dir = require.resolve('fastify').replace(/fastify\.js$/, '');
  const kept = Object.keys(require.cache).filter(
    (file) => file.startsWith(dir) && !file.includes('node_modules', dir.length),
  );
  const saved = kept.map((file) => [file, require.cache[file]] as const);
  for (const file of kept) delete require.cache[file];
  try {
    const second = require('fastify');
    if (second === first) throw new Error('the same copy of Fastify');
    return second;
  } finally {
    for (const [file, mod] of saved) require.cache[file] = mod;
  }
}

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

/** An app guarding its root routes and those of two nested encapsulated contexts (reply decorated in each). */
async function app(make: (options?: object) => FastifyInstance, name: string, ran: Map<string, number>) {
  const server = make();
  apps.push(server);
  await server.register(idempotency, { store: memoryStore(), scope: 'global', bus: createBus() });
  server.post('/r', hijacking(ran, `${name}/root`));
  await server.register(async (child) => {
    child.decorateReply('childOnly', null);
    child.post('/c', hijacking(ran, `${name}/child`));
    await child.register(async (grandchild) => {
      grandchild.decorateReply('grandchildOnly', null);
      grandchild.post('/g', hijacking(ran, `${name}/grandchild`));
    });
  });
  await server.listen({ port: 0, host: '127.0.0.1' });
  return `http://127.0.0.1:${(server.server.address() as AddressInfo).port}`;
}

describe('fastify plugin: hijacked replies of many reply prototypes in turn (hostile review of #19)', () => {
  it('stores each hijacked answer: its retry replays it, each handler ran once', async () => {
    const Fastify = require('fastify') as (options?: object) => FastifyInstance;
    const ran = new Map<string, number>();
    const a = await app(Fastify, 'a', ran);
    const b = await app(Fastify, 'b', ran);
    const c = await app(anotherFastify(), 'c', ran);
    // Each prototype after another one, and after itself.
    const order = ['a/r', 'c/c', 'b/g', 'a/g', 'c/r', 'c/r', 'b/c', 'a/c', 'c/g', 'b/r', 'a/r'];
    const base: Record<string, string> = { a, b, c };
    const where = (step: string) => {
      const [server, route] = step.split('/') as [string, string];
      return {
        url: `${base[server]}/${route}`,
        name: `${server}/${{ r: 'root', c: 'child', g: 'grandchild' }[route]}`,
      };
    };
    for (let i = 0; i < order.length; i++) {
      const { url, name } = where(order[i] as string);
      const first = await sendKeyed(url, `k${i}`);
      expect({ i, ...first }).toEqual({ i, status: 201, type: 'text/plain', replayed: null, body: `made by ${name}` });
    }
    for (let i = 0; i < order.length; i++) {
      const { url, name } = where(order[i] as string);
      const retry = await sendKeyed(url, `k${i}`);
      expect({ i, ...retry }).toEqual({
        i,
        status: 201,
        type: 'text/plain',
        replayed: 'true',
        body: `made by ${name}`,
      });
    }
    const runs: Record<string, number> = {};
    for (const step of order) runs[where(step).name] = (runs[where(step).name] ?? 0) + 1;
    expect(Object.fromEntries(ran)).toEqual(runs);
  });
});
