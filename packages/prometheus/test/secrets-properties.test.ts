/**
 * Property: whatever event reaches the bus, with a credential in any of its string fields (a
 * user's own policy emits what it likes), and whatever a registered snapshot says, no label value
 * Prometheus scrapes holds the secret.
 */
import { createBus, createPolicyRegistry } from '@holdfast/core';
import fc from 'fast-check';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { carrierArb, hostileEventArb, secretArb, secretEventArb } from '../../../test/support/secret-events.js';
import { collect } from '../src/index.js';

/** Each line of the scrape that holds `secret`: what leaked, and in which series. */
const leaks = (text: string, secret: string) => text.split('\n').filter((line) => line.includes(secret));

function setup() {
  // What a listener that threw would tell (as a warning, by default): a secret in it is a leak too.
  const told: string[] = [];
  const bus = createBus({
    onListenerError: (error) => told.push(String(error instanceof Error ? error.message : error)),
  });
  const policies = createPolicyRegistry();
  const registry = new Registry();
  const stop = collect({ bus, policies, registry });
  return { bus, policies, stop, scrape: () => registry.metrics(), told };
}

describe('collect(), a secret in any string field', () => {
  it('reaches no label value', async () => {
    const arb = secretArb.chain((secret) =>
      fc.record({
        secret: fc.constant(secret),
        events: fc.array(secretEventArb(secret), { minLength: 1, maxLength: 4 }),
      }),
    );
    await fc.assert(
      fc.asyncProperty(arb, async ({ secret, events }) => {
        const { bus, stop, scrape } = setup();
        try {
          for (const { event } of events) bus.emit(event);
          expect(leaks(await scrape(), secret)).toEqual([]);
        } finally {
          stop();
        }
      }),
      { numRuns: 300 },
    );
  });

  it('nor from an emitter that puts it where a number or boolean belongs, or nested (errors, arrays, objects)', async () => {
    const arb = secretArb.chain((secret) =>
      fc.record({
        secret: fc.constant(secret),
        events: fc.array(hostileEventArb(secret), { minLength: 1, maxLength: 4 }),
      }),
    );
    await fc.assert(
      fc.asyncProperty(arb, async ({ secret, events }) => {
        const { bus, stop, scrape, told } = setup();
        try {
          for (const { event } of events) bus.emit(event);
          expect(leaks(await scrape(), secret)).toEqual([]);
          expect(told.filter((m) => m.includes(secret))).toEqual([]);
        } finally {
          stop();
        }
      }),
      { numRuns: 300 },
    );
  });

  it('a registered snapshot with a secret in its name, state or endpoint names scrapes none of it', async () => {
    const arb = secretArb.chain((secret) =>
      fc.record({
        secret: fc.constant(secret),
        name: carrierArb(secret),
        state: fc.oneof(fc.constant('open'), carrierArb(secret)),
        endpoint: fc.oneof(fc.constant('primary'), carrierArb(secret)),
      }),
    );
    await fc.assert(
      fc.asyncProperty(arb, async ({ secret, name, state, endpoint }) => {
        const { policies, stop, scrape } = setup();
        try {
          policies.register('breaker', name, { snapshot: () => ({ state }) });
          policies.register('failover', name, {
            snapshot: () => ({ endpoints: [{ name: endpoint, available: true, inFlight: 1 }] }),
          });
          policies.register('budget', name, { snapshot: () => ({ balance: 3 }) });
          policies.register('concurrency', name, { snapshot: () => ({ limit: 8, inFlight: 1 }) });
          expect(leaks(await scrape(), secret)).toEqual([]);
        } finally {
          stop();
        }
      }),
      { numRuns: 100 },
    );
  });
});
