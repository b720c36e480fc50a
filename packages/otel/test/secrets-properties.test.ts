/**
 * Property: whatever event reaches the bus, with a credential in any of its string fields (a
 * user's own policy emits what it likes), and whatever a registered snapshot says, no exported
 * metric attribute, histogram attribute, span name, span attribute or span event attribute holds
 * the secret.
 */
import { createBus, createPolicyRegistry } from '@holdfast/core';
import { context, trace } from '@opentelemetry/api';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AlsContextManager,
  RecordingMeterProvider,
  RecordingTracerProvider,
} from '../../../test/support/otel-recorder.js';
import { carrierArb, hostileEventArb, secretArb, secretEventArb } from '../../../test/support/secret-events.js';
import { instrument } from '../src/index.js';

beforeAll(() => {
  context.setGlobalContextManager(new AlsContextManager());
});
afterAll(() => {
  context.disable();
});

/** Each quoted string of `json` that holds `secret`: what leaked, and where it shows. */
const leaks = (json: string, secret: string) =>
  [...json.matchAll(/"(?:[^"\\]|\\.)*"/g)].map((m) => m[0]).filter((s) => s.includes(secret));

function setup() {
  // What a listener that threw would tell (as a warning, by default): a secret in it is a leak too.
  const told: string[] = [];
  const bus = createBus({
    onListenerError: (error) => told.push(String(error instanceof Error ? error.message : error)),
  });
  const policies = createPolicyRegistry();
  const meterProvider = new RecordingMeterProvider();
  const tracerProvider = new RecordingTracerProvider();
  const stop = instrument({ bus, policies, meterProvider, tracerProvider });
  const exported = async () =>
    JSON.stringify({
      metrics: await meterProvider.collect(),
      histograms: meterProvider.histograms,
      spans: tracerProvider.spans,
    });
  return { bus, policies, tracerProvider, stop, exported, told };
}

describe('instrument(), a secret in any string field', () => {
  it('reaches no attribute, span name or span attribute (events on and off an active span)', async () => {
    const arb = secretArb.chain((secret) =>
      fc.record({
        secret: fc.constant(secret),
        events: fc.array(secretEventArb(secret), { minLength: 1, maxLength: 4 }),
      }),
    );
    await fc.assert(
      fc.asyncProperty(arb, async ({ secret, events }) => {
        const { bus, tracerProvider, stop, exported } = setup();
        try {
          const call = tracerProvider.getTracer().startSpan('GET /pay');
          for (const { event } of events) {
            bus.emit(event);
            context.with(trace.setSpan(context.active(), call), () => bus.emit(event));
          }
          expect(leaks(await exported(), secret)).toEqual([]);
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
        const { bus, tracerProvider, stop, exported, told } = setup();
        try {
          const call = tracerProvider.getTracer().startSpan('GET /pay');
          for (const { event } of events) {
            bus.emit(event);
            context.with(trace.setSpan(context.active(), call), () => bus.emit(event));
          }
          expect(leaks(await exported(), secret)).toEqual([]);
          expect(told.filter((m) => m.includes(secret))).toEqual([]);
        } finally {
          stop();
        }
      }),
      { numRuns: 300 },
    );
  });

  it('a registered snapshot with a secret in its name, state or endpoint names exports none of it', async () => {
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
        const { policies, stop, exported } = setup();
        try {
          policies.register('breaker', name, { snapshot: () => ({ state }) });
          policies.register('failover', name, {
            snapshot: () => ({ endpoints: [{ name: endpoint, available: true, inFlight: 1 }] }),
          });
          policies.register('budget', name, { snapshot: () => ({ balance: 3 }) });
          policies.register('bulkhead', name, { snapshot: () => ({ running: 1, queued: 0, maxConcurrent: 4 }) });
          policies.register('concurrency', name, { snapshot: () => ({ limit: 8, inFlight: 1 }) });
          policies.register('throttle', name, { snapshot: () => ({ probability: 0.1 }) });
          expect(leaks(await exported(), secret)).toEqual([]);
        } finally {
          stop();
        }
      }),
      { numRuns: 100 },
    );
  });
});
