/**
 * The orders service of orders-express, on Fastify: POST /orders with an Idempotency-Key,
 * records on Redis, charging a payments upstream through resilientFetch with failover.
 *
 *   pnpm --filter @holdfast/example-orders-fastify start      (REDIS_URL, PORT, PAYMENTS_URLS)
 */
import { pathToFileURL } from 'node:url';
import { resilientFetch } from '@holdfast/fetch';
import { redisStore } from '@holdfast/idempotency';
import { idempotency } from '@holdfast/idempotency/fastify';
import Fastify from 'fastify';
import { Redis } from 'ioredis';
import type { OrdersOptions } from '../orders-express/main.js';
import { startPayments } from '../shared/payments.js';

export async function start(options: OrdersOptions) {
  const payments = options.paymentsUrls ? undefined : await startPayments(2);
  const redis = new Redis(options.redisUrl, { maxRetriesPerRequest: 1 });
  const pay = resilientFetch({
    name: 'payments',
    baseUrls: [...(options.paymentsUrls ?? payments?.urls ?? [])],
    idempotencyKey: 'auto',
  });

  const app = Fastify();
  await app.register(idempotency, {
    store: redisStore({ client: redis }),
    required: true,
    scope: (req) => String(req.headers['x-account'] ?? 'anonymous'),
  });
  app.post<{ Body: { sku?: string; amount?: number } }>('/orders', async (req, reply) => {
    const { sku, amount } = req.body ?? {};
    if (typeof sku !== 'string' || typeof amount !== 'number') {
      return reply
        .code(400)
        .type('application/problem+json')
        .send({ title: 'sku (string) and amount (number) are required' });
    }
    const charge = await pay('/charges', {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'idempotency-key': `order:${req.headers['x-account']}:${req.headers['idempotency-key']}`,
      },
      body: JSON.stringify({ amount }),
    });
    if (!charge.ok) return reply.code(502).send({ error: `payments answered ${charge.status}` });
    return reply.code(201).send({ sku, amount, charge: await charge.json() });
  });

  const url = await app.listen({ port: options.port, host: '127.0.0.1' });
  return {
    url,
    payments,
    async close() {
      await app.close();
      pay.dispose();
      redis.disconnect();
      await payments?.close();
    },
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const orders = await start({
    redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    port: Number(process.env.PORT ?? 3000),
    paymentsUrls: process.env.PAYMENTS_URLS?.split(','),
  });
  console.log(`orders listening on ${orders.url}`);
  process.once('SIGINT', () => void orders.close());
  process.once('SIGTERM', () => void orders.close());
}
