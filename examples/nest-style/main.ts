// A NestJS-style service: controllers route, services call a dependency with holdfast's method
// decorators. Compiled with experimentalDecorators: true (tsconfig.json), as NestJS projects are.
// Run: INVENTORY_URL=http://127.0.0.1:4000 pnpm --filter @holdfast/example-nest-style start
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { breaker, idempotent, retry, timeout } from '@holdfast/fetch/decorators';
import { IdempotencyConflictError, IdempotencyMismatchError, memoryStore } from '@holdfast/idempotency';
import { Controller, type ExceptionFilter, Get, HttpException, Post, type Request, serve } from './http.js';

/** The client of the inventory service: every method resilient, each call with its instance. */
export class InventoryService {
  constructor(readonly baseUrl: string) {}

  @retry({ name: 'inventory.retry', maxAttempts: 3, backoff: { initialDelay: 50 } })
  @breaker({ name: 'inventory.breaker', consecutiveFailures: 5 })
  @timeout(1_000, { name: 'inventory.timeout' })
  async stock(sku: string): Promise<{ sku: string; available: number }> {
    // @timeout stops waiting but cannot cancel what the method started (a decorator has no signal
    // to give it): the call gets its own deadline, the same, or a hung server keeps its connection.
    const res = await fetch(`${this.baseUrl}/stock/${encodeURIComponent(sku)}`, { signal: AbortSignal.timeout(1_000) });
    if (!res.ok) throw Object.assign(new Error(`inventory: ${res.status}`), { status: res.status });
    return (await res.json()) as { sku: string; available: number };
  }
}

interface Order {
  /** Who places it: the key is theirs, so no caller can replay another's order. */
  readonly account: string;
  readonly id: string;
  readonly sku: string;
  readonly quantity: number;
}

/** Places orders once per account and id, whatever the client retries. */
export class OrdersService {
  placed = 0;
  constructor(readonly inventory: InventoryService) {}

  // The key is scoped to the account (accounts hold no ':'); the whole order is the fingerprint,
  // so the same key with another order is refused (IdempotencyMismatchError), not replayed.
  @idempotent({ store: memoryStore(), key: (order: Order) => `${order.account}:${order.id}` })
  async place(order: Order): Promise<{ id: string; sku: string; quantity: number; number: number }> {
    const { available } = await this.inventory.stock(order.sku);
    if (available < order.quantity) throw new HttpException(409, `only ${available} ${order.sku} left`);
    this.placed++;
    return { id: order.id, sku: order.sku, quantity: order.quantity, number: this.placed };
  }
}

/** What a NestJS exception filter would do: idempotency refusals are the client's 409 and 422, not a 503. */
export const idempotencyFilter: ExceptionFilter = (error) => {
  if (error instanceof IdempotencyConflictError) {
    const seconds = String(Math.max(1, Math.ceil(error.retryAfterMs / 1000)));
    return new HttpException(409, 'this Idempotency-Key is in use by a request still running', {
      'retry-after': seconds,
    });
  }
  if (error instanceof IdempotencyMismatchError) {
    return new HttpException(422, 'this Idempotency-Key was used with another order; use a new key');
  }
  return undefined;
};

@Controller('/stock')
export class StockController {
  constructor(readonly inventory: InventoryService) {}

  @Get('/:sku')
  stock({ params }: Request) {
    return this.inventory.stock(params.sku as string);
  }
}

@Controller('/orders')
export class OrdersController {
  constructor(readonly orders: OrdersService) {}

  @Post('')
  create({ body, headers }: Request) {
    // Stands in for your authentication guard: one x-account header names the caller.
    const account = headers['x-account'];
    if (typeof account !== 'string' || !/^[\w-]{1,64}$/.test(account)) {
      throw new HttpException(401, 'send one x-account header');
    }
    const key = headers['idempotency-key'];
    const b = body as Partial<Order> | undefined;
    if (typeof key !== 'string' || key === '' || key.length > 255) {
      throw new HttpException(400, 'Idempotency-Key is required (1 to 255 characters)');
    }
    if (typeof b?.sku !== 'string' || !Number.isSafeInteger(b.quantity) || (b.quantity as number) < 1) {
      throw new HttpException(400, 'body must be { sku: string, quantity: integer >= 1 }');
    }
    return this.orders.place({ account, id: key, sku: b.sku, quantity: b.quantity as number });
  }
}

/** Starts the service; `port: 0` picks a free one. */
export async function start(options: { inventoryUrl: string; port?: number }) {
  const inventory = new InventoryService(options.inventoryUrl);
  const orders = new OrdersService(inventory);
  const server = serve([new StockController(inventory), new OrdersController(orders)], [idempotencyFilter]);
  await new Promise<void>((resolve) => server.listen(options.port ?? 3000, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const close = () =>
    new Promise<void>((resolve) => {
      // Idle connections go now; any still open after 5 s (a client that never finishes) are cut.
      const cut = setTimeout(() => server.closeAllConnections(), 5_000).unref();
      server.close(() => {
        clearTimeout(cut);
        resolve();
      });
      server.closeIdleConnections();
    });
  return { url, orders, close };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const service = await start({
    inventoryUrl: process.env.INVENTORY_URL ?? 'http://127.0.0.1:4000',
    port: Number(process.env.PORT ?? 3000),
  });
  // Before saying it listens: whoever waits for that line may stop it at once.
  process.once('SIGINT', () => void service.close());
  process.once('SIGTERM', () => void service.close());
  console.log(`listening ${service.url}`);
}
