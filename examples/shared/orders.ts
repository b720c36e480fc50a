import { pathToFileURL } from 'node:url';
import { type ResilientFetch, resilientFetch } from '@holdfast/fetch';
import { type IdempotencyStore, redisStore } from '@holdfast/idempotency';
import { Redis } from 'ioredis';
import { type Payments, startPayments } from './payments.js';

/** How an orders example is started (by its CLI, or by a test). */
export interface OrdersOptions {
  readonly redisUrl: string;
  readonly port: number;
  /** Payments base URLs; two local instances are started when absent. */
  readonly paymentsUrls?: readonly string[] | undefined;
}

/** What both orders examples stand on: a Redis store, and payments behind a failover fetch. */
export interface OrdersDeps {
  readonly store: IdempotencyStore;
  readonly payments: Payments | undefined;
  /** Charges `amount` once per account and order key; answers the status to send and its body. */
  charge(account: string, orderKey: string, amount: number): Promise<{ status: number; body: unknown }>;
  close(): Promise<void>;
}

export async function ordersDeps(options: OrdersOptions): Promise<OrdersDeps> {
  const payments = options.paymentsUrls ? undefined : await startPayments(2);
  const redis = new Redis(options.redisUrl, { maxRetriesPerRequest: 1 });
  // Without an 'error' listener ioredis prints "Unhandled error event" at every reconnect attempt
  // while Redis is down; the store answers 503 meanwhile. Said once per outage.
  let down = false;
  redis.on('error', (error) => {
    if (!down) console.warn(`redis: ${error.message} (requests get 503 until it is back)`);
    down = true;
  });
  redis.on('ready', () => {
    if (down) console.warn('redis: back');
    down = false;
  });
  const pay: ResilientFetch = resilientFetch({
    name: 'payments',
    baseUrls: [...(options.paymentsUrls ?? payments?.urls ?? [])],
  });
  return {
    store: redisStore({ client: redis }),
    payments,
    async charge(account, orderKey, amount) {
      // The charge's own key makes its retries, on either payments instance, safe.
      const res = await pay('/charges', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': `order:${account}:${orderKey}` },
        body: JSON.stringify({ amount }),
      });
      if (!res.ok) return { status: 502, body: { error: `payments answered ${res.status}` } };
      return { status: 201, body: await res.json() };
    },
    async close() {
      pay.dispose();
      redis.disconnect();
      await payments?.close();
    },
  };
}

/** Starts the example when its file is run directly, with settings from the environment. */
export async function runIfMain(
  moduleUrl: string,
  start: (o: OrdersOptions) => Promise<{ url: string; close(): Promise<void> }>,
) {
  if (moduleUrl !== pathToFileURL(process.argv[1] ?? '').href) return;
  const orders = await start({
    redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    port: Number(process.env.PORT ?? 3000),
    paymentsUrls: process.env.PAYMENTS_URLS?.split(','),
  });
  console.log(`orders listening on ${orders.url}`);
  process.once('SIGINT', () => void orders.close());
  process.once('SIGTERM', () => void orders.close());
}
