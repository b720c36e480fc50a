/**
 * Review: a `{ bus }` of the user's own (an EventEmitter adapter) whose `on()` returns no
 * unsubscribe function (`this`, as emitter.on() does), or one that throws. dispose() threw
 * `off is not a function` half way: the other subscriptions stayed, anomalies still raised were
 * never cleared and endpoints it took out were never put back. The bus is told once instead
 * (HOLDFAST_BUS_ERROR), as a throw from its emit() is, and dispose() finishes.
 */
import { ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { emitterBus, returnsEmitter } from '../../../test/support/user-bus.js';
import { recordWarnings, tick } from '../../../test/support/warnings.js';
import { anomalyWatch } from '../src/index.js';

const warnings = recordWarnings();

describe('anomalyWatch on a user bus whose unsubscribe is broken (review)', () => {
  it('dispose() finishes, and the bus is told once', async () => {
    const buses = [
      emitterBus(returnsEmitter).bus,
      emitterBus(() => () => {
        throw new Error('adapter closed');
      }).bus,
    ];
    for (const bus of buses) {
      const watch = anomalyWatch({ bus, clock: new ManualClock(0), interval: 1000 });
      expect(() => watch.dispose()).not.toThrow();
    }
    await tick();
    expect(warnings.filter((w) => w.code === 'HOLDFAST_BUS_ERROR')).toHaveLength(2);
  });
});
