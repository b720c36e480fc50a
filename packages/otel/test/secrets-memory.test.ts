/**
 * Names are labelled once and held while they have a place: policies that come and go (per-host
 * breakers a registry evicts), each named by a URL with a password, leave nothing behind.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createBus, createPolicyRegistry, type HoldfastEvent } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { RecordingMeterProvider, RecordingTracerProvider } from '../../../test/support/otel-recorder.js';
import { instrument } from '../src/index.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

describe('instrument(), names that come and go', () => {
  it('2,000 policies named by URLs with passwords, each registered, emitting and gone, hold no memory', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const meterProvider = new RecordingMeterProvider();
    const stop = instrument({ bus, policies, meterProvider, tracerProvider: new RecordingTracerProvider() });
    const pad = 'x'.repeat(4_000);
    const churn = (from: number, to: number) => {
      for (let i = from; i < to; i++) {
        const name = `https://svc:pw${i}@host-${i}.example/${pad}`;
        const unregister = policies.register('breaker', name, { snapshot: () => ({ state: 'closed' }) });
        // A rejection: counted, and no histogram value (the recorder keeps every one).
        bus.emit({
          type: 'breaker.reject',
          source: name,
          time: 0,
          state: 'open',
          code: 'E_CIRCUIT_OPEN',
        } as HoldfastEvent);
        unregister();
      }
    };
    churn(0, 200);
    gc();
    const before = process.memoryUsage().heapUsed;
    churn(200, 2_200);
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    // Each name is over 4 kB: held, 2,000 of them are 8 MB and more.
    expect(grown).toBeLessThan(5_000_000);
    expect(await meterProvider.collect()).toEqual([]);
    stop();
  }, 30_000);
});
