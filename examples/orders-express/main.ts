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
import express from 'express';
import { type OrdersOptions, ordersDeps, runIfMain } from '../shared/orders.js';

export async function start(options: OrdersOptions) {
  const deps = await ordersDeps(options);
  const app = express();
  app.post(
    '/orders',
    // After authentication in a real service: the account scopes the keys. Before the body parser,
    // so the fingerprint covers the body's bytes (as on Fastify), not its parsed value.
    idempotency({ store: deps.store, required: true, scope: (req) => req.get('x-account') ?? 'anonymous' }),
    express.json(),
    async (req, res) => {
      const { sku, amount } = req.body as { sku?: unknown; amount?: unknown };
      if (typeof sku !== 'string' || typeof amount !== 'number') {
        res
          .status(400)
          .type('application/problem+json')
          .json({ title: 'sku (string) and amount (number) are required' });
        return;
      }
      const charge = await deps.charge(req.get('x-account') ?? 'anonymous', req.get('idempotency-key') ?? '', amount);
      res.status(charge.status).json(charge.status === 201 ? { sku, amount, charge: charge.body } : charge.body);
    },
  );

  const server = app.listen(options.port, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    payments: deps.payments,
    async close() {
      await new Promise((resolve) => server.close(resolve));
      await deps.close();
    },
  };
}

await runIfMain(import.meta.url, start);
