/**
 * POST /orders with an Idempotency-Key, records on Redis. Each order charges a payments
 * upstream through resilientFetch, failing over between two instances.
 *
 *   pnpm --filter @holdfast/example-orders-express start      (REDIS_URL, PORT, PAYMENTS_URLS)
 *   curl -X POST localhost:3000/orders -H 'Idempotency-Key: k1' -H 'x-account: acme' \
 *        -H 'content-type: application/json' -d '{"sku":"kettle","amount":4200}'
 */
import type { AddressInfo } from 'node:net';
import { idempotency } from '@holdfast/idempotency/express';
import express, { type ErrorRequestHandler, type RequestHandler, type Response } from 'express';
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

const send = (res: Response, p: Problem) => void res.status(p.status).type('application/problem+json').json(p);

/** Stands in for your authentication: the account it finds scopes the idempotency keys. */
const authenticate: RequestHandler = (req, res, next) => {
  const account = accountOf(req.headers['x-account']);
  if (account === undefined) return send(res, problem(401, 'Unauthenticated', 'Send one x-account header.'));
  res.locals.account = account;
  next();
};

/** Refuses a body that is not JSON before a key is claimed (express.json() would skip it). */
const requireJson: RequestHandler = (req, res, next) => {
  if (!isJson(req.get('content-type'))) {
    return send(res, problem(415, 'Unsupported media type', 'Send the order as application/json.'));
  }
  next();
};

/** Every error as a problem: a body parser's 4xx with its status, anything else a 500 without internals. */
const problems: ErrorRequestHandler = (
  error: { status?: number; type?: string; expose?: boolean },
  _req,
  res,
  next,
) => {
  if (res.headersSent) return next(error);
  const status = error.expose && Number(error.status) >= 400 && Number(error.status) < 500 ? Number(error.status) : 500;
  if (status === 500) console.error(error);
  const title: Record<string, string> = {
    'entity.parse.failed': 'The body is not valid JSON',
    'entity.too.large': 'The body is too large',
  };
  send(res, problem(status, title[error.type ?? ''] ?? (status === 500 ? 'Internal error' : 'Bad request')));
};

export async function start(options: OrdersOptions) {
  const deps = await ordersDeps(options);
  const app = express();
  app.post(
    '/orders',
    authenticate,
    requireJson,
    // After authentication: the account scopes the keys. Before the body parser, so the
    // fingerprint covers the body's bytes (as on Fastify), not its parsed value.
    idempotency({ store: deps.store, required: true, scope: (req) => req.res?.locals.account }),
    express.json({ limit: '100kb' }),
    async (req, res) => {
      const order = parseOrder(req.body);
      if ('status' in order) return send(res, order);
      const account = res.locals.account as string;
      const charge = await deps.charge(account, req.get('idempotency-key') ?? '', order.amount);
      if (charge.status !== 201) return send(res, charge.body as Problem);
      res.status(201).json({ ...order, charge: charge.body });
    },
  );
  app.use((_req, res) => send(res, problem(404, 'Not found')));
  app.use(problems);

  const server = app.listen(options.port, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    payments: deps.payments,
    async close() {
      await closeWithin(server, () => new Promise((resolve) => server.close(resolve)), options.shutdownGraceMs);
      await deps.close();
    },
  };
}

await runIfMain(import.meta.url, start);
