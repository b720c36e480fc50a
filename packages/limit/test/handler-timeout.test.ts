import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import type { Policy } from '@holdfast/core';
import timeout from 'connect-timeout';
import express from 'express';
import Fastify, { type FastifyReply } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { loadShedding as expressShedding } from '../src/express.js';
import { loadShedding as fastifyShedding } from '../src/fastify.js';
import { bulkhead } from '../src/index.js';

/**
 * A framework's timeout answers 503 while the handler still runs (Fastify's `handlerTimeout`,
 * Express's connect-timeout). The place was freed when that answer ended the response, so under
 * overload, the very moment timeouts fire, every timed-out handler made room for one more: more
 * handlers ran at once than the policy allows, and the overload fed itself.
 */
/** The apps' timeout: well above the time a request takes to reach its handler on a loaded machine. */
const TIMEOUT = 150;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((close) => close()));
});

interface Stats {
  running: number;
  peak: number;
  ran: number;
}

async function get(base: string, path = '/work'): Promise<{ status: number; type: string | undefined }> {
  const response = await fetch(`${base}${path}`);
  // Express's final handler answers the timeout in HTML; the shed and Fastify's answers are JSON.
  if (!response.headers.get('content-type')?.includes('json'))
    return { status: response.status, type: await response.text() };
  const body = (await response.json()) as { type?: string; code?: string };
  return { status: response.status, type: body.type ?? body.code };
}

