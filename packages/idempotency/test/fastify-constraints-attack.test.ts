import { once } from 'node:events';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { createBus } from '@holdfast/core';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/fastify.js';
import { fingerprintOf } from '../src/http/fingerprint.js';
import { memoryStore } from '../src/index.js';
import type { Store } from '../src/store.js';

/**
 * An outsider's attacks on the Fastify plugin's constraint fingerprint (routes of one method and
 * URL told apart by Host, Accept-Version or a strategy of the app's own). Two things must hold
 * on every path: a request that reaches another route's handler never gets the first route's
 * stored response (it gets the 422 for a reused key), and an honest retry (same route, same
 * headers, same body) still gets its stored response.
 */
const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

const body = '{"amount":1}';

function post(app: FastifyInstance, key: string, headers: Record<string, string>, payload = body) {
  return app.inject({
    method: 'POST',
    url: '/orders',
    headers: { 'content-type': 'application/json', 'idempotency-key': key, ...headers },
    payload,
  });
}

/** A constraint strategy of the app's, named `name`, whose value is the request's `header`. */
function headerStrategy(name: string, header: string) {
  return {
    name,
    storage() {
      const handlers = new Map<unknown, unknown>();
      return {
        get: (value: unknown) => handlers.get(value) ?? null,
        set: (value: unknown, store: unknown) => void handlers.set(value, store),
      };
    },
    deriveConstraint: (request: { headers: Record<string, string | string[] | undefined> }) => request.headers[header],
    mustMatchWhenDerived: true,
    validate: () => true,
  };
}

/** An app with the plugin, then one POST /orders route for each of `routes`; its handlers' runs. */
async function appWith(
  routes: { name: string; constraints?: Record<string, unknown> }[],
  options: { constraints?: Record<string, unknown> } = {},
) {
  const app = Fastify({ constraints: options.constraints as never });
  apps.push(app);
  await app.register(idempotency, { store: memoryStore(), scope: 'global', bus: createBus() });
  const ran: Record<string, number> = {};
  for (const { name, constraints } of routes) {
    ran[name] = 0;
    app.route({
      method: 'POST',
      url: '/orders',
      ...(constraints === undefined ? {} : { constraints }),
      handler: async (_request, reply) => {
        ran[name] = (ran[name] ?? 0) + 1;
        return reply.code(201).send({ route: name, n: ran[name] });
      },
    });
  }
  await app.ready();
  return { app, ran };
}

describe('fastify constraints attack: a strategy of the app that replaces Fastify`s own', () => {
  it('a custom `version` strategy (versions in the Accept header, as in the Fastify docs): a key of v1 sent to v2 gets 422', async () => {
    const version = headerStrategy('version', 'accept');
    const { app, ran } = await appWith(
      [
        { name: 'v1', constraints: { version: 'application/vnd.shop.v1+json' } },
        { name: 'v2', constraints: { version: 'application/vnd.shop.v2+json' } },
      ],
      { constraints: { version } },
    );
    const first = await post(app, 'k1', { accept: 'application/vnd.shop.v1+json' });
    expect(first.json()).toEqual({ route: 'v1', n: 1 });
    const other = await post(app, 'k1', { accept: 'application/vnd.shop.v2+json' });
    expect(other.statusCode).toBe(422);
    const again = await post(app, 'k1', { accept: 'application/vnd.shop.v1+json' });
    expect({ status: again.statusCode, body: again.json() }).toEqual({ status: 201, body: { route: 'v1', n: 1 } });
    expect(ran).toEqual({ v1: 1, v2: 0 });
  });

  it('a custom `host` strategy (the tenant from X-Forwarded-Host behind a proxy): a key of tenant a sent to tenant b gets 422', async () => {
    const host = headerStrategy('host', 'x-forwarded-host');
    const { app, ran } = await appWith(
      [
        { name: 'a', constraints: { host: 'a.test' } },
        { name: 'b', constraints: { host: 'b.test' } },
      ],
      { constraints: { host } },
    );
    // The proxy's Host is the same for every tenant.
    expect((await post(app, 'k2', { host: 'proxy', 'x-forwarded-host': 'a.test' })).statusCode).toBe(201);
    expect((await post(app, 'k2', { host: 'proxy', 'x-forwarded-host': 'b.test' })).statusCode).toBe(422);
    expect((await post(app, 'k2', { host: 'proxy', 'x-forwarded-host': 'a.test' })).json()).toEqual({
      route: 'a',
      n: 1,
    });
    expect(ran).toEqual({ a: 1, b: 0 });
  });
});
