import { setTimeout as sleep } from 'node:timers/promises';
import { circuitBreaker } from '@holdfast/breaker';
import { createBus, type EventOf } from '@holdfast/core';
import { type Failover, failover } from '@holdfast/failover';
import { describe, expect, it } from 'vitest';

/**
 * A refusal thrown inside the endpoint call by a policy that belongs to that endpoint: its own
 * circuit breaker, open because the endpoint is dead, or an inner failover set (a region's) with
 * nothing left to call. It says that endpoint cannot take calls now. Ignored as a shared
 * bulkhead's refusal is, the set kept the dead endpoint in rotation: every call sent to it was
 * refused, and, its probe refused, it stayed in probe and took every call first.
 */

/** A dead server: every call fails after a connection reset. */
const dead = async (): Promise<string> => {
  await sleep(1);
  throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
};

describe('failover: a refusal by the endpoint’s own policy inside the call (hostile review)', () => {
  it('an endpoint dead behind its own breaker (opens sooner than the set ejects): ejected, calls stop failing', async () => {
    const bus = createBus();
    const ejected: EventOf<'failover.eject'>[] = [];
    bus.on('failover.eject', (e) => ejected.push(e));
    // One breaker per endpoint, as resilientFetch keeps one per host: 2 failures in a row open it for a minute.
    const breakers = new Map(
      ['db-1', 'db-2'].map((name) => [
        name,
        circuitBreaker({ name, consecutiveFailures: 2, openFor: 60_000, bus, policies: false }),
      ]),
    );
    const set = failover<() => Promise<string>>({
      name: 'orders',
      endpoints: [
        { name: 'db-1', target: dead },
        { name: 'db-2', target: async () => 'db-2' },
      ],
      retry: false,
      bus,
      policies: false,
    });
    try {
      const outcomes: string[] = [];
      for (let i = 0; i < 40; i++)
        outcomes.push(
          await set
            .execute((e) => (breakers.get(e.name) as ReturnType<typeof circuitBreaker>).execute(() => e.target()))
            .catch((error: { code?: string }) => `failed: ${error.code}`),
        );
      // The set ejects after 5 failures in a row (its default): 2 resets, then 3 refusals.
      expect(ejected.map((e) => e.endpoint)).toEqual(['db-1']);
      expect(outcomes.filter((o) => o !== 'db-2').length).toBeLessThanOrEqual(5);
    } finally {
      set.dispose();
      for (const b of breakers.values()) b.dispose();
    }
  }, 30_000);

  for (const retry of [false, undefined] as const) {
    it(`its probe refused by its open breaker: ejected again, not probed by every call (retry ${String(retry ?? 'default')})`, async () => {
      const bus = createBus();
      const breaker = circuitBreaker({ name: 'db-1', consecutiveFailures: 2, openFor: 60_000, bus, policies: false });
      const set = failover<() => Promise<string>>({
        name: 'orders',
        endpoints: [
          { name: 'db-1', target: dead },
          { name: 'db-2', target: async () => 'db-2' },
        ],
        ejection: { consecutiveFailures: 2, baseTime: 500 },
        ...(retry === false ? { retry } : {}),
        bus,
        policies: false,
      });
      const tries: string[] = [];
      const call = () =>
        set
          .execute((e) => {
            tries.push(e.name);
            return e.name === 'db-1' ? breaker.execute(() => e.target()) : e.target();
          })
          .catch((error: { code?: string }) => `failed: ${error.code}`);
      try {
        // Two failures: the breaker opens (for a minute), the set ejects db-1 (for 500 ms, then 1 s: room for a loaded machine).
        while (set.snapshot().endpoints[0]?.ejection === 'none') await call();
        expect(breaker.state).toBe('open');
        await sleep(1_000);
        expect(set.snapshot().endpoints[0]?.ejection).toBe('probe');
        tries.length = 0;
        const outcomes: string[] = [];
        for (let i = 0; i < 30; i++) outcomes.push(await call());
        // One probe, refused by the breaker: db-1 is out again, for longer.
        expect(tries.filter((t) => t === 'db-1')).toHaveLength(1);
        expect(set.snapshot().endpoints[0]?.ejection).toBe('ejected');
        expect(outcomes.filter((o) => o !== 'db-2').length).toBeLessThanOrEqual(1);
      } finally {
        set.dispose();
        breaker.dispose();
      }
    }, 30_000);
  }

  it('a region whose own set has no endpoint left (NoHealthyEndpointError inside the call): the outer set fails over to the other region', async () => {
    const bus = createBus();
    const region = (name: string, answer: () => Promise<string>) =>
      failover<() => Promise<string>>({
        name,
        endpoints: [
          { name: `${name}-a`, target: answer },
          { name: `${name}-b`, target: answer },
        ],
        bus,
        policies: false,
      });
    const east = region('east', async () => 'east');
    const west = region('west', async () => 'west');
    // Maintenance of every server of the east: its set takes no call.
    void east.drain('east-a');
    void east.drain('east-b');
    const outer = failover<Failover<() => Promise<string>>>({
      name: 'regions',
      mode: 'active-passive',
      endpoints: [
        { name: 'east', target: east, priority: 0 },
        { name: 'west', target: west, priority: 1 },
      ],
      retry: { maxAttempts: 2, idempotent: true },
      bus,
      policies: false,
    });
    try {
      const outcomes: string[] = [];
      for (let i = 0; i < 20; i++)
        outcomes.push(
          await outer
            .execute((e) => e.target.execute((s) => s.target()))
            .catch((error: { code?: string }) => `failed: ${error.code}`),
        );
      expect(outcomes).toEqual(Array(20).fill('west'));
      expect(outer.active?.name).toBe('west');
    } finally {
      for (const s of [outer, east, west]) s.dispose();
    }
  }, 30_000);
});
