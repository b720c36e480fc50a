/**
 * The orders service of orders-express, on Fastify: POST /orders with an Idempotency-Key,
 * records on Redis, charging a payments upstream through resilientFetch with failover.
 *
 *   pnpm --filter @holdfast/example-orders-fastify start      (REDIS_URL, PORT, PAYMENTS_URLS)
 */
import { idempotency } from '@holdfast/idempotency/fastify';
import Fastify from 'fastify';
import { type OrdersOptions, ordersDeps, runIfMain } from '../shared/orders.js';

export async function start(options: OrdersOptions) {
  const deps = await ordersDeps(options);
  const app = Fastify();
  await app.register(idempotency, {
    store: deps.store,
    required: true,
    // After authentication in a real service: the account scopes the keys.
    scope: (req) => String(req.headers['x-account'] ?? 'anonymous'),
  });
  app.post<{ Body: { sku?: unknown; amount?: unknown } }>('/orders', async (req, reply) => {
    const { sku, amount } = req.body ?? {};
    if (typeof sku !== 'string' || typeof amount !== 'number') {
      return reply
        .code(400)
        .type('application/problem+json')
        .send({ title: 'sku (string) and amount (number) are required' });
    }
    const charge = await deps.charge(
      String(req.headers['x-account'] ?? 'anonymous'),
      String(req.headers['idempotency-key']),
      amount,
    );
    return reply.code(charge.status).send(charge.status === 201 ? { sku, amount, charge: charge.body } : charge.body);
  });

  const url = await app.listen({ port: options.port, host: '127.0.0.1' });
  return {
    url,
    payments: deps.payments,
    async close() {
      await app.close();
      await deps.close();
    },
  };
}

await runIfMain(import.meta.url, start);
