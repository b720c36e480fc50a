/**
 * A `{ bus }` of the user's own (an EventEmitter adapter) whose `on()` returns no unsubscribe
 * (`this`, as emitter.on() does), or whose unsubscribe throws. The function instrument() returns
 * threw `off is not a function` half way: the other listeners stayed on the bus, the gauges'
 * callback stayed on the meter, and the meter provider stayed marked as instrumented, so an
 * instrument() again on it was refused. The bus is told once (HOLDFAST_BUS_ERROR) and it finishes.
 */
import { createPolicyRegistry } from '@holdfast/core';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { describe, expect, it } from 'vitest';
import { brokenAdapters, emitterBus } from '../../../test/support/user-bus.js';
import { recordWarnings, tick } from '../../../test/support/warnings.js';
import { instrument } from '../src/index.js';

const warnings = recordWarnings();

describe('instrument() on a user bus whose unsubscribe is broken', () => {
  it.each(brokenAdapters())('stop() finishes when on() %s, and the bus is told once', async (_, off, left) => {
    const { bus, listeners } = emitterBus(off);
    const meterProvider = new MeterProvider();
    const stop = instrument({ bus, meterProvider, policies: createPolicyRegistry() });
    const subscribed = listeners();
    expect(subscribed).toBeGreaterThan(1);
    expect(() => stop()).not.toThrow();
    expect(listeners()).toBe(left(subscribed));
    expect(() => instrument({ bus, meterProvider, policies: createPolicyRegistry() })()).not.toThrow();
    await tick();
    expect(warnings.filter((w) => w.code === 'HOLDFAST_BUS_ERROR')).toHaveLength(1);
    await meterProvider.shutdown();
  });
});
