/**
 * The orders service of orders-express, on Fastify: POST /orders with an Idempotency-Key,
 * records on Redis, charging a payments upstream through resilientFetch with failover.
 *
 *   pnpm --filter @holdfast/example-orders-fastify start      (REDIS_URL, PORT, PAYMENTS_URLS)
 */
import { idempotency } from '@holdfast/idempotency/fastify';
import Fastify, { type FastifyReply } from 'fastify';
import {
  accountOf,
  closeWithin,
  isJson,
  type OrdersOptions,
  ordersDeps,
  type Problem,
  parseOrder,
  problem,
  runIfMain,
} from '../shared/orders.js';

const send = (reply: FastifyReply, p: Problem) => reply.code(p.status).type('application/problem+json').send(p);

declare module 'fastify' {
  interface FastifyRequest {
    account: string;
  }
}

export async function start(options: OrdersOptions) {
  const deps = await ordersDeps(options);
  const app = Fastify({ bodyLimit: 100 * 1024 });
  // Authentication stands first: the account it finds scopes the idempotency keys. A body that is
  // not JSON is refused here too, before a key is claimed.
  app.decorateRequest('account', '');
  app.addHook('onRequest', async (req, reply) => {
    const account = accountOf(req.headers['x-account']);
    if (account === undefined) return send(reply, problem(401, 'Unauthenticated', 'Send one x-account header.'));
    if (req.method === 'POST' && !isJson(req.headers['content-type'])) {
      return send(reply, problem(415, 'Unsupported media type', 'Send the order as application/json.'));
    }
    req.account = account;
  });
  // Fastify's own 4xx (bad JSON, too large) as problems; anything else a 500 without internals.
  app.setErrorHandler((error: { statusCode?: number; message: string }, _req, reply) => {
    const status = Number(error.statusCode) >= 400 && Number(error.statusCode) < 500 ? Number(error.statusCode) : 500;
    if (status === 500) console.error(error);
    return send(reply, problem(status, status === 500 ? 'Internal error' : error.message));
  });
  app.setNotFoundHandler((_req, reply) => send(reply, problem(404, 'Not found')));
  await app.register(idempotency, { store: deps.store, required: true, scope: (req) => req.account });
  app.post('/orders', async (req, reply) => {
    const order = parseOrder(req.body);
    if ('status' in order) return send(reply, order);
    const charge = await deps.charge(req.account, String(req.headers['idempotency-key']), order.amount);
    if (charge.status !== 201) return send(reply, charge.body as Problem);
    return reply.code(201).send({ ...order, charge: charge.body });
  });

  const url = await app.listen({ port: options.port, host: '127.0.0.1' });
  return {
    url,
    payments: deps.payments,
    async close() {
      await closeWithin(app.server, () => app.close(), options.shutdownGraceMs);
      await deps.close();
    },
  };
}

await runIfMain(import.meta.url, start);
