import { createBus } from '@holdfast/core';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/fastify.js';
import { type IdempotencyStore, memoryStore } from '../src/index.js';

// What the middleware says of a running handler's lease renewals (README, events table): a
// renewal the store fails is `storeError` with `operation: 'extend'` (the run goes on), and one
// the store answers false is `leaseLost` with `reason: 'notOwner'`, each naming the client's key.

const apps: { close(): Promise<unknown> }[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

/** A guarded app on `store` (leaseMs 60: renewed every 20 ms) whose handler waits until the events `until` wants came. */
type Seen = Record<string, unknown>;

async function run(
  store: IdempotencyStore,
  type: 'idempotency.storeError' | 'idempotency.leaseLost',
  until: (seen: Seen[]) => boolean,
) {
  const bus = createBus();
  const seen: Seen[] = [];
  bus.on(type, (event) => {
    seen.push({ ...event });
  });
  const app = Fastify();
  apps.push(app);
  await app.register(idempotency, { store, scope: 'global', bus, leaseMs: 60 });
  let runs = 0;
  app.post('/orders', async () => {
    runs++;
    // Bounded: 500 waits of 10 ms at most.
    for (let i = 0; i < 500 && !until(seen); i++) await new Promise((resolve) => setTimeout(resolve, 10));
    return { ok: true };
  });
  const response = await app.inject({
    method: 'POST',
    url: '/orders',
    headers: { 'content-type': 'application/json', 'idempotency-key': 'order-7' },
    payload: '{"amount":1}',
  });
  return { response, seen, runs };
}

describe('the middleware tells of its lease renewals', () => {
  it('a renewal the store fails: storeError extend, failOpen, with the key; the handler runs on and its response is sent', async () => {
    // A memory store whose extend is replaced is called as any store is (see inProcess()).
    const store = memoryStore();
    store.extend = async () => {
      throw Object.assign(new Error('store gone'), { code: 'E_STORE_UNAVAILABLE' });
    };
    const { response, seen, runs } = await run(store, 'idempotency.storeError', (s) => s.length >= 2);
    expect(response.statusCode).toBe(200);
    expect(runs).toBe(1);
    expect(seen.length).toBeGreaterThanOrEqual(2);
    for (const event of seen) {
      expect(event).toMatchObject({ key: 'order-7', operation: 'extend', code: 'E_STORE_UNAVAILABLE', failOpen: true });
    }
  });

  it('a renewal the store answers false (the key is another owner’s): leaseLost notOwner once, with the key, and renewal stops', async () => {
    let extends_ = 0;
    const store = memoryStore();
    store.extend = async () => {
      extends_++;
      return false;
    };
    // Waits for the event, then for 5 more renewal ticks' worth of time (none may come).
    let after = 0;
    const { response, seen, runs } = await run(store, 'idempotency.leaseLost', (s) => s.length > 0 && ++after > 10);
    expect(response.statusCode).toBe(200);
    expect(runs).toBe(1);
    expect(seen.map((e) => ({ key: e.key, reason: e.reason }))).toEqual([{ key: 'order-7', reason: 'notOwner' }]);
    expect(extends_).toBe(1);
  });
});
