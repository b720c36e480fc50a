import type { Server } from 'node:http';
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
  /** How long a shutdown waits for requests still open before it cuts their connections (default 5 s). */
  readonly shutdownGraceMs?: number | undefined;
}

/** What both orders examples stand on: a Redis store, and payments behind a failover fetch. */
export interface OrdersDeps {
  readonly store: IdempotencyStore;
  readonly payments: Payments | undefined;
  /**
   * Charges `amount` once per account and order key; answers the status to send and its body. A
   * payments failure is a 5xx problem: the idempotency middleware releases the key for a 5xx, and
   * the client's retry with the same key is safe (the charge has its own key at payments).
   */
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
      try {
        // The charge's own key makes its retries, on either payments instance, safe.
        const res = await pay('/charges', {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': `order:${account}:${orderKey}` },
          body: JSON.stringify({ amount }),
        });
        if (!res.ok) {
          await res.body?.cancel();
          return { status: 502, body: problem(502, 'Payments refused the charge', `payments answered ${res.status}`) };
        }
        return { status: 201, body: await res.json() };
      } catch (error) {
        // Unreachable, open breaker, timeout: said in the log, never to the client (no internals).
        console.warn(`payments: ${(error as Error).message}`);
        return {
          status: 503,
          body: problem(503, 'Payments unavailable', 'Retry later with the same Idempotency-Key.'),
        };
      }
    },
    async close() {
      pay.dispose();
      redis.disconnect();
      await payments?.close();
    },
  };
}

/** An RFC 9457 problem body: every error the orders examples answer is one. */
export interface Problem {
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly detail?: string;
}

export function problem(status: number, title: string, detail?: string): Problem {
  return { type: 'about:blank', title, status, ...(detail === undefined ? {} : { detail }) };
}

/**
 * Who is calling. Stands in for your authentication, which runs before the idempotency
 * middleware: its `scope` is this account, so no caller can replay another's response. One
 * `x-account` header of 1 to 64 letters, digits, `-` or `_`; anything else is no account (401).
 */
export function accountOf(header: string | readonly string[] | undefined): string | undefined {
  return typeof header === 'string' && /^[\w-]{1,64}$/.test(header) ? header : undefined;
}

/** Whether a request says its body is JSON; anything else is refused with 415 before a key is claimed. */
export function isJson(contentType: string | undefined): boolean {
  return /^application\/json\s*(;|$)/i.test(contentType ?? '');
}

/** A valid order, or the 400 problem that says what is wrong with it. */
export function parseOrder(body: unknown): { sku: string; amount: number } | Problem {
  const { sku, amount } = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  if (typeof sku !== 'string' || !/^[\w-]{1,64}$/.test(sku)) {
    return problem(400, 'Invalid order', 'sku must be 1 to 64 letters, digits, - or _');
  }
  if (!Number.isSafeInteger(amount) || (amount as number) < 1) {
    return problem(400, 'Invalid order', 'amount must be a whole number of cents, at least 1');
  }
  return { sku, amount: amount as number };
}

/**
 * Stops a server: no new connections, idle ones closed now, and any still open after `graceMs`
 * (a client that never reads its response, a request that never finishes) cut, so a shutdown
 * never hangs.
 */
export async function closeWithin(
  server: Server,
  close: () => Promise<unknown>,
  graceMs: number | undefined = 5_000,
): Promise<void> {
  const cut = setTimeout(() => server.closeAllConnections(), graceMs);
  cut.unref();
  server.closeIdleConnections();
  try {
    await close();
  } finally {
    clearTimeout(cut);
  }
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
  const stop = () =>
    orders.close().catch((error: unknown) => {
      console.error('orders: shutdown failed', error);
      process.exitCode = 1;
    });
  // Before saying it listens: whoever waits for that line may stop it at once.
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  console.log(`orders listening on ${orders.url}`);
}
