/**
 * A `{ bus }` of the user's own (an EventEmitter adapter) whose `on()` returns no unsubscribe
 * (`this`, as emitter.on() does), or whose unsubscribe throws. stop() threw `off is not a
 * function` half way: the other listeners stayed on the bus and every holdfast metric stayed in
 * the registry, so a collect() again on it was refused. The bus is told once (HOLDFAST_BUS_ERROR)
 * and stop() finishes.
 */
import { createPolicyRegistry } from '@holdfast/core';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { brokenAdapters, emitterBus } from '../../../test/support/user-bus.js';
import { recordWarnings, tick } from '../../../test/support/warnings.js';
import { collect } from '../src/index.js';

const warnings = recordWarnings();

describe('collect() on a user bus whose unsubscribe is broken', () => {
  it.each(brokenAdapters())('stop() finishes when on() %s, and the bus is told once', async (_, off, left) => {
    const { bus, listeners } = emitterBus(off);
    const registry = new Registry();
    const stop = collect({ bus, registry, policies: createPolicyRegistry() });
    const subscribed = listeners();
    expect(subscribed).toBeGreaterThan(1);
    expect(() => stop()).not.toThrow();
    expect(listeners()).toBe(left(subscribed));
    expect(registry.getMetricsAsArray()).toHaveLength(0);
    collect({ bus, registry, policies: createPolicyRegistry() })();
    await tick();
    expect(warnings.filter((w) => w.code === 'HOLDFAST_BUS_ERROR')).toHaveLength(1);
  });
});
