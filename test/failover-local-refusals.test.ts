import { setTimeout as sleep } from 'node:timers/promises';
import { createBus, type EventOf } from '@holdfast/core';
import { failover } from '@holdfast/failover';
import { idempotent, memoryStore } from '@holdfast/idempotency';
import { bulkhead } from '@holdfast/limit';
import { describe, expect, it } from 'vitest';

/**
 * A refusal by one of our own policies inside the endpoint call (an idempotency key whose run was
 * aborted, a full bulkhead) sends nothing to the endpoint: it says nothing of its health. A set
 * counted it as the endpoint's failure: a client repeating an aborted key, or a burst through a
 * bulkhead, ejected healthy endpoints; with `retry: { idempotent: true }` the refused call moved
 * to the next endpoint, met the same refusal there, and counted against it too.
 */

/** A payment gateway: charges after `ms` unless the signal aborts first; counts the charges it took. */
function gateway(name: string, ms: number) {
  const charged: string[] = [];
  return {
    name,
    charged,
    charge: (order: string, signal: AbortSignal) =>
      new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => {
          charged.push(order);
          resolve(`${name}:${order}`);
        }, ms);
        signal.addEventListener('abort', () => {
          clearTimeout(timer);
          reject(signal.reason);
        });
      }),
  };
}
type Gateway = ReturnType<typeof gateway>;

describe('failover: local refusals from inside the endpoint call', () => {
  for (const retry of [undefined, { maxAttempts: 2, idempotent: true }] as const) {
    it(`an aborted idempotency key repeated by its client: no endpoint ejected, the refusal never moved (retry ${JSON.stringify(retry ?? 'default')})`, async () => {
      const bus = createBus();
      const ejected: EventOf<'failover.eject'>[] = [];
      bus.on('failover.eject', (e) => ejected.push(e));
      const gateways = [gateway('gw-1', 5_000), gateway('gw-2', 5_000)];
      const set = failover<Gateway>({
        name: 'payments',
        endpoints: gateways.map((g) => ({ name: g.name, target: g })),
        ejection: { consecutiveFailures: 3 },
        ...(retry === undefined ? {} : { retry }),
        bus,
        policies: false,
      });
      // The key is the order; the gateway is the one the set picked for this try.
      const charge = idempotent(
        async ({ order, via }: { order: string; via: Gateway }, { signal }) => via.charge(order, signal),
        { store: memoryStore(), key: ({ order }) => order, fingerprint: ({ order }) => order, name: 'charge' },
      );
      const tries: string[] = [];
      const pay = (order: string, signal?: AbortSignal) =>
        set
          .execute(
            (e, ctx) => {
              tries.push(e.name);
              return charge({ order, via: e.target }, { signal: ctx.signal });
            },
            signal === undefined ? {} : { signal },
          )
          .catch((error: { code?: unknown; name?: string }) =>
            typeof error.code === 'string' ? error.code : error.name,
          );
      try {
        // The client gives up while the charge runs: it may have gone through.
        expect(await pay('A-1', AbortSignal.timeout(50))).toBe('TimeoutError');
        await sleep(20);
        tries.length = 0;
        // Its client sends it again and again: refused each time, never charged twice.
        const repeats: unknown[] = [];
        for (let i = 0; i < 6; i++) repeats.push(await pay('A-1'));
        expect(repeats).toEqual(Array(6).fill('E_IDEMPOTENCY_ABORTED'));
        expect(tries).toHaveLength(6);
        expect(ejected).toEqual([]);
        expect(set.snapshot().endpoints.map((e) => e.ejection)).toEqual(['none', 'none']);
        expect(gateways.flatMap((g) => g.charged)).toEqual([]);
      } finally {
        set.dispose();
      }
    }, 30_000);

    it(`a burst through a bulkhead inside the endpoint call: its refusals eject no endpoint and do not move (retry ${JSON.stringify(retry ?? 'default')})`, async () => {
      const bus = createBus();
      const ejected: EventOf<'failover.eject'>[] = [];
      bus.on('failover.eject', (e) => ejected.push(e));
      const gateways = [gateway('gw-1', 200), gateway('gw-2', 200)];
      const set = failover<Gateway>({
        name: 'payments',
        endpoints: gateways.map((g) => ({ name: g.name, target: g })),
        ejection: { consecutiveFailures: 3 },
        ...(retry === undefined ? {} : { retry }),
        bus,
        policies: false,
      });
      // One call at a time to the payment provider, whichever gateway: the rest are refused at once.
      const slots = bulkhead({ name: 'provider', maxConcurrent: 1, maxQueue: 0, bus, policies: false });
      const tries: string[] = [];
      const pay = (order: string) =>
        set
          .execute((e, ctx) => {
            tries.push(e.name);
            return slots.execute(() => e.target.charge(order, ctx.signal));
          })
          .catch((error: { code?: string }) => error.code);
      try {
        const outcomes = await Promise.all(Array.from({ length: 12 }, (_, i) => pay(`B-${i}`)));
        expect(outcomes.filter((o) => o === 'E_BULKHEAD_FULL')).toHaveLength(11);
        expect(tries).toHaveLength(12);
        expect(ejected).toEqual([]);
        expect(set.snapshot().endpoints.map((e) => e.ejection)).toEqual(['none', 'none']);
        // Both gateways still take calls.
        expect(await pay('C-1')).toBe('gw-1:C-1');
        expect(await pay('C-2')).toBe('gw-2:C-2');
      } finally {
        set.dispose();
      }
    }, 30_000);
  }
});
