import { createBus } from '@holdfast/core';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/fastify.js';
import { memoryStore } from '../src/index.js';

/**
 * Routes declared before the plugin loaded are watched late, on their first claimed request.
 * Two such routes may share a method and URL and differ by a constraint (host, version): each
 * is its own route, with its own handler, and each must be watched.
 */
const apps: ReturnType<typeof Fastify>[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('fastify plugin: late-watched routes that share a method and URL', () => {
  /**
   * Host b's handler is slow and times out (handlerTimeout 150 ms) while it runs, after host a's
   * route, with the same method and URL, was watched. Watched routes were known by method and
   * URL: b's route passed for watched, its handler was never watched, and the 503 counted as
   * answered before its handler ran: the key was freed, and a retry ran the handler beside the
   * first.
   */
  it.each([
    ['both declared before the plugin loaded', false],
    ["host a's declared after it (seen by onRoute)", true],
  ])('under handlerTimeout, %s: the key of host b waits for its handler (409), which runs once', async (_, after) => {
    const app = Fastify({ handlerTimeout: 150 });
    apps.push(app);
    const registered = app.register(idempotency, { store: memoryStore(), scope: 'global', bus: createBus() });
    const ran = { a: 0, b: 0 };
    let finish: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      finish = resolve;
    });
    for (const host of ['b', 'a'] as const) {
      if (host === 'a' && after) await registered;
      app.post('/orders', { constraints: { host: `${host}.test` } }, async () => {
        ran[host]++;
        await gate;
        return { host };
      });
    }
    await app.ready();
    const send = (host: string, key: string) =>
      app.inject({
        method: 'POST',
        url: '/orders',
        headers: { host: `${host}.test`, 'content-type': 'application/json', 'idempotency-key': key },
        payload: '{"amount":1}',
      });
    // Host a's route is watched on its first claimed request.
    const a = send('a', 'ka');
    await tick(20);
    // Host b's handler times out while it still runs: its key must wait for it.
    expect((await send('b', 'kb')).statusCode).toBe(503);
    const retry = await send('b', 'kb');
    finish();
    await a;
    await tick(20);
    expect({ ran: ran.b, retry: retry.statusCode }).toEqual({ ran: 1, retry: 409 });
  });
});

describe('fastify plugin: a watched handler', () => {
  it('keeps its own name first (a tracer names its span after it)', async () => {
    const app = Fastify();
    apps.push(app);
    await app.register(idempotency, { store: memoryStore(), scope: 'global', bus: createBus() });
    let name = '';
    app.addHook('onRoute', (route) => {
      name = route.handler.name;
    });
    app.post('/orders', async function createOrder() {
      return {};
    });
    await app.ready();
    expect(name).toMatch(/^createOrder /);
  });
});
