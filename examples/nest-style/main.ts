// A NestJS-style service: controllers route, services call a dependency with holdfast's method
// decorators. Compiled with experimentalDecorators: true (tsconfig.json), as NestJS projects are.
// Run: INVENTORY_URL=http://127.0.0.1:4000 pnpm --filter @holdfast/example-nest-style start
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { breaker, idempotent, retry, timeout } from '@holdfast/fetch/decorators';
import { memoryStore } from '@holdfast/idempotency';
import { Controller, Get, HttpException, Post, type Request, serve } from './http.js';

/** The client of the inventory service: every method resilient, each call with its instance. */
export class InventoryService {
  constructor(readonly baseUrl: string) {}

  @retry({ name: 'inventory.retry', maxAttempts: 3, backoff: { initialDelay: 50 } })
  @breaker({ name: 'inventory.breaker', consecutiveFailures: 5 })
  @timeout(1_000, { name: 'inventory.timeout' })
  async stock(sku: string): Promise<{ sku: string; available: number }> {
    const res = await fetch(`${this.baseUrl}/stock/${encodeURIComponent(sku)}`);
    if (!res.ok) throw Object.assign(new Error(`inventory: ${res.status}`), { status: res.status });
    return (await res.json()) as { sku: string; available: number };
  }
}

interface Order {
  readonly id: string;
  readonly sku: string;
  readonly quantity: number;
}

/** Places orders once per id, whatever the client retries. */
export class OrdersService {
  placed = 0;
  constructor(readonly inventory: InventoryService) {}

  @idempotent({ store: memoryStore(), key: (order: Order) => order.id })
  async place(order: Order): Promise<{ id: string; sku: string; quantity: number; number: number }> {
    const { available } = await this.inventory.stock(order.sku);
    if (available < order.quantity) throw new HttpException(409, `only ${available} ${order.sku} left`);
    this.placed++;
    return { ...order, number: this.placed };
  }
}

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
    const key = headers['idempotency-key'];
    const b = body as Partial<Order> | undefined;
    if (typeof key !== 'string' || key === '') throw new HttpException(400, 'Idempotency-Key is required');
    if (typeof b?.sku !== 'string' || !Number.isInteger(b.quantity) || (b.quantity as number) < 1) {
      throw new HttpException(400, 'body must be { sku: string, quantity: integer >= 1 }');
    }
    return this.orders.place({ id: key, sku: b.sku, quantity: b.quantity as number });
  }
}

/** Starts the service; `port: 0` picks a free one. */
export async function start(options: { inventoryUrl: string; port?: number }) {
  const inventory = new InventoryService(options.inventoryUrl);
  const orders = new OrdersService(inventory);
  const server = serve([new StockController(inventory), new OrdersController(orders)]);
  await new Promise<void>((resolve) => server.listen(options.port ?? 3000, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, orders, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const service = await start({
    inventoryUrl: process.env.INVENTORY_URL ?? 'http://127.0.0.1:4000',
    port: Number(process.env.PORT ?? 3000),
  });
  console.log(`listening ${service.url}`);
  process.once('SIGTERM', () => void service.close());
}
