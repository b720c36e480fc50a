import type { AddressInfo } from 'node:net';
import { type Bus, createBus, ManualClock } from '@holdfast/core';
import express from 'express';
import fc from 'fast-check';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency as expressIdempotency } from '../src/express.js';
import { idempotency as fastifyIdempotency } from '../src/fastify.js';
import { type Decision, HttpIdempotency, type HttpIdempotencyOptions, type RequestView } from '../src/http/index.js';
import { type IdempotencyStore, MemoryStore, memoryStore } from '../src/index.js';
import { inProcess } from '../src/memory-store.js';
import { newKey, send, spy } from './http-support/support.js';

// Hostile tests of the in-process store's path without promises (engine decideNow, settle
// through the store's calls under Symbol.for('holdfast.idempotency.memoryStore.now'), Run.atOnce,
// replays that share the store's record): each checks a guarantee a user would, and the async
// path (the same store behind a wrapper) must answer the same.

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

type Event = { type: string } & Record<string, unknown>;

function recorder(): { bus: Bus; events: Event[]; of(type: string): Event[] } {
  const bus = createBus();
  const events: Event[] = [];
  bus.on('*', (e) => {
    events.push(e as unknown as Event);
  });
  return { bus, events, of: (type) => events.filter((e) => e.type === `idempotency.${type}`) };
}

function view(key: string | undefined, body = '{"n":1}', method = 'POST'): RequestView {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (key !== undefined) headers['idempotency-key'] = key;
  return { method, url: '/orders', headers, body: Buffer.from(body) };
}

function core(store: IdempotencyStore, options: Partial<HttpIdempotencyOptions<unknown>> = {}) {
  const { bus, events, of } = recorder();
  const clock = new ManualClock(1_000_000);
  const c = new HttpIdempotency<unknown>('test', { store, scope: 'global', bus, clock, ...options });
  return { core: c, events, of, clock };
}

async function decide(c: HttpIdempotency<unknown>, v: RequestView): Promise<Decision> {
  return await c.decideNow({}, v);
}

async function runAndFinish(
  c: HttpIdempotency<unknown>,
  v: RequestView,
  status: number,
  headers: Record<string, string | string[]>,
  body: string,
): Promise<void> {
  const d = await decide(c, v);
  if (d.action !== 'run') throw new Error(`expected a run, got ${d.action}`);
  d.run.body.add(body);
  await d.run.finish(status, headers);
}

describe('a replay shares nothing with the record it came from', () => {
  for (const [name, make] of [
    ['memoryStore (no promise)', () => memoryStore()],
    ['spy(memoryStore()) (async)', () => spy(memoryStore())],
  ] as const) {
    it(`${name}: changing a replay's body bytes or header lists changes no later replay`, async () => {
      const { core: c } = core(make(), { replayHeaders: ['link'] });
      const key = newKey();
      await runAndFinish(
        c,
        view(key),
        201,
        { 'content-type': 'application/json', link: ['</a>; rel="a"', '</b>; rel="b"'] },
        '{"id":"order-1"}',
      );
      const first = await decide(c, view(key));
      if (first.action !== 'respond') throw new Error('expected a replay');
      // What a later layer may do to a response it was handed: redact its bytes in place, add a link.
      first.response.body.fill(0x58);
      (first.response.headers.link as string[]).push('</evil>; rel="evil"');
      (first.response.headers as Record<string, unknown>)['content-type'] = 'text/evil';
      const second = await decide(c, view(key));
      if (second.action !== 'respond') throw new Error('expected a replay');
      expect(second.response.body.toString()).toBe('{"id":"order-1"}');
      expect(second.response.headers.link).toEqual(['</a>; rel="a"', '</b>; rel="b"']);
      expect(second.response.headers['content-type']).toBe('application/json');
    });
  }

  it('Fastify: an onSend hook that rewrites a replay payload in place changes no later replay', async () => {
    const store = memoryStore();
    const app = Fastify();
    await app.register(fastifyIdempotency, { store, scope: 'global', replayHeaders: ['link'] });
    let calls = 0;
    app.post('/orders', (_req, reply) => {
      calls++;
      reply.code(201).header('link', ['</a>; rel="a"', '</b>; rel="b"']).type('application/json').send('{"secret":"abc"}');
    });
    // A redaction hook, registered after the plugin, that works on the bytes it is handed.
    app.addHook('onSend', (_req, reply, payload, done) => {
      if (Buffer.isBuffer(payload)) for (let i = 0; i < payload.length; i++) payload[i] = (payload[i] as number) ^ 0x20;
      const link = reply.getHeader('link');
      if (Array.isArray(link)) link.push('</hook>; rel="hook"');
      done(null, payload);
    });
    const url = await listen(app);
    const key = newKey();
    const first = await send(url, { key, body: { n: 1 } });
    expect(first.status).toBe(201);
    const replays = [];
    for (let i = 0; i < 3; i++) replays.push(await send(url, { key, body: { n: 1 } }));
    expect(calls).toBe(1);
    // The hook ran on each replay's own copy: each replay is the stored response, flipped once.
    const flipped = Buffer.from('{"secret":"abc"}').map((b) => b ^ 0x20);
    for (const r of replays) {
      expect(r.headers.get('idempotent-replayed')).toBe('true');
      expect(r.bytes.equals(Buffer.from(flipped))).toBe(true);
      expect(r.headers.get('link')).toBe('</a>; rel="a", </b>; rel="b", </hook>; rel="hook"');
    }
  });
});

async function listen(app: FastifyInstance): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' });
  closers.push(() => app.close());
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/orders`;
}

async function listenExpress(app: express.Express, path = '/orders'): Promise<string> {
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', resolve));
  closers.push(
    () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(resolve);
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}${path}`;
}