async function fastifyApp(
  work: number | Promise<void>,
  options: { holdAfterHangUp?: number } = {},
  policy = bulkhead({ maxConcurrent: 2, maxQueue: 0 }),
  { declaredFirst = false } = {},
) {
  const stats: Stats = { running: 0, peak: 0, ran: 0 };
  const app = Fastify({ handlerTimeout: TIMEOUT });
  const plugin = app.register(fastifyShedding, { policy, ...options });
  // Not awaited: the route is declared before the plugin has loaded, and onRoute never sees it.
  if (!declaredFirst) await plugin;
  app.get('/work', async () => {
    stats.ran++;
    stats.peak = Math.max(stats.peak, ++stats.running);
    await (typeof work === 'number' ? sleep(work) : work);
    stats.running--;
    return { ok: true };
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  closers.push(() => app.close());
  return { base: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, stats };
}

async function expressApp(
  work: number,
  options: { holdAfterHangUp?: number } = {},
  policy = bulkhead({ maxConcurrent: 2, maxQueue: 0 }),
  respond = true,
) {
  const stats: Stats = { running: 0, peak: 0, ran: 0 };
  const app = express();
  app.use(timeout(`${TIMEOUT}ms`, { respond }));
  app.use(expressShedding({ policy, ...options }));
  app.get('/work', async (_req, res) => {
    stats.ran++;
    stats.peak = Math.max(stats.peak, ++stats.running);
    await sleep(work);
    stats.running--;
    if (!res.headersSent) res.json({ ok: true });
  });
  const server: Server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  closers.push(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, stats };
}

describe('load shedding and a timeout that answers while the handler runs', () => {
  it('fastify handlerTimeout: a timed-out handler keeps its place until it ends; then the place is free', async () => {
    // The handlers end when the test says (a 400 ms sleep ended before the next requests came on
    // a loaded machine, and they were let in).
    let end = () => {};
    const { base, stats } = await fastifyApp(new Promise<void>((resolve) => (end = resolve)));
    const first = await Promise.all([get(base), get(base)]);
    expect(first.map((r) => r.status)).toEqual([503, 503]);
    expect(first.map((r) => r.type)).toEqual(['FST_ERR_HANDLER_TIMEOUT', 'FST_ERR_HANDLER_TIMEOUT']);
    // Both handlers still run: these are shed at once, none runs.
    const more = await Promise.all([get(base), get(base), get(base)]);
    expect(more.map((r) => r.type)).toEqual(Array(3).fill('urn:holdfast:problem:overloaded'));
    expect(stats.peak).toBe(2);
    expect(stats.ran).toBe(2);
    // The handlers end: their places are free again.
    end();
    for (let turn = 0; turn < 100 && stats.running > 0; turn++) await sleep(10);
    await sleep(20);
    const later = await get(base);
    expect(later.status).toBe(200);
    expect(stats.ran).toBe(3);
  });

  it('fastify handlerTimeout: a handler that never ends frees its place after holdAfterHangUp', async () => {
    const { base, stats } = await fastifyApp(60_000, { holdAfterHangUp: 300 });
    await Promise.all([get(base), get(base)]);
    expect((await get(base)).type).toBe('urn:holdfast:problem:overloaded');
    await sleep(400);
    expect((await get(base)).type).toBe('FST_ERR_HANDLER_TIMEOUT');
    expect(stats.ran).toBe(3);
  });

  it('fastify handlerTimeout on a route declared before the plugin loaded: its place is held for holdAfterHangUp', async () => {
    const { base, stats } = await fastifyApp(60_000, { holdAfterHangUp: 300 }, undefined, { declaredFirst: true });
    await Promise.all([get(base), get(base)]);
    expect((await get(base)).type).toBe('urn:holdfast:problem:overloaded');
    expect(stats.peak).toBe(2);
    await sleep(400);
    expect((await get(base)).type).toBe('FST_ERR_HANDLER_TIMEOUT');
    expect(stats.ran).toBe(3);
  });

  it('fastify handlerTimeout answers a request waiting in the queue: it leaves the queue at once, never runs, and keeps no place', async () => {
    const policy = bulkhead({ maxConcurrent: 1, maxQueue: 5 });
    const { base, stats } = await fastifyApp(300, {}, policy);
    const answers = await Promise.all([get(base), get(base)]);
    expect(answers.map((r) => r.type)).toEqual(['FST_ERR_HANDLER_TIMEOUT', 'FST_ERR_HANDLER_TIMEOUT']);
    expect(policy.snapshot()).toMatchObject({ running: 1, queued: 0 });
    for (let turn = 0; turn < 100 && stats.running > 0; turn++) await sleep(10);
    await sleep(20);
    expect(policy.snapshot()).toMatchObject({ running: 0, queued: 0 });
    expect(stats.ran).toBe(1);
    await get(base);
    expect(stats.ran).toBe(2);
  });

  it('express with connect-timeout: a timed-out handler keeps its place until holdAfterHangUp (its end cannot be seen)', async () => {
    const { base, stats } = await expressApp(60_000, { holdAfterHangUp: 300 });
    const first = await Promise.all([get(base), get(base)]);
    expect(first.map((r) => r.status)).toEqual([503, 503]);
    expect(first.every((r) => r.type?.includes('Response timeout'))).toBe(true);
    const more = await Promise.all([get(base), get(base), get(base)]);
    expect(more.map((r) => r.type)).toEqual(Array(3).fill('urn:holdfast:problem:overloaded'));
    expect(stats.peak).toBe(2);
    await sleep(400);
    expect((await get(base)).type).toContain('Response timeout');
    expect(stats.ran).toBe(3);
  });

  it('express with connect-timeout answering a request in the queue: it leaves the queue, never runs, keeps no place', async () => {
    const policy = bulkhead({ maxConcurrent: 1, maxQueue: 5 });
    const { base, stats } = await expressApp(300, { holdAfterHangUp: 100 }, policy);
    const answers = await Promise.all([get(base), get(base)]);
    expect(answers.map((r) => r.status)).toEqual([503, 503]);
    expect(policy.snapshot()).toMatchObject({ running: 1, queued: 0 });
    await sleep(250); // holdAfterHangUp for the one that ran
    expect(policy.snapshot()).toMatchObject({ running: 0, queued: 0 });
    expect(stats.ran).toBe(1);
  });

  it.each([
    [
      'an async handler',
      async (reply: FastifyReply, later: () => void) => {
        setTimeout(later, 60_000).unref();
        return reply;
      },
    ],
    [
      'a handler',
      (reply: FastifyReply, later: () => void) => {
        setTimeout(later, 60_000).unref();
        return reply;
      },
    ],
  ])(
    'fastify handlerTimeout: %s that returns the reply (sent later) keeps its place for holdAfterHangUp: its promise settles as the timeout answers',
    async (_, handler) => {
      const policy = bulkhead({ maxConcurrent: 2, maxQueue: 0 });
      const stats = { running: 0, peak: 0 };
      const app = Fastify({ handlerTimeout: 50 });
      await app.register(fastifyShedding, { policy, holdAfterHangUp: 300 });
      // Fastify's way to send from a callback: the work goes on after the handler returned.
      app.get('/work', (_request, reply) => {
        stats.peak = Math.max(stats.peak, ++stats.running);
        return handler(reply, () => reply.send({ ok: true }));
      });
      await app.listen({ port: 0, host: '127.0.0.1' });
      closers.push(() => app.close());
      const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
      const first = await Promise.all([get(base), get(base)]);
      expect(first.map((r) => r.type)).toEqual(['FST_ERR_HANDLER_TIMEOUT', 'FST_ERR_HANDLER_TIMEOUT']);
      // Their work still goes on: these are shed at once, none runs.
      const more = await Promise.all([get(base), get(base), get(base)]);
      expect(more.map((r) => r.type)).toEqual(Array(3).fill('urn:holdfast:problem:overloaded'));
      expect(stats.peak).toBe(2);
      expect(policy.snapshot()).toMatchObject({ running: 2, queued: 0 });
      for (let turn = 0; turn < 100 && policy.snapshot().running > 0; turn++) await sleep(10);
      expect(policy.snapshot()).toMatchObject({ running: 0, queued: 0 });
    },
  );

  it('fastify handlerTimeout destroying a stream under way (its headers sent): the place comes back once the handler settled, and the held call fails with the 503', async () => {
    const { policy, outcomes, inner } = recording(bulkhead({ maxConcurrent: 1, maxQueue: 0 }));
    const app = Fastify({ handlerTimeout: 50 });
    await app.register(fastifyShedding, { policy, holdAfterHangUp: 60_000 });
    app.get('/work', async (_request, reply) => {
      const body = new PassThrough();
      body.write('first bytes');
      reply.header('content-type', 'text/plain');
      return body; // never ends
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    closers.push(() => app.close());
    const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    const response = await fetch(`${base}/work`);
    expect(response.status).toBe(200);
    await expect(response.text()).rejects.toThrow(); // the timeout destroyed it
    // The handler returned long ago: its place is not held for holdAfterHangUp.
    for (let turn = 0; turn < 200 && inner.snapshot().running > 0; turn++) await sleep(10);
    expect(inner.snapshot()).toMatchObject({ running: 0, queued: 0 });
    // A timeout, not a success (nor a hang-up that teaches an adaptive limiter nothing).
    expect(outcomes).toEqual(['E_HTTP_STATUS 503']);
  });

  it("express with connect-timeout's respond: false (the app answers when its handler ends): the place is freed then", async () => {
    const policy = bulkhead({ maxConcurrent: 1, maxQueue: 0 });
    const { base, stats } = await expressApp(TIMEOUT + 100, { holdAfterHangUp: 60_000 }, policy, false);
    expect((await get(base)).status).toBe(200);
    expect(policy.snapshot()).toMatchObject({ running: 0 });
    expect((await get(base)).status).toBe(200);
    expect(stats.ran).toBe(2);
  });
});

/** A policy around `inner` that records how each held call ended. */
function recording<P extends Policy>(inner: P): { policy: Policy; outcomes: string[]; inner: P } {
  const outcomes: string[] = [];
  const policy: Policy = {
    name: 'recording',
    execute: (fn, options) =>
      inner.execute(async (scope) => {
        try {
          const value = await fn(scope);
          outcomes.push('ok');
          return value;
        } catch (error) {
          const { code, status } = error as { code?: string; status?: number };
          outcomes.push(`${code} ${status}`);
          throw error;
        }
      }, options),
  };
  return { policy, outcomes, inner };
}

describe('fastify: request.signal is read only where a handler timeout can have aborted it', () => {
  // Fastify makes request.signal on first read when the route has no handlerTimeout: an
  // AbortController and a 'close' listener on the request, per request. The plugin reads it to
  // tell a handlerTimeout answer from the handler's own; a route with no timeout has none to tell.
  async function spiedApp(serverTimeout?: number) {
    const app = Fastify({
      forceCloseConnections: true,
      ...(serverTimeout === undefined ? {} : { handlerTimeout: serverTimeout }),
    });
    const reads: string[] = [];
    app.addHook('onRequest', async (request) => {
      // Fastify's getter, from the request's prototype chain; an own getter in front counts reads.
      let get: (() => unknown) | undefined;
      for (let p = Object.getPrototypeOf(request); p !== null && get === undefined; p = Object.getPrototypeOf(p))
        get = Object.getOwnPropertyDescriptor(p, 'signal')?.get;
      Object.defineProperty(request, 'signal', {
        get() {
          reads.push(request.url);
          return get?.call(this);
        },
      });
    });
    const policy = bulkhead({ maxConcurrent: 4, maxQueue: 0 });
    await app.register(fastifyShedding, { policy, holdAfterHangUp: 60_000 });
    app.get('/fail', async (_req, reply) => reply.code(500).send({ failed: true }));
    // Long enough past the 50 ms handlerTimeout that on a loaded machine the 503 comes while it
    // still runs (at 100 ms it had ended before the 503 came: running 0).
    app.get('/slow', async () => {
      await sleep(600);
      return { ok: true };
    });
    app.get('/timed', { handlerTimeout: 50 }, async () => {
      await sleep(150);
      return { ok: true };
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    closers.push(() => app.close());
    return { base: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, reads, policy };
  }

  it('reads no signal on a 5xx answer or a hang-up of a route with no handler timeout', async () => {
    const { base, reads, policy } = await spiedApp();
    expect((await get(base, '/fail')).status).toBe(500);
    const leaving = new AbortController();
    const hangUp = fetch(`${base}/slow`, { signal: leaving.signal }).catch(() => 'left');
    await sleep(30);
    leaving.abort();
    expect(await hangUp).toBe('left');
    // The hung-up handler still runs; its place comes back when it ends.
    for (let turn = 0; turn < 300 && policy.snapshot().running > 0; turn++) await sleep(10);
    expect(policy.snapshot()).toMatchObject({ running: 0 });
    expect(reads).toEqual([]);
    // The same app still tells a handlerTimeout answer on a route that has one (it reads the signal there).
    expect(await get(base, '/timed')).toEqual({ status: 503, type: 'FST_ERR_HANDLER_TIMEOUT' });
    expect(reads).toContain('/timed');
    expect(policy.snapshot()).toMatchObject({ running: 1 }); // held until its handler ends
  });

  it('with a server-wide handlerTimeout every route has one, and a timeout answer is still told', async () => {
    const { base, policy } = await spiedApp(50);
    expect(await get(base, '/slow')).toEqual({ status: 503, type: 'FST_ERR_HANDLER_TIMEOUT' });
    expect(policy.snapshot()).toMatchObject({ running: 1 });
    for (let turn = 0; turn < 300 && policy.snapshot().running > 0; turn++) await sleep(10);
    expect(policy.snapshot()).toMatchObject({ running: 0 });
  });
});
