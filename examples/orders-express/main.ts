/**
 * POST /orders with an Idempotency-Key, records on Redis. Each order charges a payments
 * upstream through resilientFetch, failing over between two instances.
 *
 *   pnpm --filter @holdfast/example-orders-express start      (REDIS_URL, PORT, PAYMENTS_URLS)
 *   curl -X POST localhost:3000/orders -H 'Idempotency-Key: k1' -H 'x-account: acme' \
 *        -H 'content-type: application/json' -d '{"sku":"kettle","amount":4200}'
 */
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { resilientFetch } from '@holdfast/fetch';
import { redisStore } from '@holdfast/idempotency';
import { idempotency } from '@holdfast/idempotency/express';
import express from 'express';
import { Redis } from 'ioredis';
import { startPayments } from '../shared/payments.js';

export interface OrdersOptions {
  readonly redisUrl: string;
  readonly port: number;
  /** Payments base URLs; two local instances are started when absent. */
  readonly paymentsUrls?: readonly string[] | undefined;
}

export async function start(options: OrdersOptions) {
  const payments = options.paymentsUrls ? undefined : await startPayments(2);
  const redis = new Redis(options.redisUrl, { maxRetriesPerRequest: 1 });
  const pay = resilientFetch({
    name: 'payments',
    baseUrls: [...(options.paymentsUrls ?? payments?.urls ?? [])],
    idempotencyKey: 'auto',
  });

  const app = express();
  app.post(
    '/orders',
    express.json(),
    // After authentication in a real service: the account scopes the keys.
    idempotency({
      store: redisStore({ client: redis }),
      required: true,
      scope: (req) => req.get('x-account') ?? 'anonymous',
    }),
    async (req, res) => {
      const { sku, amount } = req.body as { sku?: string; amount?: number };
      if (typeof sku !== 'string' || typeof amount !== 'number') {
        res
          .status(400)
          .type('application/problem+json')
          .json({ title: 'sku (string) and amount (number) are required' });
        return;
      }
      const charge = await pay('/charges', {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'idempotency-key': `order:${req.get('x-account')}:${req.get('idempotency-key')}`,
        },
        body: JSON.stringify({ amount }),
      });
      if (!charge.ok) {
        res.status(502).json({ error: `payments answered ${charge.status}` });
        return;
      }
      res.status(201).json({ sku, amount, charge: await charge.json() });
    },
  );

  const server = app.listen(options.port, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    payments,
    async close() {
      await new Promise((resolve) => server.close(resolve));
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
